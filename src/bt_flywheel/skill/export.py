"""Export the skill as a self-contained Agent Skills folder, and check a folder against the rules.

The plugin keeps `references/`, `schemas/` and `scripts/` at its root, beside `skills/bt-flywheel/`,
so SKILL.md links them as `../../references/...` and names the helper by
`${CLAUDE_PLUGIN_ROOT}/scripts/flywheel`, which Claude Code fills in when it loads a plugin skill.
Clients that install only a skill folder (Codex, any Agent Skills client) substitute nothing and
need everything inside one folder named after the skill:

    bt-flywheel/
      SKILL.md             links and ${CLAUDE_...} paths rewritten to references/, schemas/, scripts/
      references/*.md      copied (their links are already relative to each other and ../schemas)
      schemas/*.json
      agents/openai.yaml   Codex interface metadata
      scripts/flywheel     runs the CLI; on first use installs the bundled package into a private venv
      scripts/package/     pyproject.toml, README.md, src/bt_flywheel/, schemas/ (the CLI's own copy)

`validate_skill_dir` checks the Agent Skills rules (frontmatter keys, name = folder, lengths) and
that every file SKILL.md and the references point at exists, with exact case. A skill folder at
`<plugin>/skills/<name>/` (this repository, or Claude Code's installed copy) is checked against its
plugin root, where `references/` and `${CLAUDE_PLUGIN_ROOT}` point.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bt_flywheel.core.errors import CheckFailed, InputError

SKILL_NAME = "bt-flywheel"
ALLOWED_FRONTMATTER = frozenset({"name", "description", "license", "compatibility", "metadata", "allowed-tools"})
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_NAME, MAX_DESCRIPTION, MAX_COMPATIBILITY = 64, 1024, 500
MAX_BODY_LINES, MAX_BODY_TOKENS = 500, 5000
CHARS_PER_TOKEN = 3.5  # conservative for English markdown with code (real tokenizers give ~4)
OPENAI_INTERFACE_KEYS = frozenset({"display_name", "short_description", "icon_small", "icon_large",
                                   "brand_color", "default_prompt"})
OPENAI_TOP_KEYS = frozenset({"interface", "policy", "dependencies"})
# Link prefixes in the plugin's SKILL.md and what they become inside the exported folder.
_REWRITES = (("../../references/", "references/"), ("../../schemas/", "schemas/"),
             ("../../scripts/", "scripts/"), ("${CLAUDE_SKILL_DIR}/../../", ""), ("${CLAUDE_SKILL_DIR}/", ""),
             ("${CLAUDE_PLUGIN_ROOT}/", ""))
# Lines only true inside Claude Code (the plugin's bin/ on PATH), and what an export says instead.
_EXPORT_LINES = {
    "- The helper CLI is `${CLAUDE_PLUGIN_ROOT}/scripts/flywheel`, on PATH as `flywheel` while the plugin is enabled.":
    "- The helper CLI is `scripts/flywheel` in this skill's folder (the one holding this SKILL.md).",
}
_MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE_PATH = re.compile(r"`((?:references|schemas|scripts|agents)/[A-Za-z0-9_./-]+)`")
_VAR_PATH = re.compile(r"\$\{(CLAUDE_PLUGIN_ROOT|CLAUDE_SKILL_DIR)\}/([A-Za-z0-9_./-]+)")

_WRAPPER = """#!/usr/bin/env bash
# bt-flywheel helper CLI (exported skill). Uses an importable bt_flywheel if there is one;
# otherwise, on first use, creates a private venv beside this skill ($FLYWHEEL_VENV if set) and
# installs the package bundled in scripts/package (with uv when it is on PATH, pip when there is no
# uv or uv fails), and says so on stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
skill="$(cd "$here/.." && pwd)"
python="${FLYWHEEL_PYTHON:-python3}"
if "$python" -c "import bt_flywheel" >/dev/null 2>&1; then
  exec "$python" -m bt_flywheel "$@"
