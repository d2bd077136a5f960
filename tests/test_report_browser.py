"""The report opened in real headless Chromium (Debian package `chromium`): it renders, logs no
console message at all (the page has no scripts, so any message - an error, a CSP violation -
is a failure), a planted <script> shows as text and does nothing, and the verdict, effect and CI
figures printed by `flywheel compare --json` are in the rendered DOM.

No network: the page is a local file and Chromium runs with background networking off. Two
Chromium launches in all (a console-capture check, then the report), a few seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from bt_flywheel.backends.store import Store
from bt_flywheel.report.svg import fmt

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = "<script>document.title='pwned';alert(1)</script>"
# In the default suite: .ci/run installs Debian's chromium (and says why when it cannot).
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium; "
                                ".ci/run does)")


def chromium(url: str, workdir: Path) -> tuple[str, list[str]]:
    """Load `url` headless; return (DOM after load, console messages from the page)."""
    args = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={workdir / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom"]
    proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=120, cwd=workdir)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, console


def test_console_capture_sees_errors(tmp_path):
    """The check below can fail: a page that logs an error is caught by the same capture."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><title>t</title><script>console.error('boom'); nope();</script>")
    dom, console = chromium(page.as_uri(), tmp_path)
    assert any("boom" in line for line in console)
    assert any("nope is not defined" in line for line in console)


def _experiment(store: Store, pid: str, name: str, acc: np.ndarray, fact: np.ndarray, facets: list[str]) -> None:
    oid = store.create_object("experiment", name, pid, metadata={"trials": 2})
    rows = []
    for i, (a, f) in enumerate(zip(acc, fact, strict=True)):
        for k in range(2):
            rid = f"{name}-{i}-{k}"
            output = f"answer {i}" + (f" {SCRIPT}" if name == "candidate" else "")
            rows.append({"id": rid, "span_id": rid, "root_span_id": rid, "is_root": True,
                         "created": "2026-01-01T00:00:00Z", "input": {"question": f"question {i}"},
                         "expected": {"decision": "answer"}, "output": output,
                         "metadata": {"trial": k, "dataset_row_id": f"row-{i:03d}", "split": "validation",
                                      "facet": facets[i]},
                         "scores": {"accuracy": float(a[k]), "Factuality": float(f)},
                         "span_attributes": {"name": "eval", "type": "eval"}})
    store.upsert_rows("experiment", oid, rows)


@pytest.fixture
def experiments(tmp_path):
    rng = np.random.default_rng(11)
    n = 90
    base = (rng.random((n, 2)) < 0.5).astype(float)
    cand = np.where(rng.random((n, 2)) < 0.45, 1.0, base)
    cand[:4] = 0.0
    base[:4] = 1.0
    fact_b = rng.uniform(0.6, 1.0, n)
    fact_c = np.clip(fact_b + rng.normal(0, 0.01, n), 0, 1)
    facets = [("billing", "shipping", "returns")[i % 3] for i in range(n)]
    with Store(tmp_path / ".flywheel" / "store.duckdb") as store:
        pid = store.ensure_project("bot")
        _experiment(store, pid, "baseline", base, fact_b, facets)
        _experiment(store, pid, "candidate", cand, fact_c, facets)
    return tmp_path


def test_report_in_chromium_shows_compare_figures_and_runs_nothing(run_cli, experiments, tmp_path):
    code, out, err = run_cli("compare", "baseline", "candidate", "--target", "accuracy", "--guard", "Factuality",
                             "--slice", "metadata.facet", "--json")
    assert code in (0, 1), err
    comp = json.loads(out)
    code, _, err = run_cli("report", "baseline", "candidate", "--target", "accuracy", "--guard", "Factuality",
                           "--slice", "metadata.facet", "--out", "report.html")
    assert code == 0, err
    page = tmp_path / "report.html"
    dom, console = chromium(page.as_uri(), tmp_path)
    assert console == [], console
    text = unescape(re.sub(r"<[^>]+>", " ", dom))
    text = " ".join(text.split())
    # the planted script is text on the page, never an element, and never ran
    assert SCRIPT in text
    assert "<script" not in dom.lower()
    title = re.search(r"<title>(.*?)</title>", dom, flags=re.S).group(1)
    assert "pwned" not in title and title.startswith("bt-flywheel report")
    # verdict, effect and CI exactly as compare --json computed them (rounded as the page prints)
    scores = {s["name"]: s for s in comp["scores"]}
    target = scores["accuracy"]
    banner = " ".join(unescape(re.sub(r"<[^>]+>", " ", dom[dom.index('<section class="banner"'):dom.index("</section>")])).split())
    assert comp["target_verdict"] == "improved" and banner.startswith("improved ")
    assert f"status: {comp['status']}" in banner
    assert fmt(target["effect"], signed=True) in banner
    assert f"[{fmt(target['ci'][0])}, {fmt(target['ci'][1])}]" in banner
    for s in comp["scores"]:
        assert f"{fmt(s['effect'], signed=True)} [{fmt(s['ci'][0])}, {fmt(s['ci'][1])}]" in text
