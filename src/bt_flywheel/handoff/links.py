"""Links from the handoff to Braintrust's pages.

With a key (the remote backend) the org comes from the login response (`org_info`, as `bt status
--json` resolves it), and the handoff links each finding's trace ids to the project's logs, the
compared experiments to their pages and their dataset to its page (URL shapes in
`backends.base.Links`). Without a key there are no pages: no links are made, and the local files
the run wrote are listed under `artifacts` instead. A link is never a made-up scheme.
"""

from __future__ import annotations

from typing import Any

from bt_flywheel.backends.base import Backend, Links
from bt_flywheel.core.errors import FlywheelError
from bt_flywheel.verify.comparison_model import ComparisonDoc

MAX_TRACE_LINKS = 20     # per finding: enough to click through, short enough to read


def add_braintrust_links(builder: Any, backend: Backend, project: str,
                         comparison: ComparisonDoc | None) -> list[str]:
    """Add Braintrust page links to the builder's findings and links; returns notes for the user
    (why there are none, when Braintrust could not be asked)."""
    if backend.name == "local":
        return []
    try:
        links = backend.links(project)
    except FlywheelError as exc:
        return [f"no Braintrust links: {exc.one_line()}"]
    if links is None:
        return []
    for finding in builder.findings:
        evidence = finding["evidence"]
        present = {link["url"] for link in evidence["links"]}
        for trace_id in evidence["trace_ids"][:MAX_TRACE_LINKS]:
            url = links.trace_url(trace_id)
            if url not in present:
                evidence["links"].append({"title": f"trace {trace_id}", "url": url, "kind": "trace"})
                present.add(url)
    notes: list[str] = []
    if comparison is not None:
        notes += _experiment_links(builder, backend, links, project, comparison)
    return notes


def _experiment_links(builder: Any, backend: Backend, links: Links, project: str,
                      comparison: ComparisonDoc) -> list[str]:
    present = {link["url"] for link in builder.links}
    experiments = comparison.raw["experiments"]  # validated by ComparisonDoc.from_dict
    datasets: list[str] = []
    for side in ("baseline", "candidate"):
        described = experiments.get(side) or {}
        name = described.get("name")
        if name:
            url = links.experiment_url(str(name))
            if url not in present:
                builder.add_link(f"{side} experiment {name}", url, kind="experiment")
                present.add(url)
        if described.get("dataset_id") and str(described["dataset_id"]) not in datasets:
            datasets.append(str(described["dataset_id"]))
    notes: list[str] = []
    for dataset_id in datasets:
        try:
            found = backend.dataset(dataset_id, project=project)
        except FlywheelError as exc:
            notes.append(f"no link to dataset {dataset_id}: {exc.one_line()}")
            continue
        if found is not None and links.dataset_url(found.name) not in present:
            builder.add_link(f"dataset {found.name}", links.dataset_url(found.name), kind="dataset")
            present.add(links.dataset_url(found.name))
    return notes
