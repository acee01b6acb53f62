"""Zero-shot scoring of one task (binarized, mean per-token log-likelihood). Command lines::

  python main.py --config=configs/eval.py:arc_easy --workdir=runs/eval_arc_easy
  python main.py --config=configs/eval.py:task=boolq,limit=50 --workdir=runs/eval_boolq
  python main.py --config=configs/eval.py:copa --config.splits=test --config.data_dir=../shared/data
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = common.parse_arg(arg, task="arc_easy", limit=0, splits="test", model="smollm2-135m")
    config = ml_collections.ConfigDict()
    config.job = "eval"
    common.model_and_data(config)
    config.model = a.model
    config.task = a.task
    config.limit = a.limit  # max examples per split (0 = all)
    config.splits = a.splits  # "+"-joined roles among train, validation, test
    config.n_train = 1000
    config.activations = ml_collections.ConfigDict(dict(enabled=False, layer=-5, dtype="float32"))
    config.verbose = False  # True: third-party INFO logs too (Orbax, jax); or absl's -v
    return config
