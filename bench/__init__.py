"""The forget-jax vs PyTorch benchmark (``python bench/compare.py``): machine facts and peaks
(:mod:`bench.machine`), the PyTorch peers (:mod:`bench.peers`), the timed workloads
(:mod:`bench.workloads`, :mod:`bench.epoch`)."""
