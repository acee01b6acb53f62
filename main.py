"""forget-jax command line: flags + config, multi-host init, then hand off to the library.

  python main.py --config=configs/forget.py:arc_easy --workdir=runs/arc_easy
  python main.py --config=configs/eval.py:task=boolq,limit=50 --workdir=runs/eval_boolq
  python main.py --config=configs/sweep.py:experiment=cross_task,tasks=copa+cb,runlocal=True \
      --workdir=runs/sweep
  python main.py --config=configs/report.py --workdir=runs/sweep

Bad input (unknown task/model, missing files, invalid config values) prints one line
``error: ...`` and exits with status 2; no results.json claiming success is written.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created if absent).")


def _one_line(e: BaseException) -> str:
    """An exception as one line: a config file's traceback (ml_collections wraps get_config's
    error in one) or a multi-line message reduced to its last line, the actual error."""
    if e.args and isinstance(e.args[0], KeyError):  # AttributeError(KeyError) for a.b.c
        e = e.args[0]
    if isinstance(e, KeyError):  # ml_collections: "'finetun'\nDid you mean "finetune" ...?"
        return f"unknown config field {'; '.join(str(e.args[0]).splitlines())}"
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) <= 1:
        return text.strip()
    last = lines[-1].removeprefix("ValueError: ")
    if "Failed loading config file" in text:  # e.g. "[Errno 2] No such file or directory: ..."
        return f"cannot load --config: {last}"
    head = lines[0].split(": Error whilst parsing config file:")[0]  # "flag --config=...: "
    return f"{head}: {last}" if head.startswith("flag ") else last


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with every failure (an unknown or misspelt ``--config.*`` field, a
    value of the wrong type, a bad ``:arg``, a missing config file) as one ``error:`` line and
    exit 2, instead of absl's usage dump or a traceback."""
    try:
        rest = flags.FLAGS(argv)
        if _CONFIG.value is not None:  # a config file that failed to load raises on first use
            _CONFIG.value.get("job")
    except (flags.Error, OSError, KeyError, ValueError, TypeError, AttributeError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(2)
    return rest


def _user_errors() -> tuple[type[BaseException], ...]:
    from forget_jax import errors

    return errors.user_errors()


def main(argv) -> int:
    del argv
    from forget_jax import host, xla_cpu

    host.tune_malloc()  # before JAX starts its threads (big step temporaries stop page-faulting)
    xla_cpu.apply()  # $FORGET_JAX_XLA_CPU: opt-in XLA:CPU flags per CPU (default off)
    config = _CONFIG.value
    from forget_jax import logs

    # Every job: third-party INFO lines only with --config.verbose=True or absl's -v/--verbosity.
    logs.configure(bool(config is not None and config.get("verbose", False))
                   or flags.FLAGS["verbosity"].present)
    if config is None or not _WORKDIR.value:
        print("error: --config and --workdir are required", file=sys.stderr)
        return 2
    try:
        if config.get("dry_run", False):  # no real devices needed: CPU stand-ins for the mesh
            from forget_jax import plan

            plan.prepare_devices(config)
        from forget_jax import distributed

        distributed.init_distributed(config)
        from forget_jax import entry

        entry.dispatch(config, _WORKDIR.value)
    except _user_errors() as e:  # one clear line, no traceback wall
        from forget_jax.phases import NonFiniteLoss

        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, NonFiniteLoss) else 2
    return 0


def _run() -> None:
    try:
        app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)
    except flags.Error as e:  # e.g. a config file that fails to load
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    _run()
