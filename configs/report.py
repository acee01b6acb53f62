"""The report of a sweep root (forget_jax/report.py; CONTRACT.md "Sweeps"). Command lines::

  python main.py --config=configs/report.py --workdir=sweeps/demo
  python main.py --config=configs/report.py:n_bootstrap=2000,seed=1 --workdir=sweeps/main
  python main.py --config=configs/report.py --config.paper_dir=../shared/paper --workdir=sweeps/main
  python -m forget_jax.report sweeps/main          # the same, without main.py
  python main.py --config=configs/report.py \\
      --config.models=smollm2-135m=sweeps/main,gemma3-270m=sweeps/gemma3 --workdir=sweeps/appD
      # Appendix D: models side by side (forget_jax/report_models.py)

Writes <root>/report/report.md, report/figures/*.png and report/tables/*.csv.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = common.parse_arg(arg, root="", paper_dir="", n_bootstrap=1000, seed=0,
                         order_inclusive=True, include_epoch0=True, variance_phase="finetuned")
    config = ml_collections.ConfigDict()
    config.job = "report"
    config.root = a.root  # the sweep root; "" = --workdir
    config.paper_dir = a.paper_dir  # holds appendix_b_llama2_7b.csv; "" = <repo>/../shared/paper
    config.n_bootstrap = a.n_bootstrap  # bootstrap resamples per 95% interval
    config.seed = a.seed  # bootstrap seed
    # Paper ambiguities (defaults = its most likely reading; report.md's "Choices" lists them):
    config.order_inclusive = a.order_inclusive  # §5: <= 0.6 forgotten, >= 0.6 learned (False:
    #   strict < / >, the Fig. 5.1 caption)
    config.include_epoch0 = a.include_epoch0  # a phase's starting state may be the forget time
    config.variance_phase = a.variance_phase  # Fig 4.1 total variance: finetuned | pretrained
    # (the activation layer is a run-time field, activations.layer, default -5)
    config.verbose = False  # True: third-party INFO logs too (Orbax, jax); or absl's -v
    # Appendix D: "label=<sweep root>,label=<sweep root>" (one root per model; set it with
    # --config.models=..., the commas split config args) -> <workdir>/report_models/
    config.models = ""
    config.lock()
    return config
