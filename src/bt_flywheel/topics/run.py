"""`flywheel topics run` on the local backend: the four steps, per facet, then the store write.

Rerun semantics (like Braintrust's daily pipeline): a trace already classified by the facet's
current topic map keeps its classification; every other trace in the window is summarised and
classified against that map. The map itself is only rebuilt with `rebuild=True` (Braintrust's
"rewind"), which reclusters the window and reclassifies its traces. Until a facet has
`min_summaries` usable summaries it waits (summaries are stored, no topics yet), as Braintrust
waits for 100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bt_flywheel.backends.store import Store
from bt_flywheel.core.errors import ConfigError, InputError
from bt_flywheel.core.output import Progress, status
from bt_flywheel.topics.cluster import UNASSIGNED, FitOptions, TopicMap, fit_topic_map
from bt_flywheel.topics.model import Endpoint
from bt_flywheel.topics.narrative import DEFAULT_MAX_CHARS, Narrative, build_narratives
from bt_flywheel.topics.storage import load_map, topics_dir, window_rows, write_topic_columns
from bt_flywheel.topics.summarize import (
    FALLBACK_SOURCE,
    Facet,
    Summaries,
    agent_summaries,
    facet_named,
    fallback_summaries,
    llm_summaries,
    usable,
)

MIN_SUMMARIES = 100


@dataclass
class TopicsOptions:
    project: str
    store_path: str | Path
    window_days: int = 7
    facets: list[str] = field(default_factory=lambda: ["Task"])
    rebuild: bool = False
    writer: str = "auto"                 # auto | llm | agent | fallback
    endpoint: Endpoint | None = None     # None: nothing leaves the machine
    vectors: str = "auto"                # auto | tfidf | embedding
    seed: int = 0
    min_summaries: int = MIN_SUMMARIES
    min_topics: int = 2
    max_topics: int = 12
    min_topic_size: int = 5
    max_chars: int = DEFAULT_MAX_CHARS
    out_dir: str | Path | None = None    # caches and agent exports (default: next to the store)
    now: datetime | None = None
    quiet: bool = False


def resolve_writer(options: TopicsOptions) -> str:
    if options.writer not in ("auto", "llm", "agent", "fallback"):
        raise InputError(f"--writer: {options.writer!r} is not one of auto, llm, agent, fallback")
    if options.writer == "llm" and options.endpoint is None:
        raise ConfigError("--writer llm needs a model endpoint",
                          hint="set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one), or use --writer fallback")
    if options.writer == "auto":
        return "llm" if options.endpoint is not None else "fallback"
    return options.writer


def run_topics(options: TopicsOptions) -> dict[str, Any]:
    """Run the pipeline for each facet; returns the report `flywheel topics run --json` prints."""
    writer = resolve_writer(options)
    if options.vectors == "embedding" and (options.endpoint is None or not options.endpoint.embedding_model):
        raise ConfigError("--vectors embedding needs a model endpoint and an embedding model",
                          hint="set OPENAI_BASE_URL and --embedding-model, or use --vectors tfidf")
    facets = [facet_named(name) for name in dict.fromkeys(options.facets or ["Task"])]
    now = options.now or datetime.now(UTC)
    since = now - timedelta(days=options.window_days)
    with Store(options.store_path) as store:
        project_id = store.find_project(options.project)
        if project_id is None:
            raise InputError(f"--project: no project {options.project!r} in {options.store_path}",
                             hint="load its traces with `flywheel ingest FILE --project NAME`")
        folder = Path(options.out_dir) if options.out_dir else topics_dir(options.store_path, project_id)
        rows = window_rows(store, project_id, since)
        roots = {r["id"]: r for r in rows if r.get("is_root")}
        narratives = build_narratives(rows, max_chars=options.max_chars)
        if not options.quiet:
            status(f"topics: {len(narratives)} traces in the last {options.window_days} days of {options.project}")
        patches: dict[str, dict[str, Any]] = {}
        maps: list[tuple[TopicMap, dict[str, Any], datetime]] = []
        reports = []
        for facet in facets:
            current = None if options.rebuild else load_map(store, project_id, facet.name)
            reports.append(_run_facet(facet, current, narratives, roots, writer, options, folder, now, patches, maps))
        written = write_topic_columns(store, project_id, patches, maps)
    return {"project": options.project, "project_id": project_id, "window_days": options.window_days,
            "since": since.isoformat(), "traces": len(narratives), "writer": writer, "rows_written": written,
            "topics_dir": str(folder), "facets": reports}


def _run_facet(facet: Facet, topic_map: TopicMap | None, narratives: list[Narrative],
               roots: dict[str, dict[str, Any]], writer: str, options: TopicsOptions, folder: Path, now: datetime,
               patches: dict[str, dict[str, Any]], maps: list[tuple[TopicMap, dict[str, Any], datetime]]
               ) -> dict[str, Any]:
    if writer == "fallback" and facet.name != "Task":
        return {"facet": facet.name, "status": "skipped", "facet_writer": FALLBACK_SOURCE, "traces": len(narratives),
                "classified": 0, "reason": "the fallback writes only Task summaries (the user's request text); "
                                           f"{facet.name} needs a model endpoint or --writer agent"}
    kept = [n for n in narratives if topic_map is not None and _classified_by(roots.get(n.row_id), facet, topic_map)]
    kept_ids = {n.trace_id for n in kept}
    todo = [n for n in narratives if n.trace_id not in kept_ids]
    summaries = _summaries(todo, facet, writer, options, folder)
    texts = usable(summaries)
    for narrative in todo:
        if narrative.trace_id in summaries.texts:
            patches.setdefault(narrative.row_id, {}).setdefault("facets", {})[facet.name] = \
                summaries.texts[narrative.trace_id]
    report: dict[str, Any] = {"facet": facet.name, "facet_writer": summaries.source, "traces": len(narratives),
                              "kept": len(kept), "summarized": len(summaries.texts), "usable": len(texts),
                              "model_calls": summaries.calls, "failed": len(summaries.failed or {}),
                              "pending": len(summaries.pending or []), "export": summaries.export_path}
    built = False
    if topic_map is None:
        if writer == "agent" and summaries.pending:
            return {**report, "status": "waiting_for_facets", "classified": 0,
                    "reason": f"{len(summaries.pending)} traces need a facet summary: fill {summaries.export_path}, "
                              "apply it with `flywheel label apply`, then rerun"}
        if len(texts) < options.min_summaries:
            return {**report, "status": "waiting_for_facets", "classified": 0,
                    "reason": f"{len(texts)} usable summaries; topics need at least {options.min_summaries}"}
        topic_map = _fit(facet, texts, options)
        built = True
        maps.append((topic_map, {"facet_writer": summaries.source, "built_at": now.isoformat(),
                                 "window_days": options.window_days}, now))
    to_classify = [n for n in todo if n.trace_id in texts]
    embed = options.endpoint.embed if options.endpoint and topic_map.vectors.startswith("embedding") else None
    results = topic_map.classify(topic_map.vectorize([texts[n.trace_id] for n in to_classify], embed)) \
        if to_classify else []
    stamp = now.isoformat()
    for narrative, result in zip(to_classify, results, strict=True):
        patches.setdefault(narrative.row_id, {}).setdefault("classifications", {})[facet.name] = \
            [_item(topic_map, result, summaries.source, stamp)]
    unassigned = sum(1 for r in results if not r["assigned"])
    return {**report, "status": "rebuilt" if built else "classified", "classified": len(results),
            "unassigned": unassigned, "topic_map": topic_map.id, "vectors": topic_map.vectors,
            "naming": topic_map.naming, "k_scores": topic_map.k_scores, "noise_silhouette": topic_map.noise_silhouette,
            "noise_radius": topic_map.noise_radius,
            "topics": [{"id": t.id, "name": t.name, "size": t.size, "terms": t.terms} for t in topic_map.topics]}


def _summaries(todo: list[Narrative], facet: Facet, writer: str, options: TopicsOptions, folder: Path) -> Summaries:
    if writer == "fallback" or not todo:
        return fallback_summaries(todo) if writer == "fallback" else Summaries({}, writer)
    if writer == "agent":
        return agent_summaries(todo, facet, out_dir=folder)
    endpoint = options.endpoint
    assert endpoint is not None
    progress = Progress(f"facet {facet.name}", len(todo), silent=options.quiet)
    summaries = llm_summaries(todo, facet, model=endpoint.chat_model, base_url=endpoint.base_url,
                              api_key=endpoint.api_key, cache_path=folder / f"facet_cache_{facet.name}.jsonl",
                              concurrency=endpoint.concurrency, max_retries=endpoint.max_retries, progress=progress)
    progress.finish()
    return summaries


def _fit(facet: Facet, texts: dict[str, str], options: TopicsOptions) -> TopicMap:
    endpoint = options.endpoint
    use_embeddings = endpoint is not None and bool(endpoint.embedding_model) and options.vectors != "tfidf"
    fit = FitOptions(seed=options.seed, min_topics=options.min_topics, max_topics=options.max_topics,
                     min_topic_size=options.min_topic_size,
                     embed=endpoint.embed if use_embeddings else None,
                     embedding_model=endpoint.embedding_model if use_embeddings else None,
                     namer=endpoint.name_topic if endpoint is not None else None,
                     namer_model=endpoint.chat_model if endpoint is not None else None)
    ids = sorted(texts)
    try:
        return fit_topic_map(ids, [texts[i] for i in ids], facet=facet.name, options=fit)
    except ValueError as exc:
        raise InputError(f"topics: facet {facet.name}: {exc}") from None


def _classified_by(root: dict[str, Any] | None, facet: Facet, topic_map: TopicMap) -> bool:
    items = ((root or {}).get("classifications") or {}).get(facet.name) or []
    return any(isinstance(i, dict) and (i.get("source") or {}).get("topic_map_id") == topic_map.id for i in items)


def _item(topic_map: TopicMap, result: dict[str, Any], writer_source: str, stamp: str) -> dict[str, Any]:
    topic = result["topic"]
    distance = result["distance"]
    metadata: dict[str, Any] = {"distance": distance, "silhouette": result["silhouette"],
                                "assigned": result["assigned"]}
    if result["assigned"]:
        topic_id, label = topic.id, topic.name
    else:
        topic_id, label = f"{topic_map.id}:unassigned", UNASSIGNED
        metadata["nearest_topic"] = {"id": topic.id, "label": topic.name}
    return {"id": topic_id, "label": label, "distance": distance, "metadata": metadata,
            "source": {"type": "flywheel_topics", "topic_map_id": topic_map.id, "facet": topic_map.facet,
                       "facet_writer": writer_source, "vectors": topic_map.vectors, "classified_at": stamp}}
