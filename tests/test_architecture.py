"""The layer contract (docs/architecture.md, [tool.importlinter] in pyproject.toml) holds, would
catch an upward import, every module is on the architecture page, and no function in src/ is
longer than the ~60 lines an orchestration step may take."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "bt_flywheel"
MAX_FUNCTION_LINES = 60


def _lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(lint), str(REPO / "pyproject.toml"), "--no-cache", "--no-logo"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_layer_contract_is_kept() -> None:
    proc = _lint_imports(REPO / "src", REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    copy = tmp_path / "src" / "bt_flywheel"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    ids = copy / "core" / "ids.py"
    ids.write_text(ids.read_text() + "\nfrom bt_flywheel.verify import stats  # noqa: E402,F401  planted\n")
    proc = _lint_imports(tmp_path / "src", tmp_path)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and "bt_flywheel.core.ids -> bt_flywheel.verify.stats" in proc.stdout


def test_every_module_is_on_the_architecture_page() -> None:
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if f"`{m}`" not in page]
    assert not missing, f"add these modules to the table in docs/architecture.md: {missing}"
    for package in sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")):
        assert f"{package}/" in page, f"docs/architecture.md: the layer diagram lacks {package}/"
    assert (REPO / "README.md").read_text(encoding="utf-8").count("docs/architecture.md") >= 1


def _long_functions(root: Path, limit: int) -> list[str]:
    """Every function or method under root longer than `limit` lines (def line to last line)."""
    found: list[str] = []

    def visit(node: ast.AST, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(child, path, prefix)
                continue
            qualname = prefix + child.name
            lines = child.end_lineno - child.lineno + 1
            if not isinstance(child, ast.ClassDef) and lines > limit:
                found.append(f"{path}::{qualname} ({lines} lines)")
            visit(child, path, qualname + ".")

    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        visit(ast.parse(file.read_text(encoding="utf-8"), filename=rel), rel, "")
    return found


def test_no_function_in_src_is_longer_than_60_lines() -> None:
    long = _long_functions(PACKAGE, MAX_FUNCTION_LINES)
    assert not long, f"split these into named steps of at most {MAX_FUNCTION_LINES} lines: {long}"


def test_the_length_check_finds_a_long_method_and_a_nested_function(tmp_path: Path) -> None:
    sixty = "".join(f"        x{i} = {i}\n" for i in range(60))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("class C:\n    def short(self):\n        return 1\n\n"
                                           "    def long(self):\n" + sixty + "\n\n"
                                           "def outer():\n    def inner():\n" + sixty + "    return inner\n")
    assert _long_functions(tmp_path, MAX_FUNCTION_LINES) == [
        "pkg/m.py::C.long (61 lines)", "pkg/m.py::outer (63 lines)", "pkg/m.py::outer.inner (61 lines)"]
