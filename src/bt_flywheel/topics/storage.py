"""Where Topics keeps its results on the local backend.

- On the root span rows of `project_logs`: `facets` (facet name -> summary text) and
  `classifications` (facet name -> [{"id", "label", "distance", "metadata": {"distance", ...},
  "source": {...}}]), merged key by key (RFC 7396) so one facet's run never touches another's.
  `classifications.Task[0].label` and `classifications.Task[0].metadata.distance` are the paths
  Braintrust's SQL reference queries.
- In the store's own `topic_maps` table (one row per project and facet, written in the same
  transaction as the classifications it produced): the map as JSON (what a person reads: topics,
  sizes, terms, the k scores, the noise radius) and its arrays as an npz blob (centroids and the
  TF-IDF/SVD arrays needed to classify new traces against the same topics). SQL recipes never
  see this table; `flywheel topics run --json` prints the map.
- Next to the store, `topics/<project id>/`: the llm facet cache and the agent's export files.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bt_flywheel.backends.store import Store
from bt_flywheel.topics.cluster import TopicMap


def topics_dir(store_path: str | Path, project_id: str) -> Path:
    return Path(store_path).parent / "topics" / project_id


_MAPS_TABLE = """CREATE TABLE IF NOT EXISTS topic_maps (
  project_id VARCHAR NOT NULL, facet VARCHAR NOT NULL, id VARCHAR NOT NULL, built_at TIMESTAMPTZ,
  document JSON NOT NULL, arrays BLOB NOT NULL, PRIMARY KEY (project_id, facet))"""


def load_map(store: Store, project_id: str, facet: str) -> TopicMap | None:
    store.con.execute(_MAPS_TABLE)
    row = store.con.execute("SELECT document, arrays FROM topic_maps WHERE project_id = ? AND facet = ?",
                            [project_id, facet]).fetchone()
    return None if row is None else TopicMap.load(json.loads(row[0]), bytes(row[1]))


def map_document(store: Store, project_id: str, facet: str) -> dict[str, Any] | None:
    store.con.execute(_MAPS_TABLE)
    row = store.con.execute("SELECT document FROM topic_maps WHERE project_id = ? AND facet = ?",
                            [project_id, facet]).fetchone()
    return None if row is None else json.loads(row[0])


def save_map(store: Store, project_id: str, topic_map: TopicMap, extra: dict[str, Any], built_at: datetime) -> None:
    """Call inside the transaction that writes the classifications (see write_topic_columns)."""
    store.con.execute(_MAPS_TABLE)
    store.con.execute("INSERT OR REPLACE INTO topic_maps VALUES (?, ?, ?, ?, ?, ?)",
                      [project_id, topic_map.facet, topic_map.id, built_at,
                       json.dumps({**topic_map.to_json(), **extra}), topic_map.arrays()])


def window_rows(store: Store, project_id: str, since: datetime) -> list[dict[str, Any]]:
    """Every span of every trace whose root span was created at or after `since`."""
    where = ("root_span_id IN (SELECT root_span_id FROM spans WHERE object_type = 'project_logs' "
             "AND object_id = ? AND is_root AND created >= ?)")
    return list(store.iter_rows("project_logs", project_id, where=where, params=[project_id, since]))


def write_topic_columns(store: Store, project_id: str, patches: dict[str, dict[str, Any]],
                        maps: list[tuple[TopicMap, dict[str, Any], datetime]] = ()) -> int:
    """Merge `{"facets": {...}, "classifications": {...}}` into each root row id's columns and save
    the rebuilt maps, in one transaction. A key set to None is removed (RFC 7396 merge patch)."""
    con = store.con
    store.con.execute(_MAPS_TABLE)
    with store.transaction():
        for topic_map, extra, built_at in maps:
            save_map(store, project_id, topic_map, extra, built_at)
        if not patches:
            return 0
        con.execute("CREATE OR REPLACE TEMP TABLE _topics_patch (id VARCHAR, facets JSON, classifications JSON)")
        con.executemany("INSERT INTO _topics_patch VALUES (?, ?, ?)", [
            (row_id, json.dumps(p["facets"]) if p.get("facets") else None,
             json.dumps(p["classifications"]) if p.get("classifications") else None)
            for row_id, p in patches.items()])
        for column in ("facets", "classifications"):
            con.execute(
                f"UPDATE spans SET {column} = json_merge_patch(coalesce(spans.{column}, '{{}}'::JSON), p.{column}) "
                "FROM _topics_patch p WHERE spans.object_type = 'project_logs' AND spans.object_id = ? "
                f"AND spans.id = p.id AND p.{column} IS NOT NULL", [project_id])
        con.execute("DROP TABLE _topics_patch")
    return len(patches)
