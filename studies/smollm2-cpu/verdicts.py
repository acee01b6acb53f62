"""The pre-registered readings of the paper's claims (PROTOCOL.md §5), computed from the report's
tables: ``<report>/tables/claims.csv`` (one row per claim and statistic) and
``<report>/tables/not_forgotten.csv`` (random-label cells whose forget set did not reach chance).

Written before any study result was seen (see git log); FINDINGS.md cites these two tables.
Every input is a table of the committed report, so this regenerates byte-identically too.

  python studies/smollm2-cpu/verdicts.py REPORT_DIR [PAPER_CSV]

Rules where PROTOCOL.md §5 is silent (fixed here, before results):
- "forgot": |forget-set accuracy - 0.5| <= 0.1 (the calibration's reading of "within 0.1").
- C1 counts only cells that forgot; a task whose forget ratio is undefined (fine-tuning gain not
  significant) is left out of the CI counts and the rank correlation.
- C5 per task as in §5; overall: confirmed if more than half of the tasks with probes confirm,
  not confirmed if none does, else inconclusive.
- Rank correlations over tasks (C1, C7): two-sided p exact over all permutations (<= 9 tasks).
- C6: "inside both cells' CIs" = each cell's forgotten accuracy lies inside the other's 95% CI;
  confirmed if that holds for more than half of the tasks, else not confirmed.
"""

from __future__ import annotations

import csv
import itertools
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from forget_jax.analysis import rundir  # noqa: E402

PAPER_CSV = REPO.parent / "shared" / "paper" / "appendix_b_llama2_7b.csv"
UNDEFINED = "undefined"
CHANCE_TOL = 0.1


def read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def num(v: str | None) -> float | None:
    """A float from a table cell; None for '', 'undefined', nan."""
    if v in (None, "", UNDEFINED):
        return None
    x = float(v)
    return None if math.isnan(x) else x


def forgot(acc: float | None) -> bool:
    return acc is not None and abs(acc - 0.5) <= CHANCE_TOL + 1e-12


def row(claim: str, statistic: str, value, *, lo=None, hi=None, p=None, n=None, verdict="",
        source: str = "") -> dict:
    return {"claim": claim, "statistic": statistic, "value": value, "lo": lo, "hi": hi, "p": p,
            "n": n, "verdict": verdict, "source": source}


def spearman(x: list[float], y: list[float]) -> tuple[float | None, float | None]:
    """Spearman's rho over tasks and its two-sided p: exact (every permutation) up to 9 tasks,
    where the t approximation is far off (rho = 1 over 3 tasks would get p = 0)."""
    if len(x) < 3:
        return None, None
    r = float(stats.spearmanr(x, y)[0])
    if math.isnan(r):
        return None, None
    if len(x) > 9:
        return r, float(stats.spearmanr(x, y)[1])
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    perms = ry[np.array(list(itertools.permutations(range(len(x)))))]  # [n!, n]
    rhos = perms @ rx / (np.linalg.norm(rx) * np.linalg.norm(perms, axis=1))
    return r, float(np.mean(np.abs(rhos) >= abs(r) - 1e-12))


def c1(single: list[dict], paper: dict[str, float]) -> list[dict]:
    src = "single_task.csv"
    cells = [r for r in single if r["variant"] == "literal" and r["forget_task"] == r["eval_task"]]
    if not cells:
        return [row("C1", "single-task cells", 0, verdict="not run", source=src)]
    done = [r for r in cells if forgot(num(r["forget_set_acc"]))]
    rated = [r for r in done if num(r["forget_ratio"]) is not None]
    below = [r["task"] for r in rated if num(r["forget_ratio_hi"]) is not None
             and num(r["forget_ratio_hi"]) < 0.5]
    above = [r["task"] for r in rated if num(r["forget_ratio_lo"]) is not None
             and num(r["forget_ratio_lo"]) > 0.5]
    ranked = [r for r in rated if r["task"] in paper]
    rho, p = spearman([float(r["forgotten_acc"]) for r in ranked],
                      [paper[r["task"]] for r in ranked])
    if not rated:
        verdict = "inconclusive"
    elif len(above) == len(rated) or len(below) == len(rated):
        verdict = "not confirmed"
    elif below and above and rho is not None and rho > 0 and p < 0.05:
        verdict = "confirmed"
    else:
        verdict = "inconclusive"
    return [
        row("C1", "cells whose forget set reached chance", len(done), n=len(cells), source=src),
        row("C1", "tasks with forget-ratio CI below 0.5 (test stays up)", len(below),
            n=len(rated), source=src + ": " + "+".join(below)),
        row("C1", "tasks with forget-ratio CI above 0.5 (test falls)", len(above),
            n=len(rated), source=src + ": " + "+".join(above)),
        row("C1", "Spearman(our forgotten test acc, paper forget_acc_1000)", rho, p=p,
            n=len(ranked), verdict=verdict, source=src + " + paper Appendix B"),
    ]