fi
venv="${FLYWHEEL_VENV:-$skill/.venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import bt_flywheel" >/dev/null 2>&1; then
  echo "flywheel: first use, creating a private environment in $venv (one time)..." >&2
  if ! command -v uv >/dev/null 2>&1 || ! { [ -x "$venv/bin/python" ] || uv venv --quiet --python "$python" "$venv" >&2; } \
     || ! uv pip install --quiet --python "$venv/bin/python" -e "$here/package" >&2; then
    "$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$python" -m venv --clear "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$here/package" >&2
  fi
  echo "flywheel: environment ready" >&2
fi
exec "$venv/bin/python" -m bt_flywheel "$@"
"""


@dataclass
class ExportResult:
    path: Path
    files: list[str] = field(default_factory=list)
    source: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "name": self.path.name, "files": len(self.files),
                "skill_md": str(self.path / "SKILL.md"), "source": str(self.source) if self.source else None}


def plugin_root() -> Path:
    """The checkout this package runs from (it is installed editable), or FLYWHEEL_PLUGIN_ROOT."""
    override = os.environ.get("FLYWHEEL_PLUGIN_ROOT")
    candidates = ([Path(override)] if override else []) + [Path(__file__).resolve().parents[3]]
    for candidate in candidates:
        if (candidate / "skills" / SKILL_NAME / "SKILL.md").is_file():
            return candidate
    raise InputError(f"{candidates[0]}: no skills/{SKILL_NAME}/SKILL.md here",
                     hint="run from a bt-flywheel checkout or set FLYWHEEL_PLUGIN_ROOT")


def rewrite_links(text: str) -> str:
    """Plugin-relative paths (../../references/x.md, ${CLAUDE_PLUGIN_ROOT}/scripts/flywheel) ->
    skill-relative ones (references/x.md, scripts/flywheel), and the Claude-Code-only lines ->
    what is true in a standalone skill folder. Raises CheckFailed when a Claude-Code-only line this
    function knows has gone from SKILL.md (so its replacement would silently not happen)."""
    lines = text.split("\n")
    for old, new in _EXPORT_LINES.items():
        if old not in lines:
            raise CheckFailed(f"SKILL.md no longer has the line {old!r}; update _EXPORT_LINES in skill/export.py")
        lines = [new if line == old else line for line in lines]
    text = "\n".join(lines)
    for old, new in _REWRITES:
        text = text.replace(old, new)
    return text


def export_skill(dest: str | os.PathLike[str], *, root: Path | None = None, force: bool = False) -> ExportResult:
    """Write the self-contained skill folder. `dest` is the folder itself when it is named
    bt-flywheel, else the folder is created inside it. Written to a temp folder, validated, then
    moved into place, so a failed export leaves nothing half-written."""
    root = root or plugin_root()
    target = Path(dest)
    if target.name != SKILL_NAME:
        target = target / SKILL_NAME
    if target.exists() and any(target.iterdir()) and not force:
        raise InputError(f"{target}: already exists and is not empty", hint="pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bt-flywheel-export-", dir=target.parent)) / SKILL_NAME
    try:
        files = _write_folder(root, staging)
        problems = validate_skill_dir(staging)
        if problems:
            raise CheckFailed(f"exported skill fails validation: {problems[0]}"
                              + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return ExportResult(target, files, root)


def _write_folder(root: Path, out: Path) -> list[str]:
    skill = root / "skills" / SKILL_NAME
    written: list[str] = []

    def put(rel: str, text: str, *, executable: bool = False) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if executable:
            path.chmod(0o755)
        written.append(rel)

    def copy(src: Path, rel: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, path)
        written.append(rel)

    put("SKILL.md", rewrite_links(skill.joinpath("SKILL.md").read_text(encoding="utf-8")))
    for src in sorted(skill.rglob("*")):
        rel = src.relative_to(skill).as_posix()
        if src.is_file() and rel != "SKILL.md" and "__pycache__" not in rel:
            copy(src, rel)
    for folder, pattern in (("references", "*.md"), ("schemas", "*.json")):
        for src in sorted((root / folder).glob(pattern)):
            copy(src, f"{folder}/{src.name}")
    put("scripts/flywheel", _WRAPPER, executable=True)
    package = "scripts/package"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            copy(root / name, f"{package}/{name}")
    for src in sorted((root / "src" / "bt_flywheel").rglob("*")):
        rel = src.relative_to(root).as_posix()
        if src.is_file() and "__pycache__" not in rel and src.suffix in (".py", ".typed", ".json", ".yaml"):
            copy(src, f"{package}/{rel}")
    # The package finds its schemas at <package root>/schemas (it is installed editable).
    for src in sorted((root / "schemas").glob("*.json")):
        copy(src, f"{package}/schemas/{src.name}")
    return written


# ------------------------------------------------------------------------------------ validation

def split_frontmatter(text: str, *, source: str = "SKILL.md") -> tuple[dict[str, Any], str]:
    import yaml

    match = re.match(r"^---\n(.*?)\n---[ \t]*\n?", text, re.S)
    if not match:
        raise InputError(f"{source}: no YAML frontmatter (the file must start with ---)")
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: frontmatter is not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: frontmatter must be a mapping")
    return data, text[match.end():]


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


def check_frontmatter(meta: dict[str, Any], folder_name: str) -> list[str]:
    problems: list[str] = []
    extra = sorted(set(meta) - ALLOWED_FRONTMATTER)
    if extra:
        problems.append(f"frontmatter: keys not allowed by the Agent Skills spec: {', '.join(extra)} "
                        f"(allowed: {', '.join(sorted(ALLOWED_FRONTMATTER))})")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        problems.append("frontmatter.name: missing or not a string")
    else:
        if len(name) > MAX_NAME:
            problems.append(f"frontmatter.name: {len(name)} characters (max {MAX_NAME})")
        if not NAME_RE.match(name):
            problems.append(f"frontmatter.name: {name!r} must be lowercase letters, digits and single hyphens")
        if name != folder_name:
            problems.append(f"frontmatter.name: {name!r} does not match the folder name {folder_name!r}")
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append("frontmatter.description: missing or empty")
    else:
        if len(description) > MAX_DESCRIPTION:
            problems.append(f"frontmatter.description: {len(description)} characters (max {MAX_DESCRIPTION})")
        if "<" in description or ">" in description:
            problems.append("frontmatter.description: contains < or > (some validators reject angle brackets)")
    compatibility = meta.get("compatibility")
    if compatibility is not None and (not isinstance(compatibility, str) or len(compatibility) > MAX_COMPATIBILITY):
        problems.append(f"frontmatter.compatibility: must be a string of at most {MAX_COMPATIBILITY} characters")
    metadata = meta.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict)
                                 or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        problems.append("frontmatter.metadata: must map strings to strings")
    license_ = meta.get("license")
    if license_ is not None and not isinstance(license_, str):
        problems.append("frontmatter.license: must be a string")
    return problems


def exists_exact_case(base: Path, rel: str) -> bool:
    """True if `rel` exists under `base` with exactly this spelling (also on case-insensitive disks)."""
    current = base
    for part in Path(rel).parts:
        if part in (".", ""):
            continue
        if part == "..":
            current = current.parent
            continue
        try:
            names = os.listdir(current)
        except (NotADirectoryError, FileNotFoundError):
            return False
        if part not in names:
            return False
        current = current / part
    return True


def referenced_paths(text: str) -> tuple[list[str], list[str]]:
    """(markdown link targets relative to the file, backticked resource paths relative to the skill root)."""
    links = []
    for target in _MD_LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        links.append(target.split("#", 1)[0])
    code = [m.rstrip(".") for m in _CODE_PATH.findall(text)]
    return links, code


def plugin_root_of(skill_dir: Path) -> Path | None:
    """The plugin root when `skill_dir` is `<plugin>/skills/<name>` (a checkout or an installed copy)."""
    resolved = skill_dir.resolve()
    root = resolved.parent.parent
    if resolved.parent.name == "skills" and (root / ".claude-plugin" / "plugin.json").is_file():
        return root
    return None


def check_references(skill_dir: Path, resource_root: Path, *, in_plugin: bool = False) -> list[str]:
    problems = []
    files = [skill_dir / "SKILL.md", *sorted((resource_root / "references").glob("*.md"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        shown = path.relative_to(resource_root) if path.is_relative_to(resource_root) else path.name
        for var, rel in _VAR_PATH.findall(text):
            if not in_plugin and var == "CLAUDE_PLUGIN_ROOT":
                problems.append(f"{shown}: uses ${{{var}}}, which only a Claude Code plugin fills in")
                continue
            base = resource_root if var == "CLAUDE_PLUGIN_ROOT" else skill_dir
            if not exists_exact_case(base, rel.rstrip(".")):
                problems.append(f"{shown}: mentions ${{{var}}}/{rel.rstrip('.')}, which does not exist (case-sensitive)")
        links, code = referenced_paths(text)
        for target in links:
            if target and not exists_exact_case(path.parent, target):
                problems.append(f"{shown}: links to {target}, which does not exist (case-sensitive)")
        for target in code:
            if not exists_exact_case(resource_root, target):
                problems.append(f"{shown}: mentions `{target}`, which does not exist (case-sensitive)")
    return problems


def check_openai_yaml(path: Path) -> list[str]:
    import yaml

    if not path.is_file():
        return [f"{path.name}: missing (agents/openai.yaml)"]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return [f"agents/openai.yaml: not valid YAML ({' '.join(str(exc).split())})"]
    if not isinstance(data, dict):
        return ["agents/openai.yaml: must be a mapping"]
    problems = [f"agents/openai.yaml: unknown top-level key {k!r}" for k in sorted(set(data) - OPENAI_TOP_KEYS)]
    interface = data.get("interface")
    if not isinstance(interface, dict):
        return [*problems, "agents/openai.yaml: interface: missing"]
    problems += [f"agents/openai.yaml: interface.{k}: unknown key" for k in sorted(set(interface) - OPENAI_INTERFACE_KEYS)]
    for key in ("display_name", "short_description", "default_prompt"):
        if not isinstance(interface.get(key), str) or not interface[key].strip():
            problems.append(f"agents/openai.yaml: interface.{key}: missing or empty")
    short = interface.get("short_description")
    if isinstance(short, str) and not 25 <= len(short) <= 64:
        problems.append(f"agents/openai.yaml: interface.short_description: {len(short)} characters (25-64)")
    policy = data.get("policy")
    if policy is not None:
        if not isinstance(policy, dict) or not isinstance(policy.get("allow_implicit_invocation", True), bool):
            problems.append("agents/openai.yaml: policy.allow_implicit_invocation: must be true or false")
    return problems


def validate_skill_dir(skill_dir: str | os.PathLike[str], *, resource_root: str | os.PathLike[str] | None = None
                       ) -> list[str]:
    """Every rule the folder breaks, one line each (empty when it passes).

    `resource_root` is where `references/`, `schemas/` and `scripts/` live: by default the plugin
    root when the folder sits at `<plugin>/skills/<name>/`, else the skill folder itself (an export)."""
    skill_dir = Path(skill_dir)
    plugin = plugin_root_of(skill_dir)
    root = Path(resource_root) if resource_root is not None else (plugin or skill_dir)
    skill_md = skill_dir / "SKILL.md"
    if not exists_exact_case(skill_dir, "SKILL.md"):
        return [f"{skill_dir}: no SKILL.md (exact case)"]
    text = skill_md.read_text(encoding="utf-8")
    try:
        meta, body = split_frontmatter(text, source=str(skill_md))
    except InputError as exc:
        return [exc.message]
    problems = check_frontmatter(meta, skill_dir.resolve().name)
    lines = text.count("\n") + 1
    if lines >= MAX_BODY_LINES:
        problems.append(f"SKILL.md: {lines} lines (keep it under {MAX_BODY_LINES})")
    tokens = estimate_tokens(text)
    if tokens >= MAX_BODY_TOKENS:
        problems.append(f"SKILL.md: about {tokens} tokens (keep it under {MAX_BODY_TOKENS})")
    problems += check_references(skill_dir, root, in_plugin=plugin is not None)
    problems += check_openai_yaml(skill_dir / "agents" / "openai.yaml")
    return problems
