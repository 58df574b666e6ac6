"""The Kong 3.4 gateway behind the platform: its database of services, routes and plugins, the Admin API
over it, and a proxy that routes requests as Kong's traditional router does.

The Admin API answers with Kong's own shapes: entity fields and defaults, page tokens, and the error bodies
of ``kong/db/errors.lua`` (code, name, message, fields). The proxy resolves a Kong service's host against
the emulated cluster (the Service must exist, its Endpoints must have ready addresses) and stands in for the
upstream with a stub agent, so a runbook sees the gateway answers a real cluster would give.
"""
from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, quote, urlsplit

from nasiko_nb.sim.store import ApiError, Store

KONG_VERSION = "3.4.2"
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
CLUSTER_DOMAIN = "svc.cluster.local"
PLATFORM_NAMESPACE = "nasiko"           # where Kong runs: a bare host name resolves there

#: Bundled plugins Kong 3.4 serves, with their priorities (as GET / lists them), plus the platform's own two
#: (KONG_PLUGINS=bundled,nasiko-auth,chat-logger).
PLUGIN_PRIORITIES = {
    "bot-detection": 2500, "cors": 2000, "jwt": 1450, "oauth2": 1400, "key-auth": 1250, "ldap-auth": 1200,
    "basic-auth": 1100, "hmac-auth": 1030, "ip-restriction": 990, "request-size-limiting": 951, "acl": 950,
    "rate-limiting": 910, "response-ratelimiting": 900, "request-transformer": 801, "response-transformer": 800,
    "proxy-cache": 100, "prometheus": 13, "http-log": 12, "tcp-log": 7, "udp-log": 8, "file-log": 9,
    "correlation-id": 1, "nasiko-auth": 1000, "chat-logger": 5,
}
SERVICE_PROTOCOLS = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")
ROUTE_PROTOCOLS = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss")
_NAME = re.compile(r"^[A-Za-z0-9._~-]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_METHOD = re.compile(r"^[A-Z]+$")

# field -> (type, default); types: uuid, name, string, int, bool, strings, foreign, record, timestamp
_SERVICE_FIELDS = {
    "id": ("uuid", None), "name": ("name", None), "protocol": ("protocol", "http"), "host": ("host", None),
    "port": ("port", 80), "path": ("upstream_path", None), "retries": ("int", 5), "connect_timeout": ("int", 60000),
    "write_timeout": ("int", 60000), "read_timeout": ("int", 60000), "tags": ("strings", None),
    "client_certificate": ("foreign", None), "tls_verify": ("bool", None), "tls_verify_depth": ("int", None),
    "ca_certificates": ("strings", None), "enabled": ("bool", True),
    "created_at": ("timestamp", None), "updated_at": ("timestamp", None),
}
_ROUTE_FIELDS = {
    "id": ("uuid", None), "name": ("name", None), "protocols": ("protocols", ["http", "https"]),
    "methods": ("methods", None), "hosts": ("strings", None), "paths": ("paths", None), "headers": ("record", None),
    "https_redirect_status_code": ("int", 426), "regex_priority": ("int", 0), "strip_path": ("bool", True),
    "path_handling": ("string", "v0"), "preserve_host": ("bool", False), "request_buffering": ("bool", True),
    "response_buffering": ("bool", True), "tags": ("strings", None), "service": ("foreign", None),
    "snis": ("strings", None), "sources": ("strings", None), "destinations": ("strings", None),
    "created_at": ("timestamp", None), "updated_at": ("timestamp", None),
}
_PLUGIN_FIELDS = {
    "id": ("uuid", None), "name": ("plugin", None), "instance_name": ("name", None), "route": ("foreign", None),
    "service": ("foreign", None), "consumer": ("foreign", None), "config": ("record", {}),
    "protocols": ("protocols", ["grpc", "grpcs", "http", "https"]), "enabled": ("bool", True),
    "tags": ("strings", None), "ordering": ("record", None),
    "created_at": ("timestamp", None), "updated_at": ("timestamp", None),
}
_CORS_DEFAULTS = {"origins": None, "headers": None, "exposed_headers": None, "credentials": False, "max_age": None,
                  "preflight_continue": False, "private_network": False,
                  "methods": ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT"]}


class KongError(Exception):
    """An Admin API error: the HTTP status and Kong's JSON body."""

    def __init__(self, status: int, body: dict):
        super().__init__(body.get("message"))
        self.status, self.body = status, body


def _pretty(key: dict) -> str:
    """A key as Lua's pl.pretty writes it in Kong's messages: {name="x"}, {id="..."}."""
    parts = []
    for name in sorted(key):
        value = key[name]
        if isinstance(value, dict):
            text = _pretty(value)
        elif value is None:
            text = "null"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = str(value)
        else:
            text = '"' + str(value) + '"'
        parts.append(f"{name}={text}")
    return "{" + ",".join(parts) + "}"


def not_found() -> KongError:
    return KongError(404, {"message": "Not found"})


def schema_violation(fields: dict) -> KongError:
    """Kong's code 2 body; the message lists entity-level errors first, then each field's, sorted."""
    parts = list(fields.get("@entity", []))
    for name in sorted(k for k in fields if k != "@entity"):
        value = fields[name]
        if isinstance(value, list):
            parts += [f"{name}.{i}: {v}" for i, v in enumerate(value, 1) if v is not None]
        elif isinstance(value, dict):
            parts += [f"{name}.{sub}: {value[sub]}" for sub in sorted(value)]
        else:
            parts.append(f"{name}: {value}")
    message = f"schema violation ({parts[0]})" if len(parts) == 1 else \
        f"{len(parts)} schema violations ({'; '.join(parts)})"
    return KongError(400, {"code": 2, "name": "schema violation", "message": message, "fields": fields})


def unique_violation(key: dict) -> KongError:
    return KongError(409, {"code": 5, "name": "unique constraint violation",
                           "message": f"UNIQUE violation detected on '{_pretty(key)}'", "fields": key})


def foreign_key_violation(field: str, key: dict, parent: str) -> KongError:
    return KongError(400, {"code": 4, "name": "foreign key violation",
                           "message": f"the foreign key '{_pretty(key)}' does not reference an existing '{parent}' "
                                      "entity.", "fields": {field: key}})


def referenced_by(child: str, parent: str) -> KongError:
    return KongError(400, {"code": 4, "name": "foreign key violation",
                           "message": f"an existing '{child}' entity references this '{parent}' entity",
                           "fields": {"@referenced_by": child}})


def _unresolved(field: str, name: str, parent: str) -> KongError:
    text = f"the foreign key cannot be resolved with '{_pretty({'name': name})}' for an existing '{parent}' entity"
    return KongError(400, {"code": 13, "name": "foreign keys unresolved",
                           "message": f"foreign key unresolved ({field}.name: {text})",
                           "fields": {field: {"name": text}}})


def _epoch(at: datetime | None) -> int:
    return int(at.timestamp()) if at is not None else int(time.time())


def encode_offset(entity_id: str) -> str:
    """A page token as Kong's postgres strategy makes it: base64 of the JSON array of the last primary key."""
    return base64.b64encode(json.dumps([entity_id]).encode()).decode().rstrip("=")


def decode_offset(token: str) -> str:
    """The primary key a page token carries; KongError 400 (code 7) when the token is not one."""
    def invalid(why: str) -> KongError:
        return KongError(400, {"code": 7, "name": "invalid offset", "message": f"'{token}' is not a valid offset: {why}"})
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("bad base64 encoding") from None
    try:
        decoded = json.loads(raw)
    except ValueError:
        raise invalid("bad json encoding") from None
    if not (isinstance(decoded, list) and len(decoded) == 1 and isinstance(decoded[0], str)):
        raise invalid("bad json encoding")
    return decoded[0]


def parse_url(url: object) -> dict:
    """The fields a service's ``url`` shorthand sets: protocol, host, port (scheme default) and path."""
    text = str(url)
    parts = urlsplit(text)
    if not parts.scheme or not parts.hostname:
        raise schema_violation({"url": "missing host in url"} if parts.scheme else {"url": "missing scheme in url"})
    if parts.scheme not in SERVICE_PROTOCOLS:
        raise schema_violation({"protocol": f"expected one of: {', '.join(SERVICE_PROTOCOLS)}"})
    default_port = 443 if parts.scheme in ("https", "grpcs", "tls", "wss") else 80
    try:
        port = parts.port or default_port
    except ValueError:
        raise schema_violation({"url": "invalid port number"}) from None
    return {"protocol": parts.scheme, "host": parts.hostname, "port": port, "path": parts.path or None}


class _Table:
    """One entity table: rows by id, Kong's field schema and endpoint key (the unique field URLs may name)."""

    def __init__(self, plural: str, fields: dict, endpoint_key: str = "name"):
        self.plural, self.fields, self.endpoint_key = plural, fields, endpoint_key
        self.rows: dict[str, dict] = {}

    def by_name(self, name: str) -> dict | None:
        return next((row for row in self.rows.values() if row.get(self.endpoint_key) == name), None)

    def find(self, key: str) -> dict | None:
        """By id when ``key`` is a UUID, else by the endpoint key."""
        if _UUID.match(key):
            return self.rows.get(key.lower())
        return self.by_name(key)


class KongWorld:
    """Kong's database (services, routes, plugins) and its node; every method is thread-safe.

    Writes validate like Kong's DAO and raise :class:`KongError` with Kong's body; reads return copies.
    """

    def __init__(self, hostname: str = "kong-gateway"):
        self.lock = threading.RLock()
        self.hostname = hostname          # the Kong pod's name, as GET / reports it
        self.node_id = str(uuid.uuid4())
        self.services = _Table("services", _SERVICE_FIELDS)
        self.routes = _Table("routes", _ROUTE_FIELDS)
        self.plugins = _Table("plugins", _PLUGIN_FIELDS, endpoint_key="instance_name")
        self.requests = 0                 # requests the proxy served

    def _table(self, plural: str) -> _Table:
        return {"services": self.services, "routes": self.routes, "plugins": self.plugins}[plural]

    # -- validation ----------------------------------------------------------------------------------------

    def _check_fields(self, table: _Table, body: dict) -> dict:
        """Type-check ``body`` against the table's schema; returns the per-field errors."""
        errors: dict = {}
        for name, value in body.items():
            if name not in table.fields:
                errors[name] = "unknown field"
                continue
            kind = table.fields[name][0]
            if value is None or kind == "timestamp":
                continue
            error = _field_error(kind, value)
            if error is not None:
                errors[name] = error
        return errors

    def _finish(self, table: _Table, row: dict, current_id: str | None) -> None:
        """Entity checks, unique names and foreign keys of a row about to be stored."""
        errors: dict = {}
        if table is self.services and not row.get("host"):
            errors["host"] = "required field missing"
        if table is self.plugins and not row.get("name"):
            errors["name"] = "required field missing"
        if table is self.routes:
            protocols = row.get("protocols") or []
            if "https" in protocols or "http" in protocols:
                needed = ["methods", "hosts", "headers", "paths"] + (["snis"] if "https" in protocols else [])
                if not any(row.get(f) for f in needed):
                    listed = ", ".join(f"'{f}'" for f in needed)
                    which = "https" if "https" in protocols else "http"
                    errors["@entity"] = [f"must set one of {listed} when 'protocols' is '{which}'"]
        if errors:
            raise schema_violation(errors)
        key = table.endpoint_key
        if row.get(key) is not None:
            other = table.by_name(row[key])
            if other is not None and other["id"] != current_id:
                raise unique_violation({key: row[key]})
        for field, parent in (("service", self.services), ("route", self.routes)):
            ref = row.get(field)
            if field in table.fields and ref is not None:
                row[field] = self._resolve(field, ref, parent)
        if row.get("consumer") is not None:           # the platform has no consumers
            raise foreign_key_violation("consumer", row["consumer"], "consumers")
        if table is self.plugins:
            self._check_plugin(row, current_id)

    def _resolve(self, field: str, ref: dict, parent: _Table) -> dict:
        if "id" in ref:
            if ref["id"] is None or str(ref["id"]).lower() not in parent.rows:
                raise foreign_key_violation(field, {"id": ref["id"]}, parent.plural)
            return {"id": str(ref["id"]).lower()}
        found = parent.by_name(str(ref.get("name")))
        if found is None:
            raise _unresolved(field, str(ref.get("name")), parent.plural)
        return {"id": found["id"]}

    def _check_plugin(self, row: dict, current_id: str | None) -> None:
        if row["name"] not in PLUGIN_PRIORITIES:
            raise schema_violation({"name": f"plugin '{row['name']}' not enabled; add it to the 'plugins' "
                                            "configuration property"})
        if row["name"] == "cors":
            row["config"] = {**_CORS_DEFAULTS, **(row.get("config") or {})}
        key = {"name": row["name"], "route": row.get("route"), "service": row.get("service"),
               "consumer": row.get("consumer")}
        for other in self.plugins.rows.values():
            if other["id"] != current_id and all(other.get(k) == v for k, v in key.items()):
                raise unique_violation(key)

    def _new_row(self, table: _Table, body: dict, at: datetime | None, entity_id: str | None = None) -> dict:
        errors = self._check_fields(table, body)
        if errors:
            raise schema_violation(errors)
        row = {name: copy.deepcopy(default) for name, (_, default) in table.fields.items()}
        row.update({k: v for k, v in body.items() if k not in ("created_at", "updated_at")})
        row["id"] = str(entity_id or body.get("id") or uuid.uuid4()).lower()
        stamp = _epoch(at)
        row["created_at"] = body.get("created_at") or stamp
        row["updated_at"] = body.get("updated_at") or stamp
        return row

    # -- writes --------------------------------------------------------------------------------------------

    def insert(self, plural: str, body: dict, at: datetime | None = None) -> dict:
        """POST /<plural>: a new entity (201); 409 when its name or id is taken."""
        table = self._table(plural)
        body = _expand_url(table, body)
        with self.lock:
            row = self._new_row(table, body, at)
            if row["id"] in table.rows:
                raise KongError(400, {"code": 3, "name": "primary key violation",
                                      "message": f"primary key violation on key '{_pretty({'id': row['id']})}'",
                                      "fields": {"id": row["id"]}})
            self._finish(table, row, None)
            table.rows[row["id"]] = row
            return copy.deepcopy(row)

    def update(self, plural: str, key: str, body: dict, at: datetime | None = None) -> dict:
        """PATCH /<plural>/<id or name>: only the given fields change; 404 when absent."""
        table = self._table(plural)
        body = _expand_url(table, body)
        with self.lock:
            current = table.find(key)
            if current is None:
                raise not_found()
            errors = self._check_fields(table, body)
            if errors:
                raise schema_violation(errors)
            row = copy.deepcopy(current)
            row.update({k: v for k, v in body.items() if k not in ("id", "created_at", "updated_at")})
            row["updated_at"] = _epoch(at)
            self._finish(table, row, current["id"])
            table.rows[row["id"]] = row
            return copy.deepcopy(row)

    def upsert(self, plural: str, key: str, body: dict, at: datetime | None = None) -> dict:
        """PUT /<plural>/<id or name>: the entity replaced by ``body`` (defaults for the rest), created if absent."""
        table = self._table(plural)
        body = _expand_url(table, body)
        with self.lock:
            current = table.find(key)
            if not _UUID.match(key):
                body = {**body, table.endpoint_key: key}
            entity_id = current["id"] if current else (key.lower() if _UUID.match(key) else None)
            row = self._new_row(table, {k: v for k, v in body.items() if k != "id"}, at, entity_id)
            if current is not None:
                row["created_at"] = current["created_at"]
            self._finish(table, row, row["id"])
            table.rows[row["id"]] = row
            return copy.deepcopy(row)

    def delete(self, plural: str, key: str) -> None:
        """DELETE /<plural>/<id or name>: gone (also when it never was, like Kong); a service still referenced
        by routes is refused, its plugins go with it."""
        table = self._table(plural)
        with self.lock:
            row = table.find(key)
            if row is None:
                return
            ref = {"id": row["id"]}
            if table is self.services and any(r.get("service") == ref for r in self.routes.rows.values()):
                raise referenced_by("routes", "services")
            if table is not self.plugins:
                field = "service" if table is self.services else "route"
                for plugin in [p for p in self.plugins.rows.values() if p.get(field) == ref]:
                    del self.plugins.rows[plugin["id"]]
            del table.rows[row["id"]]

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, plural: str, key: str) -> dict:
        with self.lock:
            row = self._table(plural).find(key)
            if row is None:
                raise not_found()
            return copy.deepcopy(row)

    def find(self, plural: str, key: str) -> dict | None:
        with self.lock:
            row = self._table(plural).find(key)
            return copy.deepcopy(row) if row is not None else None

    def all(self, plural: str, where: Callable[[dict], bool] = lambda row: True) -> list[dict]:
        """Every row (copies) in Kong's page order: by primary key."""
        with self.lock:
            return [copy.deepcopy(r) for _, r in sorted(self._table(plural).rows.items()) if where(r)]

    def page(self, plural: str, size: object = None, offset: str | None = None,
             where: Callable[[dict], bool] = lambda row: True) -> tuple[list[dict], str | None]:
        """One page as Kong's postgres strategy serves it: ``size`` rows (default 100, at most 1000) after the
        row ``offset`` names, and the token of the next page (None on the last)."""
        if size is None or size == "":
            count = DEFAULT_PAGE_SIZE
        else:
            try:
                count = int(str(size))
            except ValueError:
                raise KongError(400, {"code": 9, "name": "invalid size", "message": "size must be a number"}) from None
            if not 1 <= count <= MAX_PAGE_SIZE:
                raise KongError(400, {"code": 9, "name": "invalid size",
                                      "message": f"size must be an integer between 1 and {MAX_PAGE_SIZE}"})
        after = decode_offset(offset) if offset else None
        rows = [r for r in self.all(plural, where) if after is None or r["id"] > after]
        data = rows[:count]
        return data, encode_offset(data[-1]["id"]) if len(rows) > count else None

    # -- the proxy's router ------------------------------------------------------------------------------

    def match(self, method: str, host: str, path: str, headers: dict[str, str] | None = None
              ) -> tuple[dict, str] | None:
        """The route Kong's traditional router picks for a request, with the part of the path it matched.

        Routes setting more of hosts/methods/paths/headers win; then regex paths (by regex_priority) before
        prefix paths; then the longest prefix; then the oldest route.
        """
        candidates = []
        with self.lock:
            for route in self.routes.rows.values():
                if not {"http", "https"} & set(route.get("protocols") or []):
                    continue
                if route.get("methods") and method not in route["methods"]:
                    continue
                if route.get("hosts") and not any(_host_matches(h, host) for h in route["hosts"]):
                    continue
                if route.get("headers") and not _headers_match(route["headers"], headers or {}):
                    continue
                matched = _path_match(route.get("paths"), path)
                if matched is None:
                    continue
                text, regex = matched
                weight = sum(1 for f in ("hosts", "methods", "paths", "headers") if route.get(f))
                candidates.append(((-weight, -int(regex), -(route["regex_priority"] if regex else 0), -len(text),
                                    route["created_at"], route["id"]), route, text))
        if not candidates:
            return None
        _, route, text = min(candidates, key=lambda c: c[0])
        return copy.deepcopy(route), text


def _headers_match(wanted: dict, headers: dict[str, str]) -> bool:
    """Every header a route names carries one of its values (names and values case-insensitive)."""
    given = {k.lower(): v.lower() for k, v in headers.items()}
    return all(given.get(name.lower()) in {str(v).lower() for v in (values if isinstance(values, list) else [values])}
               for name, values in wanted.items())


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    if pattern.endswith(".*"):
        return host.startswith(pattern[:-1])
    return host == pattern


def _path_match(paths: list[str] | None, path: str) -> tuple[str, bool] | None:
    """(matched text, is regex) of the best of ``paths`` for ``path``; a route without paths matches all."""
    if not paths:
        return "", False
    best = None
    for candidate in paths:
        if candidate.startswith("~"):
            found = re.match(candidate[1:], path)
            if found is not None and (best is None or not best[1]):
                best = (found.group(0), True)
        elif path.startswith(candidate) and (best is None or (not best[1] and len(candidate) > len(best[0]))):
            best = (candidate, False)
    return best


def _field_error(kind: str, value) -> str | list | None:
    """Kong's message for a value of the wrong shape, or None."""
    if kind == "uuid":
        return None if isinstance(value, str) and _UUID.match(value) else "expected a valid UUID"
    if kind in ("name", "plugin"):
        if not isinstance(value, str):
            return "expected a string"
        if kind == "name" and not _NAME.match(value):
            return (f"invalid value '{value}': the only accepted ascii characters are alphanumerics or ., -, _, "
                    "and ~")
        return None
    if kind in ("string", "host"):
        return None if isinstance(value, str) and value else "expected a string"
    if kind in ("int", "port"):
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected an integer"
        if kind == "port" and not 0 <= value <= 65535:
            return "value should be between 0 and 65535"
        return None
    if kind == "bool":
        return None if isinstance(value, bool) else "expected a boolean"
    if kind == "protocol":
        return None if value in SERVICE_PROTOCOLS else f"expected one of: {', '.join(SERVICE_PROTOCOLS)}"
    if kind == "upstream_path":
        return None if isinstance(value, str) and value.startswith("/") else "should start with: /"
    if kind == "record":
        return None if isinstance(value, dict) else "expected a record"
    if kind == "foreign":
        if not isinstance(value, dict) or not ({"id", "name"} & set(value)):
            return "expected a record"
        if "id" in value and not (isinstance(value["id"], str) and _UUID.match(value["id"])):
            return {"id": "expected a valid UUID"}
        return None
    if not isinstance(value, list):
        return "expected a set" if kind in ("protocols", "methods") else "expected an array"
    if not all(isinstance(v, str) for v in value):
        return ["expected a string" if not isinstance(v, str) else None for v in value]
    if kind == "paths":
        errors = [None if v.startswith(("/", "~/")) else "should start with: / (fixed path) or ~/ (regex path)"
                  for v in value]
        return errors if any(errors) else None
    if kind == "methods":
        errors = [None if _METHOD.match(v) else f"invalid value: {v}" for v in value]
        return errors if any(errors) else None
    if kind == "protocols":
        errors = [None if v in ROUTE_PROTOCOLS else f"expected one of: {', '.join(ROUTE_PROTOCOLS)}" for v in value]
        return errors if any(errors) else None
    return None


def _expand_url(table: _Table, body: dict) -> dict:
    """A service's ``url`` shorthand replaced by the fields it sets."""
    if table.plural != "services" or "url" not in body:
        return body
    rest = {k: v for k, v in body.items() if k != "url"}
    return {**rest, **parse_url(body["url"])}


# ---- request bodies -------------------------------------------------------------------------------------

_ARRAY_KINDS = ("strings", "paths", "methods", "protocols")


def form_body(raw: bytes, fields: dict) -> dict:
    """A form-encoded body read the way Kong reads it: ``paths[]=/a``, ``paths[1]=/a`` or repeated keys make
    arrays, ``service.id=...`` or ``config.origins=*`` nested records, values typed by the schema."""
    body: dict = {}
    for key, values in parse_qs(raw.decode(), keep_blank_values=True).items():
        path = key.replace("]", "").replace("[", ".").split(".")
        is_array = key.endswith("[]") or re.search(r"\[\d+\]$", key) is not None
        path = [p for p in path if p and not p.isdigit()]
        if not path:
            continue
        kind = fields.get(path[0], ("string", None))[0] if len(path) == 1 else "record"
        if len(path) == 1 and (is_array or kind in _ARRAY_KINDS or len(values) > 1):
            body.setdefault(path[0], [])
            body[path[0]] += values
            continue
        if len(path) == 1:
            value = _typed(kind, values[-1])
        else:
            value = list(values) if is_array or len(values) > 1 else _infer(values[-1])
        target = body
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return body


def _typed(kind: str, text: str):
    if kind in ("int", "port", "timestamp"):
        return int(text) if text.lstrip("-").isdigit() else text
    if kind == "bool":
        return {"true": True, "false": False}.get(text, text)
    return text


def _infer(value: str):
    if value in ("true", "false"):
        return value == "true"
    return int(value) if value.lstrip("-").isdigit() else value


# ---- HTTP -----------------------------------------------------------------------------------------------

class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """Clients that hang up are part of what is simulated, not server faults."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    world: KongWorld

    def log_message(self, format, *args):     # the fake is quiet
        pass

    def version_string(self) -> str:
        return self.server_version

    def _send_json(self, status: int, body, headers: dict[str, str]) -> None:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


_ADMIN_ROUTES = [
    (re.compile(r"^/$"), "root"), (re.compile(r"^/status/?$"), "status"),
    (re.compile(r"^/(services|routes|plugins)/?$"), "collection"),
    (re.compile(r"^/(services|routes|plugins)/([^/]+)/?$"), "entity"),
    (re.compile(r"^/(services)/([^/]+)/(routes|plugins)/?$"), "nested"),
    (re.compile(r"^/(routes)/([^/]+)/(plugins)/?$"), "nested"),
]
_ALLOWED = {"root": ("GET",), "status": ("GET",), "collection": ("GET", "POST"),
            "entity": ("GET", "PATCH", "PUT", "DELETE"), "nested": ("GET", "POST")}


class _AdminHandler(_Handler):
    """Kong's Admin API (port 8001) over the world's services, routes and plugins."""

    server_version = f"kong/{KONG_VERSION}"

    def do_GET(self):
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        raw = self._read_body()
        try:
            status, body = self._answer(url.path, query, raw)
        except KongError as error:
            status, body = error.status, error.body
        latency = int((time.perf_counter() - started) * 1000)
        self._send_json(status, body, {"Access-Control-Allow-Origin": "*", "X-Kong-Admin-Latency": str(latency)})

    def _body(self, raw: bytes, plural: str) -> dict:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not raw.strip():
            return {}
        if content_type == "application/x-www-form-urlencoded":
            return form_body(raw, self.world._table(plural).fields)
        try:
            body = json.loads(raw)
        except ValueError:
            raise KongError(400, {"message": "Cannot parse JSON body"}) from None
        if not isinstance(body, dict):
            raise KongError(400, {"message": "Cannot parse JSON body"})
        return body

    def _answer(self, path: str, query: dict, raw: bytes) -> tuple[int, dict | None]:
        method = "GET" if self.command == "HEAD" else self.command
        for pattern, kind in _ADMIN_ROUTES:
            found = pattern.match(path)
            if found is None:
                continue
            if method not in _ALLOWED[kind]:
                return 405, {"message": "Method not allowed"}
            return getattr(self, f"_{kind}")(method, *found.groups(), query=query, raw=raw)
        return 404, {"message": "Not found"}

    def _root(self, method, query, raw):
        world = self.world
        used = sorted({p["name"] for p in world.all("plugins")})
        return 200, {
            "version": KONG_VERSION, "edition": "community", "tagline": "Welcome to kong",
            "hostname": world.hostname, "node_id": world.node_id, "lua_version": "LuaJIT 2.1.0-20230410",
            "plugins": {"available_on_server": {name: {"version": KONG_VERSION, "priority": priority}
                                                for name, priority in sorted(PLUGIN_PRIORITIES.items())},
                        "enabled_in_cluster": used},
            "configuration": {"database": "postgres", "pg_host": "postgresql", "pg_port": 5432,
                              "admin_listen": ["0.0.0.0:8001"], "proxy_listen": ["0.0.0.0:8000"],
                              "plugins": ["bundled", "nasiko-auth", "chat-logger"], "router_flavor": "traditional_compatible"},
            "timers": {"running": 0, "pending": 6}, "pids": {"master": 1, "workers": [1254, 1255]},
        }

    def _status(self, method, query, raw):
        world = self.world
        return 200, {"database": {"reachable": True},
                     "memory": {"workers_lua_vms": [{"http_allocated_gc": "48.61 MiB", "pid": 1254},
                                                    {"http_allocated_gc": "47.93 MiB", "pid": 1255}],
                                "lua_shared_dicts": {"kong": {"allocated_slabs": "0.04 MiB", "capacity": "5.00 MiB"},
                                                     "kong_db_cache": {"allocated_slabs": "0.80 MiB",
                                                                       "capacity": "128.00 MiB"}}},
                     "server": {"connections_accepted": world.requests + 12, "connections_active": 2,
                                "connections_handled": world.requests + 12, "connections_reading": 0,
                                "connections_waiting": 1, "connections_writing": 1,
                                "total_requests": world.requests + 12}}

    def _collection(self, method, plural, query, raw):
        world = self.world
        if method == "POST":
            return 201, world.insert(plural, self._body(raw, plural))
        where = _tag_filter(query.get("tags"))
        data, offset = world.page(plural, query.get("size"), query.get("offset"), where)
        if offset is None:
            return 200, {"data": data, "next": None}
        tags = f"&tags={quote(query['tags'], safe='')}" if query.get("tags") else ""
        size = f"&size={query['size']}" if query.get("size") else ""
        return 200, {"data": data, "offset": offset, "next": f"/{plural}?offset={quote(offset, safe='')}{tags}{size}"}

    def _entity(self, method, plural, key, query, raw):
        world = self.world
        if method == "GET":
            return 200, world.get(plural, key)
        if method == "DELETE":
            world.delete(plural, key)
            return 204, None
        if method == "PATCH":
            return 200, world.update(plural, key, self._body(raw, plural))
        return 200, world.upsert(plural, key, self._body(raw, plural))

    def _nested(self, method, parent, key, plural, query, raw):
        world = self.world
        owner = world.get(parent, key)
        field = "service" if parent == "services" else "route"
        if method == "POST":
            return 201, world.insert(plural, {**self._body(raw, plural), field: {"id": owner["id"]}})
        data, offset = world.page(plural, query.get("size"), query.get("offset"),
                                  lambda row: row.get(field) == {"id": owner["id"]})
        if offset is None:
            return 200, {"data": data, "next": None}
        return 200, {"data": data, "offset": offset,
                     "next": f"/{parent}/{key}/{plural}?offset={quote(offset, safe='')}"}


def _tag_filter(tags: str | None) -> Callable[[dict], bool]:
    """Kong's ``?tags=``: ``a,b`` needs every tag, ``a/b`` any of them."""
    if not tags:
        return lambda row: True
    if "/" in tags:
        wanted = set(tags.split("/"))
        return lambda row: bool(wanted & set(row.get("tags") or []))
    wanted = set(tags.split(","))
    return lambda row: wanted <= set(row.get("tags") or [])


# ---- the proxy ------------------------------------------------------------------------------------------

NO_ROUTE = "no Route matched with those values"
NO_SERVICE = "no Service found with those values"
NAME_RESOLUTION_FAILED = "name resolution failed"
NO_PEER = "failure to get a peer from the ring-balancer"
UPSTREAM_TIMEOUT = "The upstream server is timing out"
STUB_AGENT_MS = 2           # what the stub agent adds to the upstream latency Kong reports, as a real one would


def upstream_path(route: dict, service: dict, path: str, matched: str) -> str:
    """The path Kong sends upstream (path_handling v0): the service's path joined with the request's path,
    less the matched prefix when the route strips it."""
    rest = path[len(matched):] if route.get("strip_path") else path
    base = service.get("path") or ""
    if not base:
        return rest if rest.startswith("/") else "/" + rest
    if base.endswith("/") and rest.startswith("/"):
        return base + rest[1:]
    return base + rest


def split_service_host(host: str) -> tuple[str, str]:
    """(Service name, namespace) a cluster DNS name points at, as Kong's resolver in ``nasiko`` sees it."""
    name = host.lower().rstrip(".")
    for suffix in ("." + CLUSTER_DOMAIN, ".svc"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
            break
    parts = name.split(".")
    return parts[0], parts[1] if len(parts) > 1 else PLATFORM_NAMESPACE


class Upstream:
    """What stands behind a Kong service in the cluster: the Service, its ready pods, and their agent's name."""

    def __init__(self, store: Store):
        self.store = store

    def resolve(self, service: dict) -> tuple[int, dict] | dict:
        """The Service, or (status, Kong body) for why the proxy cannot reach it."""
        name, namespace = split_service_host(service["host"])
        try:
            svc = self.store.get("v1", "Service", namespace, name)
        except ApiError:
            return 503, {"message": NAME_RESOLUTION_FAILED}
        ports = [p.get("port") for p in svc["spec"].get("ports", [])]
        if service.get("port") not in ports:
            return 504, {"message": UPSTREAM_TIMEOUT}
        try:
            endpoints = self.store.get("v1", "Endpoints", namespace, name)
        except ApiError:
            return 503, {"message": NO_PEER}
        ready = [a for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []]
        if not ready:
            return 503, {"message": NO_PEER}
        return {"service": svc, "addresses": ready}

    def agent_name(self, found: dict) -> str:
        """AGENT_NAME of the first ready pod's container, else the Service's name."""
        for address in found["addresses"]:
            ref = address.get("targetRef") or {}
            try:
                pod = self.store.get("v1", "Pod", ref.get("namespace", ""), ref.get("name", ""))
            except ApiError:
                continue
            for container in pod["spec"].get("containers", []):
                for env in container.get("env") or []:
                    if env.get("name") == "AGENT_NAME" and env.get("value"):
                        return env["value"]
        return found["service"]["metadata"]["name"]


def stub_answer(upstream: Upstream, found: dict, method: str, path: str, body: bytes) -> dict:
    """What the upstream answers: an agent's health or an A2A-style echo, a platform service's acknowledgement."""
    svc = found["service"]["metadata"]
    if svc["namespace"] != "nasiko-agents":
        return {"service": svc["name"], "path": path, "status": "ok"}
    agent = upstream.agent_name(found)
    if method == "GET" and path.rstrip("/").endswith("/health"):
        return {"status": "healthy", "agent": agent}
    if method == "GET" and path.rstrip("/").endswith("/.well-known/agent.json"):
        return {"name": agent, "description": f"{agent} (A2A)", "version": "1.0.0", "url": "/",
                "capabilities": {"streaming": False}, "defaultInputModes": ["text"], "defaultOutputModes": ["text"]}
    try:
        request = json.loads(body) if body else None
    except ValueError:
        request = body.decode(errors="replace")
    text = _message_text(request)
    return {"agent": agent, "method": method, "path": path,
            "reply": f"{agent} received: {text}" if text else f"{agent} is ready"}


def _message_text(request) -> str:
    """The user's text in an A2A message/send request, a {"message": ...} body or plain text."""
    if isinstance(request, str):
        return request
    if not isinstance(request, dict):
        return ""
    message = (request.get("params") or {}).get("message") if "params" in request else request.get("message")
    if isinstance(message, str):
        return message
    if isinstance(message, dict):
        return " ".join(str(p.get("text", "")) for p in message.get("parts") or [] if isinstance(p, dict))
    return ""


class _ProxyHandler(_Handler):
    """Kong's proxy (port 8000): router, then the upstream the matched route's service names."""

    server_version = f"kong/{KONG_VERSION}"
    upstream: Upstream

    def do_GET(self):
        self._proxy()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _kong_error(self, status: int, message: dict, started: float) -> None:
        latency = str(int((time.perf_counter() - started) * 1000))
        self._send_json(status, message, {"X-Kong-Response-Latency": latency})

    def _proxy(self) -> None:
        started = time.perf_counter()
        world = self.world
        with world.lock:
            world.requests += 1
        path = urlsplit(self.path).path or "/"
        body = self._read_body()
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        matched = world.match(self.command, host, path, dict(self.headers.items()))
        if matched is None:
            return self._kong_error(404, {"message": NO_ROUTE}, started)
        route, prefix = matched
        service = world.find("services", route["service"]["id"]) if route.get("service") else None
        if service is None:
            return self._kong_error(503, {"message": NO_SERVICE}, started)
        found = self.upstream.resolve(service)
        if isinstance(found, tuple):
            return self._kong_error(*found, started)
        proxied = time.perf_counter()
        answer = stub_answer(self.upstream, found, self.command, upstream_path(route, service, path, prefix), body)
        upstream_ms = str(int((time.perf_counter() - proxied) * 1000) + STUB_AGENT_MS)
        self._send_json(200, answer, {"Via": f"kong/{KONG_VERSION}", "X-Kong-Upstream-Latency": upstream_ms,
                                      "X-Kong-Proxy-Latency": str(int((proxied - started) * 1000))})

    def send_response(self, code, message=None):
        """Proxied answers carry the upstream's Server header (uvicorn), Kong's own answers Kong's."""
        self.send_response_only(code, message)
        self.send_header("Server", "uvicorn" if code < 300 else self.server_version)
        self.send_header("Date", self.date_time_string())


class KongServer:
    """A running Kong: the Admin API (``admin_url``) and the proxy (``proxy_url``) on 127.0.0.1."""

    def __init__(self, world: KongWorld, store: Store):
        self.world, self.store = world, store
        upstream = Upstream(store)
        admin = _QuietServer(("127.0.0.1", 0), type("KongAdmin", (_AdminHandler,), {"world": world}))
        proxy = _QuietServer(("127.0.0.1", 0), type("KongProxy", (_ProxyHandler,),
                                                    {"world": world, "upstream": upstream}))
        self._servers = [admin, proxy]
        self.admin_url = f"http://127.0.0.1:{admin.server_address[1]}"
        self.proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                          name=f"sim-kong-{s.server_address[1]}") for s in self._servers]
        for thread in self._threads:
            thread.start()

    def environment(self) -> dict[str, str]:
        return {"NASIKO_KONG_ADMIN_URL": self.admin_url, "NASIKO_GATEWAY_URL": self.proxy_url}

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> "KongServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_kong(world: KongWorld, store: Store) -> KongServer:
    """Serve ``world``'s Admin API and proxy; the proxy reaches upstreams through ``store``'s Services."""
    return KongServer(world, store)