def c2(tables: Path) -> list[dict]:
    out, signs = [], []
    for variant, name in (("paper-literal", "cross_task_forget_ratio_shares.csv"),
                          ("fixed budget", "cross_task_forget_ratio_fixed_shares.csv")):
        rows = read(tables / name)
        ev = num(rows[0].get("eval_task")) if rows else None
        fo = num(rows[0].get("forget_task")) if rows else None
        if ev is not None and fo is not None:
            signs.append(ev > fo if ev != fo else None)
        out.append(row("C2", f"{variant}: eval-task share of the sum of squares", ev,
                       source=name))
        out.append(row("C2", f"{variant}: forget-task share of the sum of squares", fo,
                       source=name))
    if len(signs) == 2 and all(s is True for s in signs):
        verdict = "confirmed"
    elif len(signs) == 2 and all(s is False for s in signs):
        verdict = "not confirmed"
    else:
        verdict = "inconclusive" if signs else "not run"
    out[-1]["verdict"] = verdict
    return out


def c3(tables: Path) -> list[dict]:
    corr = read(tables / "predictors_correlations.csv")
    out = []
    for r in corr:
        sig = [(num(r[f"{k}_r"]), num(r[f"{k}_p"])) for k in ("pearson", "spearman")]
        if all(x is not None and x < 0 and q < 0.05 for x, q in sig):
            verdict = "confirmed"
        elif all(x is not None and x > 0 and q < 0.05 for x, q in sig):
            verdict = "not confirmed"
        else:
            verdict = "inconclusive"
        for k, (x, q) in zip(("Pearson", "Spearman"), sig, strict=True):
            out.append(row("C3", f"{k}({r['predictor']}, forget ratio) across tasks", x, p=q,
                           n=num(r["n"]), verdict=verdict if k == "Spearman" else "",
                           source="predictors_correlations.csv"))
    examples = read(tables / "predictors_example_level.csv")
    tested = [r for r in examples if num(r["pointbiserial_p"]) is not None]
    out.append(row("C3", "tasks whose example-level point-biserial r has p < 0.05 (test)",
                   sum(num(r["pointbiserial_p"]) < 0.05 for r in tested), n=len(tested),
                   source="predictors_example_level.csv"))
    return out or [row("C3", "predictor table", 0, verdict="not run")]


def c4(tables: Path) -> list[dict]:
    rows = [r for r in read(tables / "orders.csv") if (num(r["n_qualifying"]) or 0) >= 100]
    neg = sum((num(r["spearman_r"]) or 0) < 0 and (num(r["spearman_p"]) or 1) < 0.05 for r in rows)
    pos = sum((num(r["spearman_r"]) or 0) > 0 and (num(r["spearman_p"]) or 1) < 0.05 for r in rows)
    verdict = ("not run" if not rows else "confirmed" if neg > len(rows) / 2 else
               "not confirmed" if pos > len(rows) / 2 else "inconclusive")
    return [row("C4", "tasks (>= 100 qualifying) with Spearman(forget, learn time) < 0, p < .05",
                neg, n=len(rows), source="orders.csv"),
            row("C4", "tasks (>= 100 qualifying) with Spearman(forget, learn time) > 0, p < .05",
                pos, n=len(rows), verdict=verdict, source="orders.csv")]


def c5(tables: Path) -> list[dict]:
    by = {}
    for r in read(tables / "probes.csv"):
        by.setdefault(r["task"], {})[r["phase"]] = r
    out, yes = [], 0
    for task, ph in by.items():
        if "forgotten" not in ph or "finetuned" not in ph:
            continue
        f, ft = ph["forgotten"], ph["finetuned"]
        probe, output = float(f["probe_acc_paired"]), float(f["model_acc"])
        ok = probe > output and abs(probe - float(ft["probe_acc_paired"])) <= 0.05
        yes += ok
        out.append(row("C5", f"{task}: probe acc after forgetting - output acc", probe - output,
                       verdict="confirmed" if ok else "not confirmed", source="probes.csv"))
    n = len(out)
    verdict = ("not run" if not n else "confirmed" if yes > n / 2 else
               "not confirmed" if yes == 0 else "inconclusive")
    out.append(row("C5", "tasks where probes recover the forgotten task", yes, n=n,
                   verdict=verdict, source="probes.csv"))
    return out


