"""The eval config (`flywheel eval CONFIG.yaml`, schemas/eval-config.schema.json) as one typed model.

``EvalConfig.from_dict`` validates a parsed config against the schema (one line naming the file
and the JSON path of the first violation) and is the only reader of its keys; ``read_config``
reads YAML or JSON from a file. Paths in a config are relative to the config file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bt_flywheel.core import schemas
from bt_flywheel.core.errors import InputError

SCHEMA_NAME = "eval-config.schema.json"


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer entry: a name (ours, an autoevals class, or 'module:function') and optional args."""

    name: str
    args: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, spec: str | Mapping[str, Any] | ScorerSpec) -> ScorerSpec:
        """The one spelling of a scorer entry: `"name"` or `{name, args}` (already validated)."""
        if isinstance(spec, ScorerSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        return cls(spec["name"], spec.get("args"))

    def to_dict(self) -> str | dict[str, Any]:
        return self.name if self.args is None else {"name": self.name, "args": dict(self.args)}


@dataclass(frozen=True)
class DatasetRef:
    """A dataset in the local store by `name` (in `project`, default any), or a rows file at `path`."""

    name: str | None = None
    path: str | None = None
    project: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("name", self.name), ("path", self.path), ("project", self.project))
                if v is not None}


@dataclass(frozen=True)
class EvalConfig:
    project: str
    dataset: DatasetRef
    task: str
    scorers: tuple[ScorerSpec, ...]
    experiment_name: str | None = None
    trials: int = 1
    max_concurrency: int | None = None
    split: str | None = None
    first: int | None = None
    params: Mapping[str, Any] | None = None
    description: str | None = None

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "eval config") -> EvalConfig:
        """Validate ``doc`` against the schema; InputError names the first violation."""
        schemas.check(doc, SCHEMA_NAME, source=source)
        dataset = doc["dataset"]
        return cls(project=doc["project"],
                   dataset=DatasetRef(dataset.get("name"), dataset.get("path"), dataset.get("project")),
                   task=doc["task"], scorers=tuple(ScorerSpec.of(s) for s in doc["scorers"]),
                   experiment_name=doc.get("experiment_name"), trials=doc.get("trials", 1),
                   max_concurrency=doc.get("max_concurrency"), split=doc.get("split"), first=doc.get("first"),
                   params=doc.get("params"), description=doc.get("description"))

    def to_dict(self) -> dict[str, Any]:
        """The config as a document (optional keys only when set)."""
        out: dict[str, Any] = {"project": self.project}
        if self.experiment_name is not None:
            out["experiment_name"] = self.experiment_name
        out.update(dataset=self.dataset.to_dict(), task=self.task, scorers=[s.to_dict() for s in self.scorers])
        optional = {"trials": self.trials, "max_concurrency": self.max_concurrency, "split": self.split,
                    "first": self.first, "params": dict(self.params) if self.params is not None else None,
                    "description": self.description}
        for key, value in optional.items():
            if value is not None:
                out[key] = value
        return out


def read_config(path: Path) -> EvalConfig:
    """Read and validate an eval config (YAML or JSON) against schemas/eval-config.schema.json."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    return EvalConfig.from_dict(config, source=str(path))
