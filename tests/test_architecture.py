"""The layer contract (docs/architecture.md, [tool.importlinter] in pyproject.toml) holds, would
catch an upward import, and every module is on the architecture page."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "bt_flywheel"


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