def c6(tables: Path) -> list[dict]:
    rows = read(tables / "size_100_vs_1000.csv")
    out, same = [], 0
    for r in rows:
        s, lg = num(r["ours_forget_acc_small"]), num(r["ours_forget_acc_large"])
        if s is None or lg is None:
            continue
        ci = {k: (num(r[f"ours_forget_acc_{k}_lo"]), num(r[f"ours_forget_acc_{k}_hi"]))
              for k in ("small", "large")}
        inside = ci["large"][0] <= s <= ci["large"][1] and ci["small"][0] <= lg <= ci["small"][1]
        same += inside
        out.append(row("C6", f"{r['task']}: forgotten acc n{r['ours_n_train_small']} - "
                       f"n{r['ours_n_train_large']}", s - lg, source="size_100_vs_1000.csv",
                       verdict="similar" if inside else "different"))
    n = len(out)
    out.append(row("C6", "tasks where the small and large forget sets forget alike", same, n=n,
                   verdict="not run" if not n else
                   "confirmed" if same > n / 2 else "not confirmed",
                   source="size_100_vs_1000.csv"))
    return out


def c7(tables: Path) -> list[dict]:
    rows = [r for r in read(tables / "flipped_vs_random.csv")
            if num(r["forget_ratio_random"]) is not None
            and num(r["forget_ratio_flipped"]) is not None]
    rho, p = spearman([num(r["forget_ratio_random"]) for r in rows],
                      [num(r["forget_ratio_flipped"]) for r in rows])
    verdict = ("not run" if not rows else "confirmed" if rho is not None and rho > 0 and p < 0.05
               else "inconclusive")
    return [row("C7", "Spearman(forget ratio random, flipped) across tasks", rho, p=p,
                n=len(rows), verdict=verdict, source="flipped_vs_random.csv")]


def null_control(tables: Path) -> list[dict]:
    out = []
    for r in read(tables / "null_control.csv"):
        lo, hi = num(r["forget_ratio_lo"]), num(r["forget_ratio_hi"])
        ok = lo is not None and lo <= 0 <= hi
        out.append(row("null", f"{r['task']}: forget ratio at lr ~0", num(r["forget_ratio"]),
                       lo=lo, hi=hi, verdict="includes 0" if ok else "excludes 0",
                       source="null_control.csv"))
    return out or [row("null", "null-control cells", 0, verdict="not run")]


def not_forgotten(tables: Path) -> list[dict]:
    """Random-label cells whose forget set ended more than 0.1 from chance."""
    out = []
    for name in ("single_task_per_seed.csv", "cross_task_cells.csv"):
        for r in read(tables / name):
            if r.get("variant") not in ("literal", "fixed") or "forget_set_acc" not in r:
                continue
            if "seeds" in r and "+" in r["seeds"]:
                continue  # a seed mean: its cells are listed one by one
            acc = num(r["forget_set_acc"])
            if not forgot(acc):
                out.append({"table": name, "cell": r.get("cell", ""), "variant": r["variant"],
                            "forget_task": r["forget_task"], "eval_task": r["eval_task"],
                            "seeds": r.get("seeds", ""), "forget_set_acc": acc})
    for r in read(tables / "size_100_vs_1000.csv"):
        acc = num(r["ours_forget_set_acc_small"])
        if r["cell_small"] and not forgot(acc):
            out.append({"table": "size_100_vs_1000.csv", "cell": r["cell_small"],
                        "variant": "size", "forget_task": r["task"], "eval_task": r["task"],
                        "seeds": r["seeds"], "forget_set_acc": acc})
    first = {}
    for d in out:  # a single-task cell is in both tables: list it once
        first.setdefault((d["cell"], d["seeds"]), d)
    return sorted(first.values(), key=lambda d: (d["cell"], d["seeds"]))


def main(report: str, paper_csv: str = "") -> int:
    tables = Path(report) / "tables"
    if not tables.is_dir():
        print(f"error: {tables} is not a report's tables directory (run the report first)",
              file=sys.stderr)
        return 2
    paper = {r["task"]: float(r["forget_acc_1000"]) for r in read(Path(paper_csv or PAPER_CSV))}
    claims = (c1(read(tables / "single_task.csv"), paper) + c2(tables) + c3(tables)
              + c4(tables) + c5(tables) + c6(tables) + c7(tables) + null_control(tables))
    rundir.write_csv(claims, tables / "claims.csv")
    missed = not_forgotten(tables)
    rundir.write_csv(missed or [{"table": "", "cell": "(none)"}], tables / "not_forgotten.csv")
    for r in claims:
        if r["verdict"]:
            print(f"{r['claim']}: {r['verdict']} ({r['statistic']} = {r['value']})")
    print(f"{len(missed)} random-label cells did not bring the forget set within 0.1 of chance")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
