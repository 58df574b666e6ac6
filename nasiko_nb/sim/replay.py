"""Snapshot replay: load a `kubectl get -o yaml/json` dump (plus pod logs) as the cluster state.

Accepted: a file holding a v1 List, a typed list (PodList ...), or a multi-document YAML stream of objects;
or a directory of such files (searched recursively, ``logs/`` excluded) with pod logs at
``logs/<namespace>/<pod>/<container>.log`` and ``<container>.previous.log``.
Anything malformed raises :class:`SnapshotError` with one line naming the file and the problem.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import yaml

from nasiko_nb.sim.store import ApiError, registry

SNAPSHOT_SUFFIXES = (".yaml", ".yml", ".json")
Logs = dict[tuple[str, str, str, bool], str]


class SnapshotError(ValueError):
    """A snapshot that cannot be replayed; the message is one line: which file, what is wrong."""


@lru_cache(maxsize=1)
def _kinds():
    """The emulator's resource registry (built from discovery documents once, not per object)."""
    return registry()


def _documents(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SnapshotError(f"{path}: not a text file (expected YAML or JSON)") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot be read: {exc.strerror}") from None
    if path.suffix == ".json":
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
    try:
        return [doc for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
                if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SnapshotError(f"{path}: not valid YAML: {problem}{where}") from None


def _check_kind(path: Path, obj: dict, where: str) -> dict:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not kind:
        raise SnapshotError(f"{path}: {where} has no kind")
    if not api_version:
        raise SnapshotError(f"{path}: {where} ({kind}) has no apiVersion")
    try:
        resource = _kinds().for_kind(api_version, kind)
    except (ApiError, KeyError):
        raise SnapshotError(f"{path}: {where} has unknown kind {kind} (apiVersion {api_version})") from None
    if not (obj.get("metadata") or {}).get("name"):
        raise SnapshotError(f"{path}: {where} ({kind}) has no metadata.name")
    if resource.namespaced:
        obj["metadata"].setdefault("namespace", "default")
    return obj


def objects_from_file(path: Path) -> list[dict]:
    """Every object in one snapshot file; list items inherit apiVersion/kind from a typed list."""
    documents = _documents(path)
    if not documents:
        raise SnapshotError(f"{path}: empty (no Kubernetes objects)")
    objects = []
    for number, doc in enumerate(documents, 1):
        where = f"document {number}" if len(documents) > 1 else "the document"
        if not isinstance(doc, dict):
            raise SnapshotError(f"{path}: {where} is a {type(doc).__name__}, not a Kubernetes object")
        kind = doc.get("kind")
        if not kind:
            raise SnapshotError(f"{path}: {where} has no kind")
        if kind.endswith("List") and isinstance(doc.get("items", []), list):
            item_kind = kind[:-len("List")] or None
            for index, item in enumerate(doc.get("items") or []):
                if not isinstance(item, dict):
                    raise SnapshotError(f"{path}: {where}, item {index} is not an object")
                if item_kind:
                    item.setdefault("kind", item_kind)
                    item.setdefault("apiVersion", doc.get("apiVersion", "v1"))
                objects.append(_check_kind(path, item, f"{where}, item {index}"))
        else:
            objects.append(_check_kind(path, doc, where))
    return objects


def _logs(root: Path) -> Logs:
    logs: Logs = {}
    for path in sorted(root.glob("*/*/*.log")):
        namespace, pod = path.parent.parent.name, path.parent.name
        name = path.name[:-len(".log")]
        previous = name.endswith(".previous")
        container = name[:-len(".previous")] if previous else name
        logs[(namespace, pod, container, previous)] = path.read_text(encoding="utf-8", errors="replace")
    return logs


def _add_missing_namespaces(objects: list[dict]) -> list[dict]:
    present = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    needed = sorted({o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")} - present)
    return objects + [{"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}} for ns in needed]


def load_snapshot(source: str | Path) -> tuple[list[dict], Logs]:
    """Objects (with any missing Namespaces added) and pod logs from a snapshot file or directory."""
    root = Path(source)
    if not root.exists():
        raise SnapshotError(f"{root}: no such file or directory")
    logs: Logs = {}
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SNAPSHOT_SUFFIXES
                       and "logs" not in p.relative_to(root).parts[:1])
        if not files:
            raise SnapshotError(f"{root}: directory holds no *.yaml, *.yml or *.json snapshot files")
        objects = [obj for path in files for obj in objects_from_file(path)]
        if (root / "logs").is_dir():
            logs = _logs(root / "logs")
    else:
        objects = objects_from_file(root)
    return _add_missing_namespaces(objects), logs
