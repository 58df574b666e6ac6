"""Label and field selectors with the grammar and error behaviour of the Kubernetes API server."""
from __future__ import annotations

import re
from typing import Callable


Matcher = Callable[[dict], bool]


class SelectorError(ValueError):
    """A selector the API server would reject with 400 BadRequest; the message is the server's."""

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_REQUIREMENT = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s+(in|notin)\s*\((.*)\)\s*$")
_EQUALITY_REQUIREMENT = re.compile(r"^\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*$")
_EXISTS_REQUIREMENT = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside the parentheses of an in/notin value set."""
    parts, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def _bad_label_selector(detail: str) -> SelectorError:
    return SelectorError(f"unable to parse requirement: {detail}")


def parse_label_selector(selector: str) -> Matcher:
    """Compile a label selector (=, ==, !=, in, notin, exists, !exists; comma means AND) into a matcher."""
    checks: list[Callable[[dict], bool]] = []
    for requirement in _split_requirements(selector or ""):
        set_match = _SET_REQUIREMENT.match(requirement)
        if set_match:
            if set_match.group(1):
                raise _bad_label_selector(f"invalid label selector: {requirement!r}")
            key, operator = set_match.group(2), set_match.group(3)
            values = frozenset(v.strip() for v in set_match.group(4).split(",") if v.strip())
            for value in values:
                if not _LABEL_VALUE.match(value):
                    raise _bad_label_selector(f"values[0][{key}]: Invalid value: {value!r}")
            if operator == "in":
                checks.append(lambda labels, k=key, vs=values: k in labels and labels[k] in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: k not in labels or labels[k] not in vs)
            continue
        equality = _EQUALITY_REQUIREMENT.match(requirement)
        if equality:
            key, operator, value = equality.groups()
            if not _LABEL_VALUE.match(value):
                raise _bad_label_selector(f"values[0][{key}]: Invalid value: {value!r}")
            if operator == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: k in labels and labels[k] == v)
            continue
        exists = _EXISTS_REQUIREMENT.match(requirement)
        if exists:
            negated, key = exists.groups()
            if negated:
                checks.append(lambda labels, k=key: k not in labels)
            else:
                checks.append(lambda labels, k=key: k in labels)
            continue
        raise _bad_label_selector(f"found '{requirement.strip()}', expected: identifier")
    if not checks:
        return lambda obj: True

    def matches(obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return matches


def _get_path(obj: dict, path: str, default: str = "") -> str:
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _path(path: str, default: str = "") -> Callable[[dict], str]:
    return lambda obj: _get_path(obj, path, default)


_COMMON_FIELDS = {"metadata.name": _path("metadata.name"), "metadata.namespace": _path("metadata.namespace")}

# Field labels each kind's REST storage registers (pkg/registry/*/strategy.go GetAttrs / AddFieldLabelConversionFunc).
_KIND_FIELDS: dict[tuple[str, str], dict[str, Callable[[dict], str]]] = {
    ("v1", "Pod"): {
        "spec.nodeName": _path("spec.nodeName"),
        "spec.restartPolicy": _path("spec.restartPolicy"),
        "spec.schedulerName": _path("spec.schedulerName"),
        "spec.serviceAccountName": _path("spec.serviceAccountName"),
        "spec.hostNetwork": _path("spec.hostNetwork", "false"),
        "status.phase": _path("status.phase"),
        "status.podIP": _path("status.podIP"),
        "status.nominatedNodeName": _path("status.nominatedNodeName"),
    },
    ("v1", "Event"): {
        **{f"involvedObject.{field}": _path(f"involvedObject.{field}") for field in
           ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": _path("reason"),
        "reportingComponent": _path("reportingComponent"),
        "source": _path("source.component"),
        "type": _path("type"),
    },
    ("v1", "Secret"): {"type": _path("type")},
    ("v1", "Namespace"): {"status.phase": _path("status.phase")},
    ("v1", "Node"): {"spec.unschedulable": _path("spec.unschedulable", "false")},
    ("v1", "ReplicationController"): {"status.replicas": _path("status.replicas", "0")},
    ("apps/v1", "ReplicaSet"): {"status.replicas": _path("status.replicas", "0")},
    ("batch/v1", "Job"): {"status.successful": _path("status.succeeded", "0")},
    ("certificates.k8s.io/v1", "CertificateSigningRequest"): {"spec.signerName": _path("spec.signerName")},
}

_FIELD_REQUIREMENT = re.compile(r"^\s*([^\s!=]+)\s*(==|=|!=)\s*(.*?)\s*$")


def parse_field_selector(selector: str, api_version: str, kind: str, resource_label: str) -> Matcher:
    """Compile a field selector for one kind; unknown fields raise SelectorError with the real server's message.

    resource_label is how the real server names the resource in the error, e.g. '/v1, Resource=pods'.
    """
    fields = {**_COMMON_FIELDS, **_KIND_FIELDS.get((api_version, kind), {})}
    checks = []
    for requirement in [part for part in (selector or "").split(",") if part.strip()]:
        match = _FIELD_REQUIREMENT.match(requirement)
        if not match:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{requirement}'")
        field, operator, value = match.groups()
        if field not in fields:
            raise SelectorError(
                f'Unable to find "{resource_label}" that match label selector "", field selector '
                f'"{selector}": field label not supported: {field}')
        getter = fields[field]
        if operator == "!=":
            checks.append(lambda obj, g=getter, v=value: g(obj) != v)
        else:
            checks.append(lambda obj, g=getter, v=value: g(obj) == v)
    if not checks:
        return lambda obj: True
    return lambda obj: all(check(obj) for check in checks)
