"""The committed study report regenerates from the committed compact results alone (issue 14):
studies/smollm2-cpu/subset/ is a slice of the study's export with its report; rebuilding it in a
copy gives report.md and every table byte for byte (figures: same files, same pixel sizes — PNG
bytes depend on the matplotlib build). Needs ../shared/paper (the paper's columns)."""

import importlib.util
import shutil
import struct
from pathlib import Path

from forget_jax import report

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO / "studies" / "smollm2-cpu" / "subset"
SHOWN = "studies/smollm2-cpu/subset"  # how make_report.sh names it (run from the repo root)
PAPER = REPO.parent / "shared" / "paper"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_committed_subset_report_regenerates_identically(tmp_path):
    assert (SUBSET / "report" / "report.md").is_file(), f"missing committed report in {SUBSET}"
    assert (PAPER / report.PAPER_CSV).is_file(), f"{PAPER} must hold {report.PAPER_CSV}"
    copy = tmp_path / "subset"
    shutil.copytree(SUBSET, copy)
    shutil.rmtree(copy / "report")
    assert not any(copy.rglob("checkpoints")), "the subset must not hold checkpoints"
    report.write_report(copy, paper_dir=PAPER, shown_as=SHOWN)
    spec = importlib.util.spec_from_file_location(
        "verdicts", REPO / "studies" / "smollm2-cpu" / "verdicts.py")
    verdicts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verdicts)
    assert verdicts.main(str(copy / "report"), str(PAPER / report.PAPER_CSV)) == 0

    want = sorted(p.relative_to(SUBSET / "report") for p in (SUBSET / "report").rglob("*")
                  if p.is_file())
    got = sorted(p.relative_to(copy / "report") for p in (copy / "report").rglob("*")
                 if p.is_file())
    assert got == want
    assert any(p.suffix == ".csv" for p in want) and Path("tables/claims.csv") in want
    for rel in want:
        a, b = SUBSET / "report" / rel, copy / "report" / rel
        if rel.suffix == ".png":
            assert _png_size(a) == _png_size(b), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel
