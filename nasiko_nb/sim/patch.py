"""The three PATCH flavours the API server accepts: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge.

Strategic merge takes each list's merge key and strategy from the 1.34 OpenAPI document
(x-kubernetes-patch-merge-key / x-kubernetes-patch-strategy), extracted into data/patch_strategies.json.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path


class PatchError(ValueError):
    """A patch the API server refuses; status is the HTTP code it answers with (422 or 400)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def merge_patch(target, patch):
    """RFC 7386: objects merge recursively, null deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {path!r}", 400)
    return [_unescape(token) for token in path[1:].split("/")]


def _resolve_parent(document, tokens: list[str], path: str):
    container = document
    for token in tokens[:-1]:
        if isinstance(container, dict) and token in container:
            container = container[token]
        elif isinstance(container, list) and token.isdigit() and int(token) < len(container):
            container = container[int(token)]
        else:
            raise PatchError(f"doc is missing path: {path!r}")
    return container


def _list_index(container: list, token: str, path: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"invalid array index {token!r} in path {path!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"array index {index} out of bounds in path {path!r}")
    return index


def _get(document, path: str):
    tokens = _pointer(path)
    if not tokens:
        return document
    container = _resolve_parent(document, tokens, path)
    token = tokens[-1]
    if isinstance(container, dict) and token in container:
        return container[token]
    if isinstance(container, list):
        return container[_list_index(container, token, path, allow_end=False)]
    raise PatchError(f"doc is missing path: {path!r}")


def _remove(document, path: str):
    tokens = _pointer(path)
    container = _resolve_parent(document, tokens, path)
    token = tokens[-1]
    if isinstance(container, dict):
        if token not in container:
            raise PatchError(f"doc is missing path: {path!r}")
        return container.pop(token)
    if isinstance(container, list):
        return container.pop(_list_index(container, token, path, allow_end=False))
    raise PatchError(f"doc is missing path: {path!r}")


def _add(document, path: str, value, replace: bool = False):
    tokens = _pointer(path)
    if not tokens:
        return value
    container = _resolve_parent(document, tokens, path)
    token = tokens[-1]
    if isinstance(container, dict):
        if replace and token not in container:
            raise PatchError(f"doc is missing key: {path!r}")
        container[token] = value
    elif isinstance(container, list):
        index = _list_index(container, token, path, allow_end=not replace)
        if replace:
            container[index] = value
        else:
            container.insert(index, value)
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return document


def json_patch(target, operations) -> dict:
    """RFC 6902 operations add/remove/replace/move/copy/test, applied to a copy of target."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a list of operations", 400)
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path")
        if path is None:
            raise PatchError(f"missing path in operation {operation!r}", 400)
        if op == "add":
            document = _add(document, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _remove(document, path)
        elif op == "replace":
            document = _add(document, path, copy.deepcopy(operation.get("value")), replace=True)
        elif op == "move":
            value = _remove(document, operation["from"])
            document = _add(document, path, value)
        elif op == "copy":
            document = _add(document, path, copy.deepcopy(_get(document, operation["from"])))
        elif op == "test":
            if _get(document, path) != operation.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {op}", 400)
    return document


@lru_cache(maxsize=1)
def _patch_strategies() -> dict:
    text = (Path(__file__).with_name("data") / "patch_strategies.json").read_text()
    return json.loads(text)


def definition_for(api_version: str, kind: str) -> str | None:
    """The OpenAPI definition name of a kind, used as the root of strategic merge metadata."""
    return _patch_strategies()["kinds"].get(f"{api_version}/{kind}")


def _field_meta(definition: str | None, field: str) -> tuple[str | None, str | None, str]:
    if definition is None:
        return None, None, ""
    ref, merge_key, strategy = _patch_strategies()["definitions"].get(definition, {}).get(field, (None, None, None))
    return ref, merge_key, strategy or ""


_SET_ORDER = "$setElementOrder/"
_DELETE_FROM_PRIMITIVE = "$deleteFromPrimitiveList/"


def _merge_map(original, patch: dict, definition: str | None):
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {key: value for key, value in patch.items() if key != "$patch"}
    if directive == "replace":
        return _strip_directives(body)
    result = dict(original) if isinstance(original, dict) else {}
    retain_keys = body.pop("$retainKeys", None)
    for key, value in body.items():
        if key.startswith(_SET_ORDER):
            continue
        if key.startswith(_DELETE_FROM_PRIMITIVE):
            field = key[len(_DELETE_FROM_PRIMITIVE):]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        ref, merge_key, strategy = _field_meta(definition, key)
        current = result.get(key)
        if isinstance(value, dict):
            merged = _merge_map(current, value, ref)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and "merge" in strategy.split(","):
            result[key] = _merge_list(current if isinstance(current, list) else [], value, ref, merge_key)
        else:
            result[key] = _strip_directives(value)
    if retain_keys is not None:
        result = {key: value for key, value in result.items() if key in retain_keys}
    return result


def _merge_list(original: list, patch: list, definition: str | None, merge_key: str | None) -> list:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    if merge_key is None:
        result = list(original)
        for item in patch:
            if item not in result:
                result.append(copy.deepcopy(item))
        return result
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict):
            if item not in result:
                result.append(item)
            continue
        position = next((index for index, existing in enumerate(result)
                         if isinstance(existing, dict) and merge_key in item
                         and existing.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if position is not None:
                result.pop(position)
            continue
        if position is None:
            result.append(_strip_directives(item))
        else:
            result[position] = _merge_map(result[position], item, definition)
    return result


def _strip_directives(value):
    if isinstance(value, dict):
        return {key: _strip_directives(item) for key, item in value.items()
                if not key.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value


def strategic_merge_patch(target: dict, patch, api_version: str, kind: str) -> dict:
    """Strategic merge patch: lists with patch strategy 'merge' are merged by their merge key, others replaced."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object", 400)
    merged = _merge_map(copy.deepcopy(target), patch, definition_for(api_version, kind))
    return merged if merged is not None else {}


def without_nulls(value):
    """``value`` with every null map entry dropped, as decoding into typed API objects does: kubectl sends
    ``"creationTimestamp": null`` in templates, and a real API server never stores it."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value
