"""The benchmark suite runs end to end (issue 8). No timing asserts: only that every
benchmarks/*_bench.py ran under `run_all.py --quick`, none failed, and each printed its table rows
(figure | ours | baseline | ratio | target) into the markdown it wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.stem for p in (REPO_ROOT / "benchmarks").glob("*_bench.py"))


def test_every_benchmark_file_exposes_main() -> None:
    assert BENCHMARKS, "no benchmarks/*_bench.py found"
    for name in BENCHMARKS:
        text = (REPO_ROOT / "benchmarks" / f"{name}.py").read_text()
        assert "def main(quick: bool = False)" in text, f"{name}.py lacks main(quick: bool = False) -> list[dict]"


@pytest.mark.slow
def test_run_all_quick_runs_every_benchmark_and_prints_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "run_all.py"), "--quick", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    table = out.read_text()
    assert done.stdout.strip().endswith(table.strip().splitlines()[-1])      # the table was printed too
    assert "| benchmark | figure | ours | baseline | ratio | target |" in table
    for name in BENCHMARKS:
        assert f"== {name}" in done.stderr, f"{name} did not run"
        rows = [line for line in table.splitlines() if line.startswith(f"| {name} |")]
        assert rows, f"{name} printed no table row"
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            assert len(cells) == 6 and cells[1] and not cells[1].startswith("FAILED"), row
            assert cells[2], f"{name}: figure {cells[1]!r} has no 'ours' value"
