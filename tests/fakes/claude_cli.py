"""Running the real `claude` CLI (npm @anthropic-ai/claude-code, installed by .ci/run) offline.

`offline_env` gives it a throwaway HOME, routes every proxy-aware request to a closed loopback
port and turns off its updater and telemetry; with `api_url` it talks to a loopback Messages API
stand-in (tests/fakes/loopback.FakeAnthropic) instead of Anthropic. `checkout_copy` makes the
"git clone of the project" a user would install from, with the working tree's uncommitted
changes laid over it so the test sees what is being developed. `ready_data_venv` builds, without
any download, the private venv that scripts/flywheel would create on first use in the plugin's
data folder: a venv of the base interpreter whose site-packages see this test run's dependencies
and the installed copy's src/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN_ID = "bt-flywheel@bt-flywheel"


def claude() -> str | None:
    return shutil.which("claude")


def offline_env(home: Path, *, api_url: str | None = None, path: str | None = None) -> dict[str, str]:
    drop = ("ANTHROPIC_", "CLAUDE", "BRAINTRUST_", "OPENAI_", "FLYWHEEL_", "GITHUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and k not in ("CI", "VIRTUAL_ENV")}
    closed = "http://127.0.0.1:9"
    env.update({"HOME": str(home), "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed,
                "https_proxy": closed, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "NO_COLOR": "1", "PIP_NO_INDEX": "1"})
    if api_url:
        env.update({"ANTHROPIC_BASE_URL": api_url, "ANTHROPIC_API_KEY": "sk-ant-loopback-test"})
    if path is not None:
        env["PATH"] = path
    return env


def plain_path() -> str:
    """PATH with `claude`, the base Python (which cannot import bt_flywheel) and the system, but not
    this test run's venv, so the installed helper cannot borrow the checkout's package."""
    parts = [str(Path(claude() or "claude").parent), str(Path(sys._base_executable).parent), "/usr/bin", "/bin"]
    return os.pathsep.join(dict.fromkeys(parts))


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run with stdin closed (not merely empty): nothing may wait for input."""
    return subprocess.run(["bash", "-c", 'exec "$@" <&-', "run", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def checkout_copy(dest: Path) -> Path:
    """`git clone` of this repository at HEAD, with the working tree's changes (tracked, new
    unignored, deleted) applied on top."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)], check=True,
                   capture_output=True, timeout=120)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", head], check=True, capture_output=True)
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src, dst = REPO / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        elif dst.exists():
            dst.unlink()
    return dest


def data_dir(home: Path) -> Path:
    """Where Claude Code keeps this plugin's data (`claude plugin uninstall --help`: ~/.claude/plugins/data/{id}/)."""
    return home / ".claude" / "plugins" / "data" / PLUGIN_ID.replace("@", "-")


def ready_venv(venv: Path, plugin_root: Path | None) -> Path:
    """A venv of the base interpreter that imports bt_flywheel from `plugin_root`/src (none when
    None) and its dependencies, pip included, from this test run's site-packages (no download, a
    second or two)."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    lines = ([str(plugin_root / "src")] if plugin_root else []) + [sysconfig.get_path("purelib")]
    (site / "flywheel-test.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return venv


def ready_data_venv(home: Path, install_path: Path) -> Path:
    return ready_venv(data_dir(home) / "venv", install_path)
