"""Run every benchmark of the project in one go and write benchmarks/results.md.

Each `benchmarks/*_bench.py` exposes `main(quick: bool = False) -> list[dict]` with rows
{figure, ours, baseline, ratio, target}. Usage: python benchmarks/run_all.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("figure", "ours", "baseline", "ratio", "target")


def discover() -> list[Path]:
    return sorted(HERE.glob("*_bench.py"))


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _fmt(value: object, *, missing: str = "") -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return missing if value is None else str(value)


def print_table(rows: list[dict]) -> None:
    """What each benchmark prints when run on its own: one line per figure."""
    print(" | ".join(COLUMNS))
    for row in rows:
        ratio = row.get("ratio")
        cells = [_fmt(row.get(c), missing="-") for c in COLUMNS]
        cells[COLUMNS.index("ratio")] = f"{_fmt(ratio)}x" if ratio else "-"
        print(" | ".join(cells))


def to_markdown(results: dict[str, list[dict]], *, quick: bool, seconds: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python benchmarks/run_all.py{' --quick' if quick else ''}` on {platform.machine()} "
        f"({platform.python_implementation()} {platform.python_version()}), {seconds:.0f} s in all. "
        "Each figure measures ours and a naive baseline in the same run.",
        "",
        "| benchmark | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name, rows in results.items():
        for row in rows:
            lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (for tests and a first look)")
    parser.add_argument("--only", nargs="*", help="benchmark names (file stems) to run")
    parser.add_argument("--out", default=str(HERE / "results.md"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results: dict[str, list[dict]] = {}
    failed = []
    for path in discover():
        if args.only and path.stem not in args.only:
            continue
        print(f"== {path.stem}", file=sys.stderr, flush=True)
        try:
            results[path.stem] = load(path).main(quick=args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            failed.append(path.stem)
            results[path.stem] = [{"figure": f"FAILED: {type(exc).__name__}: {exc}"}]
    text = to_markdown(results, quick=args.quick, seconds=time.perf_counter() - start)
    Path(args.out).write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
