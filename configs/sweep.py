"""Sweeps of single runs (forget_jax/sweep.py; layout in CONTRACT.md "Sweeps"). Command lines::

  # CPU demonstration: 2 x 2 cross-task matrix on a tiny budget, then the report
  python main.py --config=configs/sweep.py:experiment=cross_task,tasks=copa+cb,runlocal=True \
      --workdir=sweeps/demo
  python main.py --config=configs/report.py --workdir=sweeps/demo

  # the paper's experiments on the default task subset, all in one root
  python main.py --config=configs/sweep.py:experiment=cross_task+size+flipped --workdir=sweeps/main
  python main.py --config=configs/sweep.py:experiment=single,tasks=all --workdir=sweeps/all
  # the cross-task matrix twice: paper stop rule and a fixed forget budget; three seeds
  python main.py --config=configs/sweep.py:experiment=cross_task+cross_task_fixed,seeds=0+1+2 \
      --workdir=sweeps/cross3

  # knobs: data, model, seed, training-set sizes, any other single-run field via `base`
  python main.py --config=configs/sweep.py:experiment=size,tasks=rte+cb --config.n_small=100 \
      --config.data_dir=../shared/data --config.base="forget.lr=1e-4;finetune.patience=5" \
      --workdir=sweeps/size

  # a cluster job array: stage 0 (fine-tuning) first, then stage 1 (forgetting)
  python main.py --config=configs/sweep.py:experiment=cross_task,mode=print_cells,stage=0 \
      --workdir=$ROOT                               # "index name stage status", one per line
  python main.py --config=configs/sweep.py:experiment=cross_task,mode=print_commands \
      --workdir=$ROOT                               # one `python main.py ...` line per cell
  python main.py --config=configs/sweep.py:experiment=cross_task,mode=run_cell,stage=1 \
      --config.cell=$SLURM_ARRAY_TASK_ID --workdir=$ROOT  # one cell; its dependencies done

Task lists are joined with ``+`` (``tasks=all`` = the paper's 19). Rerunning the same command
skips complete cells and resumes unfinished ones. Experiments and cell names:
forget_jax/sweep_cells.py.
"""

from __future__ import annotations

import ml_collections

from configs import common
from forget_jax.sweep_cells import DEFAULT_METHODS

# Tasks with staged train and eval files in ../shared/data, from both ends of the paper's
# spectrum (commonsense/QA vs. linguistic/entailment).
DEFAULT_TASKS = "arc_easy+creak+boolq+cola+rte+cb"


def default_n_small(runlocal: bool) -> int:
    """The `size` experiment's small forget-set size when ``n_small`` is 0 (the paper's 100;
    20 under runlocal, below runlocal's 60 training examples)."""
    return 20 if runlocal else 100


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = common.parse_arg(
        arg, experiment="cross_task", tasks=DEFAULT_TASKS, mode="run", cell="", stage=-1,
        runlocal=False, n_train=0, n_small=0, seed=-1, seeds="", model="",
        methods=DEFAULT_METHODS, retain="others",
    )
    config = ml_collections.ConfigDict()
    config.job = "sweep"
    # single | cross_task | cross_task_fixed | size | flipped | flipped_diag | null | methods |
    # methods_fixed, "+"-joinable
    config.experiment = a.experiment
    config.tasks = a.tasks  # "+"-joined task names, or "all"
    config.mode = a.mode  # run | print_cells | print_commands | run_cell
    config.cell = a.cell  # run_cell: a cell name or 0-based index into the (stage) cell list
    config.stage = a.stage  # -1 all cells; 0 fine-tuning cells; 1 cells that start from them
    config.keep_going = True  # run mode: continue with other cells after a failed one

    # Passed to every cell; the "unset" values keep configs/forget.py's defaults.
    config.runlocal = a.runlocal  # tiny CPU budget (configs/forget.py runlocal)
    config.n_train = a.n_train  # large cells' training-set size; 0 = default (1000; runlocal 60)
    # The `size` experiment's forget-<t>-n<k> cells forget on k = n_small examples of ft-<t>'s
    # training set; 0 = default_n_small(runlocal) (100; runlocal 20, below runlocal's 60).
    config.n_small = a.n_small
    config.seed = a.seed  # -1 = default; one seed for every cell, plain cell names
    # "+"-joined seeds ("0+1+2"): every cell once per seed; seed s != 0 suffixes the cell names
    # with -s<s> (ft-cb-s1, forget-copa-on-cb-s1). "" = one seed (`seed`). Not with `seed`.
    config.seeds = a.seeds
    # Which fine-tuned model a cross-task cell A -> B starts from: "eval_task" (ft-<B>, our
    # reading of the paper); "forget_task" (ft-<A>: B's forget ratio then uses that model's
    # accuracy on B, results.json init_task = A).
    config.cross_task_start = "eval_task"
    # The `null` experiment's forget learning rate (null-<t> cells, fixed budget): ~0, so the
    # forget ratio must be ~0. Not exactly 0: the update path itself is exercised.
    config.null_lr = 1e-7
    # The methods experiments (method-<m>-<t>, method_fixed-<m>-<t>; issue 16): "+"-joined
    # forget.method names, and the retain set of the methods that take one (grad_diff, npo,
    # simnpo, rmu): "others" = the sweep's other tasks, "" = none, or "+"-joined tasks.
    config.methods = a.methods
    config.retain = a.retain
    config.model = a.model  # "" = default
    config.data_dir = ""  # "" = default (configs/common.py default_data_dir)
    config.base = ""  # more single-run overrides: "finetune.lr=1e-3;forget.max_epochs=20"
    # Activations (ft-<t>, forget-<t>-on-<t>) and a relearn phase (forget-<t>-on-<t>) for the
    # analyses of Fig. 4.1 (predictors), 5.1 (orders) and 6.1 (probes).
    config.analyses = True
    config.verbose = False  # True: third-party INFO logs too (Orbax, jax); or absl's -v
    config.lock()
    return config
