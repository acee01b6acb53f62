"""Analyses over run directories: predictors (Fig 4.1), orders (Fig 5.1), probes (Fig 6.1).

Analyses only read run directories and saved activations (see :mod:`forget_jax.analysis.rundir`);
they never import models, steps or phases. Import the submodules directly, e.g.
``from forget_jax.analysis import predictors``; nothing heavy is imported here.
"""
