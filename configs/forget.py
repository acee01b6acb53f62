"""The main job: zero-shot eval -> fine-tune -> forget (-> relearn) on one task.

Paper defaults (Zhang, Choshen & Andreas 2024, Appendix A). Command lines::

  python main.py --config=configs/forget.py:arc_easy --workdir=runs/arc_easy
  python main.py --config=configs/forget.py:task=copa,runlocal=True --workdir=runs/copa
  python main.py --config=configs/forget.py:task=rte,forget_mode=flipped --workdir=runs/rte_flip
  python main.py --config=configs/forget.py:rte --config.n_train=100 --workdir=runs/rte_n100
  python main.py --config=configs/forget.py:task=cb,forget_task=copa --config.init_from=runs/ft-cb \
      --workdir=runs/forget-copa-on-cb          # a cross-task cell A=copa -> B=cb

``runlocal=True`` shrinks the budget for a laptop CPU (60 train examples unless ``n_train`` is
given, 2 + 3 epochs, 60 eval examples per split, the CPU study's calibrated learning rates:
fine-tune 1e-2, forget 3e-1, relearn 1e-2) without copying the config.
"""

from __future__ import annotations

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = common.parse_arg(
        arg, task="arc_easy", forget_task="", forget_mode="random", runlocal=False,
        n_train=0, seed=0, model="smollm2-135m",
    )
    config = ml_collections.ConfigDict()
    config.job = "forget"
    common.model_and_data(config)
    config.model = a.model
    config.seed = a.seed

    config.task = a.task  # fine-tuned on and evaluated (B of a cross-task cell)
    config.forget_task = a.forget_task  # whose train set gets random labels; "" = task (A)
    config.eval_tasks = ""  # "+"-joined extra tasks evaluated after each phase
    # Training examples; 0 = the default: 1000 (the paper's), 60 with runlocal. An explicit
    # value always wins (100 for the small forget-set experiment).
    config.n_train = a.n_train or (60 if a.runlocal else 1000)
    config.limit = 0  # max examples per validation/test split (0 = all); for quick runs
    config.forget_mode = a.forget_mode  # "random" | "flipped" (older; see forget.method)
    config.stop_after = "forget"  # "pretrained" | "finetune" | "forget" | "relearn"
    config.init_from = ""  # a run dir whose best fine-tuned checkpoint (and its results) we reuse

    config.finetune = ml_collections.ConfigDict(dict(
        lr=3e-3, max_epochs=100, batch_size=3, patience=0,  # patience 0 = no early stop by patience
        stop_train_acc=0.99, grad_clip=1.0))
    # forget.stop_rule: when the forget phase stops before max_epochs (its test role is the
    #   eval task's test split): "chance" = test acc < stop_test_acc (the paper's rule);
    #   "mirror" = test acc <= 1 - (fine-tuned test acc), so a flipped run can reach forget
    #   ratio 1; "fixed" = no test-based stop, exactly max_epochs epochs; "auto" = "chance"
    #   for forget_mode=random, "mirror" for flipped. results.json: forget_stop_rule.
    # forget.n_train: 0 = forget on the forget task's whole train role; k > 0 = on a subset of
    #   k of its examples (numpy default_rng(seed), scored as predictions/<phase>/<task>.forget)
    #   - Appendix B's 100-vs-1000 cell: init_from=<the n_train=1000 ft run>, forget.n_train=100.
    config.forget = ml_collections.ConfigDict(dict(
        lr=1e-4, max_epochs=100, batch_size=3, stop_test_acc=0.5, grad_clip=1.0,
        stop_rule="auto", n_train=0))
    # forget.method (forget_jax/methods.py; issue 16): "random_labels" (the paper's, default) |
    #   "flipped" (= forget_mode=flipped, which still works and maps onto it) | "grad_ascent"
    #   (-NLL of the gold answers) | "grad_diff" (gamma * -NLL_forget + alpha * NLL_retain) |
    #   "npo" (vs the frozen fine-tuned model) | "simnpo" (length-normalized, no reference) |
    #   "rmu" (layer-L states of forget inputs -> c * u, retain states kept). Every loss reads
    #   the answer tokens only; the per-method weights follow OpenUnlearning's defaults (rmu:
    #   WMDP's). The stop rule is forget.stop_rule's for every method ("auto" = "chance" except
    #   flipped). results.json: forget_method.
    # forget.retain_tasks: "+"-joined tasks (not the forget task) whose train roles form the
    #   retain set (gold answers, one retain batch beside each forget batch); needed by
    #   grad_diff and rmu, optional (alpha term) for npo and simnpo.
    config.forget.method = "random_labels"
    config.forget.retain_tasks = ""
    config.forget.grad_diff = ml_collections.ConfigDict(dict(gamma=1.0, alpha=1.0))
    config.forget.npo = ml_collections.ConfigDict(dict(beta=0.1, gamma=1.0, alpha=1.0))
    config.forget.simnpo = ml_collections.ConfigDict(dict(beta=4.5, delta=0.0, gamma=0.125,
                                                          alpha=1.0))
    # rmu.layer: hidden_states index L (the output of the first L layers), 0 = num_layers // 4
    #   (WMDP's 8 of 32); rmu.params: regex over '/'-joined parameter paths that train, in the
    #   n_layers layers ending at L (WMDP: the MLP down-projections of layers 5-7).
    config.forget.rmu = ml_collections.ConfigDict(dict(
        layer=0, n_layers=3, params="mlp/down_proj/kernel", steering_coeff=6.5, gamma=1.0,
        alpha=1200.0))
    config.relearn = ml_collections.ConfigDict(dict(
        enabled=False, lr=3e-5, max_epochs=20, batch_size=3, stop_train_acc=0.99, grad_clip=1.0))

    config.activations = ml_collections.ConfigDict(dict(
        enabled=False, layer=-5, dtype="float32"))
    config.save_epoch_predictions = True  # per-epoch confidences -> predictions/epochs/<phase>.npz
    # On completion drop the epoch checkpoints (checkpoints/<finetune|forget|relearn>, only for
    # resuming) and keep what later work reads: checkpoints/finetune_best (init_from), the
    # activations, results and predictions (forget_jax/cleanup.py). True keeps everything.
    config.keep_checkpoints = False
    config.runlocal = a.runlocal
    config.verbose = False  # True: third-party INFO logs too (Orbax, jax); or absl's -v

    if a.runlocal:
        config.limit = 60
        config.finetune.max_epochs = 2
        config.forget.max_epochs = 3
        config.relearn.max_epochs = 3
        # The CPU study's calibrated lrs (studies/smollm2-cpu/PROTOCOL.md §2): with every step
        # clipped to norm 1, the paper's 3e-3 / 1e-4 cannot move a 135M model in 40 / 60 steps.
        # Demo calibration (arc_easy, runlocal, studies/smollm2-cpu/demo/README.md): the forget
        # set falls to .583 .567 .567 over the 3 forget epochs.
        config.finetune.lr = 1e-2
        config.forget.lr = 3e-1
        config.relearn.lr = 1e-2
    return config
