"""Thread-safe in-memory object store behind the Kubernetes API emulator.

Kinds, scopes and subresources come from the discovery documents of a real 1.34 API server (data/discovery),
so any resource those documents list can be stored, listed, patched and deleted.
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from nasiko_nb.sim import selectors


DATA_DIR = Path(__file__).with_name("data")


class ApiError(Exception):
    """An error the API server reports as a Kubernetes Status body."""

    def __init__(self, status: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.status}
        if self.details:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class ResourceType:
    """One resource as discovery advertises it (e.g. apps/v1 deployments)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...]
    subresources: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """How the API server names the resource in messages: 'pods', 'deployments.apps'."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def selector_label(self) -> str:
        """How the API server names the resource in selector errors: '/v1, Resource=pods'."""
        return f"{self.group}/{self.version}, Resource={self.plural}"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _discovery_text(name: str) -> str:
    return (DATA_DIR / "discovery" / name).read_text()


def discovery_document(name: str) -> dict | None:
    """A served discovery document by file name (URL with '/' as '__'), or None when not served."""
    try:
        return json.loads(_discovery_text(name))
    except FileNotFoundError:
        return None


@lru_cache(maxsize=1)
def registry() -> "Registry":
    return Registry()


class Registry:
    """Every resource of every group-version the emulator serves, indexed both ways."""

    def __init__(self):
        self.by_kind: dict[tuple[str, str], ResourceType] = {}
        self.by_plural: dict[tuple[str, str], ResourceType] = {}
        group_versions = [("", "v1", "api__v1.json")]
        for group in json.loads(_discovery_text("apis.json"))["groups"]:
            for version in group["versions"]:
                group_versions.append((group["name"], version["version"],
                                       f"apis__{group['name']}__{version['version']}.json"))
        for group, version, file_name in group_versions:
            entries = json.loads(_discovery_text(file_name))["resources"]
            subresources: dict[str, set[str]] = {}
            for entry in entries:
                if "/" in entry["name"]:
                    parent, sub = entry["name"].split("/", 1)
                    subresources.setdefault(parent, set()).add(sub)
            for entry in entries:
                if "/" in entry["name"]:
                    continue
                resource = ResourceType(group, version, entry["kind"], entry["name"], entry["namespaced"],
                                        tuple(entry["verbs"]), frozenset(subresources.get(entry["name"], ())))
                api_version = resource.api_version
                self.by_plural[(api_version, resource.plural)] = resource
                self.by_kind.setdefault((api_version, resource.kind), resource)

    def for_kind(self, api_version: str, kind: str) -> ResourceType:
        resource = self.by_kind.get((api_version, kind))
        if resource is None:
            raise ApiError(400, "BadRequest", f'no kind "{kind}" is registered for version "{api_version}"')
        return resource

    def for_plural(self, api_version: str, plural: str) -> ResourceType | None:
        return self.by_plural.get((api_version, plural))


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KINDS = {("v1", "Namespace"), ("v1", "Service")}


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fast_copy(value):
    """Deep copy of JSON data; several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {key: fast_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [fast_copy(item) for item in value]
    return value


def not_found(resource: ResourceType, name: str) -> ApiError:
    details = {"name": name, "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    return ApiError(404, "NotFound", f'{resource.group_resource} "{name}" not found', details)


def _namespace_not_found(namespace: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def _invalid(resource: ResourceType, name: str, field: str, cause_reason: str, detail: str) -> ApiError:
    message = f'{resource.kind} "{name}" is invalid: {field}: {detail}'
    details = {"name": name, "kind": resource.kind,
               "causes": [{"reason": cause_reason, "message": detail, "field": field}]}
    if resource.group:
        details["group"] = resource.group
    return ApiError(422, "Invalid", message, details)


_WRITE_MODES = ("all", "main", "status")

Listener = Callable[[str, dict], None]


def selector_matcher(resource: ResourceType, label_selector: str = "", field_selector: str = ""):
    """A predicate for the objects both selectors select; a malformed selector is a 400, as the API answers."""
    try:
        label_match = selectors.parse_label_selector(label_selector)
        field_match = selectors.parse_field_selector(field_selector, resource.api_version, resource.kind,
                                                     resource.selector_label)
    except selectors.SelectorError as error:
        raise ApiError(400, "BadRequest", str(error)) from None
    return lambda obj: label_match(obj) and field_match(obj)


class Store:
    """Thread-safe in-memory object store for every kind the emulator serves.

    Objects are indexed by (apiVersion, kind), then namespace ('' for cluster-scoped), then name.
    Writers that subscribe (simulated controllers) are called after each write, outside the lock.
    """

    def __init__(self, read_only: bool = False):
        self.read_only = read_only
        self.request_count = 0
        self.lock = threading.RLock()
        self.registry = registry()
        self._objects: dict[tuple[str, str], dict[str, dict[str, dict]]] = {}
        self._dependents: dict[str, set[tuple[str, str, str, str]]] = {}
        self._logs: dict[tuple[str, str, str, bool], str] = {}
        self._resource_version = 0
        self._listeners: list[Listener] = []

    # -- bookkeeping -----------------------------------------------------------------------------------------

    def reset_request_count(self) -> None:
        with self.lock:
            self.request_count = 0

    def count_request(self) -> None:
        with self.lock:
            self.request_count += 1

    def subscribe(self, callback: Listener) -> None:
        with self.lock:
            self._listeners.append(callback)

    def unsubscribe(self, callback: Listener) -> None:
        with self.lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _emit(self, events: list[tuple[str, dict]]) -> None:
        with self.lock:
            listeners = list(self._listeners)
        for event_type, obj in events:
            for listener in listeners:
                listener(event_type, fast_copy(obj))

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion handed out; lists report it as their metadata.resourceVersion."""
        with self.lock:
            return str(self._resource_version)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource "
                           "(this emulator is replaying a read-only snapshot)")

    # -- indexes --------------------------------------------------------------------------------------------

    def _bucket(self, resource: ResourceType, namespace: str) -> dict[str, dict]:
        return self._objects.setdefault((resource.api_version, resource.kind), {}).setdefault(namespace, {})

    def _index_owners(self, resource: ResourceType, obj: dict, add: bool) -> None:
        metadata = obj["metadata"]
        key = (resource.api_version, resource.kind, metadata.get("namespace", ""), metadata["name"])
        for owner in metadata.get("ownerReferences") or []:
            uid = owner.get("uid")
            if not uid:
                continue
            if add:
                self._dependents.setdefault(uid, set()).add(key)
            else:
                self._dependents.get(uid, set()).discard(key)

    def _put(self, resource: ResourceType, obj: dict, previous: dict | None) -> None:
        if previous is not None:
            self._index_owners(resource, previous, add=False)
        metadata = obj["metadata"]
        self._bucket(resource, metadata.get("namespace", ""))[metadata["name"]] = obj
        self._index_owners(resource, obj, add=True)

    def _namespace_key(self, resource: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if resource.namespaced else ""

    def _lookup(self, resource: ResourceType, namespace: str | None, name: str) -> dict:
        bucket = self._objects.get((resource.api_version, resource.kind), {}).get(
            self._namespace_key(resource, namespace), {})
        obj = bucket.get(name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def _namespace_exists(self, namespace: str) -> bool:
        return namespace in self._objects.get(("v1", "Namespace"), {}).get("", {})

    # -- metadata ---------------------------------------------------------------------------------------------

    def _fill_server_metadata(self, obj: dict, resource: ResourceType) -> None:
        metadata = obj.setdefault("metadata", {})
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", now_rfc3339())
        metadata.setdefault("generation", 1)
        if not resource.namespaced:
            metadata.pop("namespace", None)

    def _validate_name(self, resource: ResourceType, obj: dict) -> None:
        metadata = obj.setdefault("metadata", {})
        name = metadata.get("name") or ""
        if not name:
            generate_name = metadata.get("generateName")
            if not generate_name:
                raise _invalid(resource, "", "metadata.name", "FieldValueRequired",
                               "Required value: name or generateName is required")
            name = generate_name + uuid.uuid4().hex[:5]
            metadata["name"] = name
        pattern = _DNS_LABEL if (resource.api_version, resource.kind) in _LABEL_KINDS else _DNS_SUBDOMAIN
        if not pattern.match(name) or len(name) > 253:
            kind_of_name = "RFC 1123 label" if pattern is _DNS_LABEL else "RFC 1123 subdomain"
            raise _invalid(resource, name, "metadata.name", "FieldValueInvalid",
                           f'Invalid value: "{name}": a lowercase {kind_of_name} must consist of lower case '
                           "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                           "character")

    # -- public API ---------------------------------------------------------------------------------------

    def resource_for(self, obj: dict) -> ResourceType:
        return self.registry.for_kind(obj.get("apiVersion", ""), obj.get("kind", ""))

    def load(self, objects: Iterable[dict]) -> None:
        """Bulk load (scenarios, snapshots): keeps given metadata, fills what a server would have set."""
        with self.lock:
            for original in objects:
                obj = fast_copy(original)
                resource = self.resource_for(obj)
                metadata = obj.setdefault("metadata", {})
                if not metadata.get("name"):
                    raise ApiError(400, "BadRequest", f"{resource.kind} without metadata.name cannot be loaded")
                if resource.namespaced:
                    metadata.setdefault("namespace", "default")
                self._fill_server_metadata(obj, resource)
                given_version = str(metadata.get("resourceVersion", ""))
                if given_version.isdigit():
                    self._resource_version = max(self._resource_version, int(given_version))
                else:
                    metadata["resourceVersion"] = self._next_resource_version()
                previous = self._bucket(resource, metadata.get("namespace", "")).get(metadata["name"])
                self._put(resource, obj, previous)

    def create(self, obj: dict, *, dry_run: bool = False) -> dict:
        """Create like POST: validates the name, requires the namespace to exist; 409 AlreadyExists."""
        self._check_writable()
        with self.lock:
            obj = fast_copy(obj)
            resource = self.resource_for(obj)
            self._validate_name(resource, obj)
            metadata = obj["metadata"]
            if resource.namespaced:
                namespace = metadata.setdefault("namespace", "default")
                if not self._namespace_exists(namespace):
                    raise _namespace_not_found(namespace)
            for server_field in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
                metadata.pop(server_field, None)
            bucket = self._bucket(resource, metadata.get("namespace", "") if resource.namespaced else "")
            if metadata["name"] in bucket:
                details = {"name": metadata["name"], "kind": resource.plural}
                if resource.group:
                    details["group"] = resource.group
                raise ApiError(409, "AlreadyExists",
                               f'{resource.group_resource} "{metadata["name"]}" already exists', details)
            self._fill_server_metadata(obj, resource)
            metadata["resourceVersion"] = self._next_resource_version()
            if dry_run:
                return obj
            self._put(resource, obj, None)
            stored = fast_copy(obj)
        self._emit([("ADDED", obj)])
        return stored

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict:
        with self.lock:
            return fast_copy(self._lookup(self.registry.for_kind(api_version, kind), namespace, name))

    def select(self, resource: ResourceType, namespace: str | None = None, label_selector: str = "",
               field_selector: str = "") -> list[dict]:
        """Matching stored objects in (namespace, name) order, NOT copied: call with self.lock held."""
        matches_selectors = selector_matcher(resource, label_selector, field_selector)
        by_namespace = self._objects.get((resource.api_version, resource.kind), {})
        if resource.namespaced and namespace:
            namespaces = [namespace]
        else:
            namespaces = sorted(by_namespace)
        matches = []
        for namespace_key in namespaces:
            bucket = by_namespace.get(namespace_key, {})
            for name in sorted(bucket):
                obj = bucket[name]
                if matches_selectors(obj):
                    matches.append(obj)
        return matches

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str = "", field_selector: str = "") -> list[dict]:
        with self.lock:
            resource = self.registry.for_kind(api_version, kind)
            return [fast_copy(obj) for obj in self.select(resource, namespace, label_selector, field_selector)]

    def update(self, obj: dict, *, write: str = "all", dry_run: bool = False) -> dict:
        """Replace an object like PUT; 409 Conflict when metadata.resourceVersion is set and stale.

        write='all' (in-process writers such as simulated controllers) stores everything; the API server uses
        'main' (status changes ignored for kinds with a status subresource) and 'status' (only status changes).
        """
        if write not in _WRITE_MODES:
            raise ValueError(f"write must be one of {_WRITE_MODES}")
        self._check_writable()
        with self.lock:
            obj = fast_copy(obj)
            resource = self.resource_for(obj)
            metadata = obj.setdefault("metadata", {})
            name = metadata.get("name") or ""
            if not name:
                raise _invalid(resource, "", "metadata.name", "FieldValueRequired", "Required value: name is required")
            current = self._lookup(resource, metadata.get("namespace"), name)
            given_version = metadata.get("resourceVersion")
            if given_version and str(given_version) != current["metadata"]["resourceVersion"]:
                details = {"name": name, "kind": resource.plural}
                if resource.group:
                    details["group"] = resource.group
                raise ApiError(409, "Conflict",
                               f'Operation cannot be fulfilled on {resource.group_resource} "{name}": the object has '
                               "been modified; please apply your changes to the latest version and try again",
                               details)
            if write == "status":
                updated = fast_copy(current)
                if "status" in obj:
                    updated["status"] = obj["status"]
                else:
                    updated.pop("status", None)
            else:
                updated = obj
                if write == "main" and resource.has_status:
                    if "status" in current:
                        updated["status"] = fast_copy(current["status"])
                    else:
                        updated.pop("status", None)
                for server_field in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                    if server_field in current["metadata"]:
                        metadata[server_field] = current["metadata"][server_field]
                    else:
                        metadata.pop(server_field, None)
                if resource.namespaced:
                    metadata["namespace"] = current["metadata"]["namespace"]
                else:
                    metadata.pop("namespace", None)
                if updated.get("spec") != current.get("spec"):
                    metadata["generation"] = int(current["metadata"].get("generation", 1)) + 1
            if _same_content(updated, current):
                return fast_copy(current)
            updated["metadata"]["resourceVersion"] = self._next_resource_version()
            if dry_run:
                return updated
            self._put(resource, updated, current)
            stored = fast_copy(updated)
        self._emit([("MODIFIED", updated)])
        return stored

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
               propagation: str = "Background", *, dry_run: bool = False) -> dict:
        """Delete and return the object; Background/Foreground also delete dependents, Orphan unlinks them."""
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise ApiError(422, "Invalid", f"DeleteOptions.propagationPolicy: Unsupported value: \"{propagation}\"")
        self._check_writable()
        events: list[tuple[str, dict]] = []
        with self.lock:
            resource = self.registry.for_kind(api_version, kind)
            obj = self._lookup(resource, namespace, name)
            if dry_run:
                return fast_copy(obj)
            self._delete_locked(resource, obj, propagation, events)
            deleted = fast_copy(obj)
        self._emit(events)
        return deleted

    def _delete_locked(self, resource: ResourceType, obj: dict, propagation: str,
                       events: list[tuple[str, dict]]) -> None:
        metadata = obj["metadata"]
        namespace = metadata.get("namespace", "")
        bucket = self._bucket(resource, namespace)
        if bucket.get(metadata["name"]) is not obj:
            return
        del bucket[metadata["name"]]
        self._index_owners(resource, obj, add=False)
        events.append(("DELETED", obj))
        for key in sorted(self._dependents.pop(metadata["uid"], set())):
            dependent_resource = self.registry.for_kind(key[0], key[1])
            dependent = self._objects.get((key[0], key[1]), {}).get(key[2], {}).get(key[3])
            if dependent is None:
                continue
            if propagation == "Orphan":
                orphaned = fast_copy(dependent)
                orphaned["metadata"]["ownerReferences"] = [
                    owner for owner in dependent["metadata"].get("ownerReferences", [])
                    if owner.get("uid") != metadata["uid"]]
                if not orphaned["metadata"]["ownerReferences"]:
                    del orphaned["metadata"]["ownerReferences"]
                orphaned["metadata"]["resourceVersion"] = self._next_resource_version()
                self._put(dependent_resource, orphaned, dependent)
                events.append(("MODIFIED", orphaned))
            else:
                self._delete_locked(dependent_resource, dependent, propagation, events)
        if (resource.api_version, resource.kind) == ("v1", "Namespace"):
            self._delete_namespace_contents(metadata["name"], events)

    def _delete_namespace_contents(self, namespace: str, events: list[tuple[str, dict]]) -> None:
        for (api_version, kind), by_namespace in list(self._objects.items()):
            contents = by_namespace.get(namespace)
            if not contents:
                continue
            resource = self.registry.for_kind(api_version, kind)
            for obj in list(contents.values()):
                self._delete_locked(resource, obj, "Background", events)
        self._logs = {key: text for key, text in self._logs.items() if key[0] != namespace}

    def delete_collection(self, resource: ResourceType, namespace: str | None, label_selector: str = "",
                          field_selector: str = "", propagation: str = "Background",
                          dry_run: bool = False) -> list[dict]:
        """Delete every matching object; returns the deleted objects."""
        self._check_writable()
        events: list[tuple[str, dict]] = []
        with self.lock:
            matches = self.select(resource, namespace, label_selector, field_selector)
            deleted = [fast_copy(obj) for obj in matches]
            if not dry_run:
                for obj in matches:
                    self._delete_locked(resource, obj, propagation, events)
        self._emit(events)
        return deleted

    def set_log(self, namespace: str, pod: str, container: str, text: str, previous: bool = False) -> None:
        with self.lock:
            self._logs[(namespace, pod, container, previous)] = text

    def get_log(self, namespace: str, pod: str, container: str, previous: bool = False) -> str | None:
        with self.lock:
            return self._logs.get((namespace, pod, container, previous))


def _same_content(updated: dict, current: dict) -> bool:
    """True when a write changes nothing but the resourceVersion (the server then keeps the old version)."""
    if updated.keys() != current.keys():
        return False
    for key, value in updated.items():
        if key == "metadata":
            old_metadata = current["metadata"]
            if {k: v for k, v in value.items() if k != "resourceVersion"} != \
                    {k: v for k, v in old_metadata.items() if k != "resourceVersion"}:
                return False
        elif value != current[key]:
            return False
    return True
