"""HTTP handler speaking the Kubernetes REST API over a Store, for the `kubernetes` client and kubectl."""
from __future__ import annotations

import base64
import bisect
import json
import queue
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from nasiko_nb.sim import metrics
from nasiko_nb.sim import patch as patching
from nasiko_nb.sim import selectors
from nasiko_nb.sim.store import ApiError, ResourceType, Store, discovery_document, fast_copy
from nasiko_nb.sim.tables import build_table

VERSION_INFO = {"major": "1", "minor": "34", "emulationMajor": "1", "emulationMinor": "34",
                "minCompatibilityMajor": "1", "minCompatibilityMinor": "33", "gitVersion": "v1.34.1",
                "gitCommit": "93248f9ae092f571eb870b7664c534bfc7d00f03", "gitTreeState": "clean",
                "buildDate": "2025-09-09T19:37:43Z", "goVersion": "go1.24.6", "compiler": "gc",
                "platform": "linux/amd64"}

_PATCH_TYPES = {"application/merge-patch+json", "application/json-patch+json",
                "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
_WATCH_DEFAULT_TIMEOUT = 1800


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def _not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _encode_continue(resource_version: str, last_key: tuple[str, str]) -> str:
    token = {"v": "meta.k8s.io/v1", "rv": int(resource_version), "start": f"{last_key[0]}/{last_key[1]}\x00"}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        start = json.loads(base64.urlsafe_b64decode(padded))["start"].rstrip("\x00")
        namespace, _, name = start.partition("/")
        return namespace, name
    except (ValueError, KeyError, TypeError):
        raise ApiError(400, "BadRequest", "continue key is not valid: incorrect encoded start resourceVersion "
                                          "(version meta.k8s.io/v1)") from None


def _object_key(obj: dict) -> tuple[str, str]:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


FAULT_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
                 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


class KubeApiHandler(BaseHTTPRequestHandler):
    """One HTTP request against the emulated API server; the store is on the server object."""

    protocol_version = "HTTP/1.1"
    server_version = "nasiko-sim-apiserver/1.34"
    disable_nagle_algorithm = True   # as a real API server: no delayed-ACK stall per keep-alive request

    @property
    def store(self) -> Store:
        return self.server.store  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by BaseHTTPRequestHandler
        """Quiet: the emulator runs inside tests and notebooks."""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            if value is not None:
                self.send_header(name, str(value))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, error: ApiError) -> None:
        self._send(error.status, _dumps(error.to_status()))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes):
        try:
            return json.loads(raw or b"null")
        except ValueError as error:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {error}") from None

    def _dispatch(self, method: str) -> None:
        self.store.count_request()
        url = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        fault = next((f for f in getattr(self.server, "faults", ()) if f.matches(method, url.path) and f.take()), None)
        try:
            if fault is not None:
                self.server.stopping.wait(fault.delay_s)
                if fault.drop:
                    self.close_connection = True   # the socket closes with no answer: a dropped connection
                    return
                if fault.status:
                    error = ApiError(fault.status, FAULT_REASONS.get(fault.status, "InternalError"), fault.message)
                    self._send(error.status, _dumps(error.to_status()), headers={"Retry-After": fault.retry_after})
                    return
            self._route(method, [part for part in url.path.split("/") if part], body)
        except ApiError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, method: str, parts: list[str], body: bytes) -> None:
        if parts in (["version"], ["healthz"], ["readyz"], ["livez"]) and method == "GET":
            if parts == ["version"]:
                self._send(200, _dumps(VERSION_INFO))
            else:
                self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        if parts and parts[0] == "api":
            if len(parts) <= 2:
                self._discovery(method, "__".join(parts))
                return
            if parts[1] != "v1":
                raise _not_found_path()
            self._resource_request(method, "", "v1", parts[2:], body)
            return
        if parts and parts[0] == "apis":
            if len(parts) <= 3:
                self._discovery(method, "__".join(parts))
                return
            self._resource_request(method, parts[1], parts[2], parts[3:], body)
            return
        raise _not_found_path()

    def _discovery(self, method: str, file_stem: str) -> None:
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        document = discovery_document(f"{file_stem}.json")
        if document is None:
            raise _not_found_path()
        self._send(200, _dumps(document))

    # -- resources ------------------------------------------------------------------------------------------

    def _resource_request(self, method: str, group: str, version: str, parts: list[str], body: bytes) -> None:
        api_version = f"{group}/{version}" if group else version
        registry = self.store.registry
        namespace = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            candidate = registry.for_plural(api_version, parts[2])
            if candidate is not None and candidate.namespaced:
                namespace, parts = parts[1], parts[2:]
        if not parts or len(parts) > 3:
            raise _not_found_path()
        resource = registry.for_plural(api_version, parts[0])
        if resource is None:
            raise _not_found_path()
        name = parts[1] if len(parts) > 1 else None
        subresource = parts[2] if len(parts) > 2 else None
        if subresource is not None and subresource not in resource.subresources:
            raise _not_found_path()
        if resource.group == metrics.GROUP:
            self._metrics(method, resource, namespace, name)
        elif name is None:
            self._collection(method, resource, namespace, body)
        elif subresource == "log":
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                        "resource")
            self._pod_log(namespace or "", name)
        elif subresource == "scale":
            self._scale(method, resource, namespace, name, body)
        elif subresource in (None, "status"):
            self._item(method, resource, namespace, name, subresource, body)
        else:
            raise ApiError(405, "MethodNotAllowed",
                           f"the emulator does not serve the {resource.plural}/{subresource} subresource")

    def _collection(self, method: str, resource: ResourceType, namespace: str | None, body: bytes) -> None:
        if method == "GET":
            if self.query.get("watch", "").lower() in ("1", "true"):
                self._watch(resource, namespace)
            else:
                self._list(resource, namespace)
        elif method == "POST":
            obj = self._body_object(resource, namespace, body)
            created = self.store.create(obj, dry_run=self._dry_run())
            self._send(201, _dumps(created))
        elif method == "DELETE":
            propagation = self._propagation(resource, self._json_body(body) or {})
            deleted = self.store.delete_collection(resource, namespace, self.query.get("labelSelector", ""),
                                                   self.query.get("fieldSelector", ""), propagation,
                                                   dry_run=self._dry_run())
            self._send(200, _dumps({"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                                    "metadata": {"resourceVersion": self.store.resource_version},
                                    "items": deleted}))
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _list(self, resource: ResourceType, namespace: str | None) -> None:
        store = self.store
        limit_text = self.query.get("limit", "")
        limit = int(limit_text) if limit_text.isdigit() else 0
        with store.lock:
            matches = store.select(resource, namespace, self.query.get("labelSelector", ""),
                                   self.query.get("fieldSelector", ""))
            resource_version = store.resource_version
            token = self.query.get("continue")
            if token:
                start = bisect.bisect_right([_object_key(obj) for obj in matches], _decode_continue(token))
                matches = matches[start:]
            list_metadata: dict = {}
            if limit and len(matches) > limit:
                list_metadata = {"continue": _encode_continue(resource_version, _object_key(matches[limit - 1])),
                                 "remainingItemCount": len(matches) - limit}
                matches = matches[:limit]
            if _wants_table(self.headers.get("Accept", "")):
                document = build_table(resource.api_version, resource.kind, matches, resource_version,
                                       self.query.get("includeObject", "Metadata"), list_metadata)
            else:
                document = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                            "metadata": {"resourceVersion": resource_version, **list_metadata}, "items": matches}
            payload = _dumps(document)
        self._send(200, payload)

    def _item(self, method: str, resource: ResourceType, namespace: str | None, name: str,
              subresource: str | None, body: bytes) -> None:
        store = self.store
        write = "status" if subresource == "status" else "main"
        if method == "GET":
            with store.lock:
                obj = store.get(resource.api_version, resource.kind, namespace, name)
            if _wants_table(self.headers.get("Accept", "")):
                document = build_table(resource.api_version, resource.kind, [obj], store.resource_version,
                                       self.query.get("includeObject", "Metadata"))
                self._send(200, _dumps(document))
            else:
                self._send(200, _dumps(obj))
        elif method == "PUT":
            obj = self._body_object(resource, namespace, body)
            if obj["metadata"].get("name") != name:
                raise ApiError(400, "BadRequest", f"the name of the object ({obj['metadata'].get('name')}) does not "
                                                  f"match the name on the URL ({name})")
            self._send(200, _dumps(store.update(obj, write=write, dry_run=self._dry_run())))
        elif method == "PATCH":
            with store.lock:
                current = store.get(resource.api_version, resource.kind, namespace, name)
                patched = self._apply_patch(resource, current, body)
                self._check_identity(resource, current, patched)
                updated = store.update(patched, write=write, dry_run=self._dry_run())
            self._send(200, _dumps(updated))
        elif method == "DELETE" and subresource is None:
            options = self._json_body(body) or {}
            propagation = self._propagation(resource, options)
            with store.lock:
                current = store.get(resource.api_version, resource.kind, namespace, name)
                self._check_preconditions(resource, current, options.get("preconditions") or {})
                deleted = store.delete(resource.api_version, resource.kind, namespace, name, propagation,
                                       dry_run=self._dry_run())
            self._send(200, _dumps(deleted))
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _body_object(self, resource: ResourceType, namespace: str | None, body: bytes) -> dict:
        obj = self._json_body(body)
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        if (obj["apiVersion"], obj["kind"]) != (resource.api_version, resource.kind):
            raise ApiError(400, "BadRequest", f"the API version in the data ({obj['apiVersion']}) does not match the "
                                              f"expected API version ({resource.api_version})"
                           if obj["apiVersion"] != resource.api_version else
                           f"the kind in the data ({obj['kind']}) does not match the expected kind ({resource.kind})")
        metadata = obj.setdefault("metadata", {})
        if resource.namespaced:
            if metadata.get("namespace") and metadata["namespace"] != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                                                  "namespace sent on the request")
            metadata["namespace"] = namespace
        return patching.without_nulls(obj)

    def _dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    def _propagation(self, resource: ResourceType, options: dict) -> str:
        policy = self.query.get("propagationPolicy") or options.get("propagationPolicy")
        if policy:
            return policy
        orphan = self.query.get("orphanDependents", options.get("orphanDependents"))
        if orphan is not None:
            return "Orphan" if str(orphan).lower() == "true" else "Background"
        if (resource.api_version, resource.kind) == ("batch/v1", "Job"):
            return "Orphan"
        return "Background"

    @staticmethod
    def _check_preconditions(resource: ResourceType, current: dict, preconditions: dict) -> None:
        metadata = current["metadata"]
        for field in ("uid", "resourceVersion"):
            expected = preconditions.get(field)
            if expected and expected != metadata.get(field):
                raise ApiError(409, "Conflict",
                               f'Operation cannot be fulfilled on {resource.group_resource} "{metadata["name"]}": '
                               f"Precondition failed: {field.upper() if field == 'uid' else 'ResourceVersion'} in "
                               f"precondition: {expected}, {field.upper() if field == 'uid' else 'ResourceVersion'} "
                               f"in object meta: {metadata.get(field)}",
                               {"name": metadata["name"], "kind": resource.plural})

    def _apply_patch(self, resource: ResourceType, current: dict, body: bytes) -> dict:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type not in _PATCH_TYPES or content_type == "application/apply-patch+yaml":
            raise ApiError(415, "UnsupportedMediaType",
                           f'the body of the request was in an unknown format - accepted media types include: '
                           f'application/json-patch+json, application/merge-patch+json, '
                           f'application/strategic-merge-patch+json (got "{content_type}"; server-side apply is '
                           f'not emulated)')
        document = self._json_body(body)
        try:
            if content_type == "application/merge-patch+json":
                patched = patching.merge_patch(current, document)
            elif content_type == "application/json-patch+json":
                patched = patching.json_patch(current, document)
            else:
                patched = patching.strategic_merge_patch(current, document, resource.api_version, resource.kind)
            return patching.without_nulls(patched)
        except patching.PatchError as error:
            reason = "Invalid" if error.status == 422 else "BadRequest"
            raise ApiError(error.status, reason, str(error)) from None

    @staticmethod
    def _check_identity(resource: ResourceType, current: dict, patched: dict) -> None:
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise ApiError(422, "Invalid", f'{resource.kind} "{current["metadata"]["name"]}" is invalid: '
                                           "metadata: Required value")
        for field in ("name", "namespace"):
            if patched["metadata"].get(field) != current["metadata"].get(field):
                raise ApiError(422, "Invalid",
                               f'{resource.kind} "{current["metadata"]["name"]}" is invalid: metadata.{field}: '
                               f"Invalid value: field is immutable")
        patched["apiVersion"], patched["kind"] = current["apiVersion"], current["kind"]

    def _metrics(self, method: str, resource: ResourceType, namespace: str | None, name: str | None) -> None:
        """metrics-server's read-only API: get and list, no watch, nothing to write."""
        if method != "GET" or self.query.get("watch", "").lower() in ("1", "true"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if name is None:
            items = metrics.list_metrics(self.store, resource, namespace, self.query.get("labelSelector", ""),
                                         self.query.get("fieldSelector", ""))
        else:
            items = [metrics.get_metrics(self.store, resource, namespace, name)]
        if _wants_table(self.headers.get("Accept", "")):
            document = build_table(resource.api_version, resource.kind, items, "",
                                   self.query.get("includeObject", "Metadata"))
        elif name is None:
            document = {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": {},
                        "items": items}
        else:
            document = items[0]
        self._send(200, _dumps(document))

    # -- subresources ------------------------------------------------------------------------------------------

    def _scale(self, method: str, resource: ResourceType, namespace: str | None, name: str, body: bytes) -> None:
        store = self.store
        with store.lock:
            current = store.get(resource.api_version, resource.kind, namespace, name)
            scale = _scale_of(current)
            if method == "GET":
                self._send(200, _dumps(scale))
                return
            if method == "PUT":
                requested = self._json_body(body) or {}
            elif method == "PATCH":
                requested = self._apply_patch(resource, scale, body)
            else:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                        "resource")
            replicas = (requested.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", f'Scale "{name}" is invalid: spec.replicas: Invalid value: '
                                               f"{replicas!r}: must be greater than or equal to 0")
            updated = fast_copy(current)
            updated["spec"]["replicas"] = replicas
            stored = store.update(updated, write="main", dry_run=self._dry_run())
            self._send(200, _dumps(_scale_of(stored)))

    def _pod_log(self, namespace: str, name: str) -> None:
        store = self.store
        pod = store.get("v1", "Pod", namespace, name)
        spec = pod.get("spec") or {}
        containers = [c.get("name") for c in spec.get("containers") or []]
        init_containers = [c.get("name") for c in spec.get("initContainers") or []]
        container = self.query.get("container", "")
        if not container:
            if len(containers) != 1:
                message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                if init_containers:
                    message += f" or one of the init containers: [{' '.join(init_containers)}]"
                raise ApiError(400, "BadRequest", message)
            container = containers[0]
        elif container not in containers + init_containers:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        previous = self.query.get("previous", "").lower() in ("true", "1")
        text = store.get_log(namespace, name, container, previous)
        if text is None:
            if previous:
                raise ApiError(400, "BadRequest",
                               f'previous terminated container "{container}" in pod "{name}" not found')
            waiting = _waiting_reason(pod, container)
            if waiting is not None:
                raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: '
                                                  f"{waiting}")
            text = ""
        lines = text.splitlines(keepends=True)
        tail = self.query.get("tailLines", "")
        if tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = lines[len(lines) - int(tail):] if int(tail) else []
        if self.query.get("timestamps", "").lower() in ("true", "1"):
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
            lines = [f"{stamp} {line}" for line in lines]
        self._send(200, "".join(lines).encode(), "text/plain")

    # -- watch ------------------------------------------------------------------------------------------------

    def _watch(self, resource: ResourceType, namespace: str | None) -> None:
        store = self.store
        try:
            label_match = selectors.parse_label_selector(self.query.get("labelSelector", ""))
            field_match = selectors.parse_field_selector(self.query.get("fieldSelector", ""), resource.api_version,
                                                         resource.kind, resource.selector_label)
        except selectors.SelectorError as error:
            raise ApiError(400, "BadRequest", str(error)) from None
        timeout_text = self.query.get("timeoutSeconds", "")
        timeout = int(timeout_text) if timeout_text.isdigit() else _WATCH_DEFAULT_TIMEOUT
        as_table = _wants_table(self.headers.get("Accept", ""))
        events: queue.Queue = queue.Queue()

        def matches(obj: dict) -> bool:
            if (obj.get("apiVersion"), obj.get("kind")) != (resource.api_version, resource.kind):
                return False
            if namespace and obj.get("metadata", {}).get("namespace") != namespace:
                return False
            return label_match(obj) and field_match(obj)

        def listener(event_type: str, obj: dict) -> None:
            if matches(obj):
                events.put((event_type, obj))

        with store.lock:
            store.subscribe(listener)
            if self.query.get("resourceVersion", "0") in ("", "0"):
                for obj in store.select(resource, namespace):
                    if matches(obj):
                        events.put(("ADDED", fast_copy(obj)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        stopping: threading.Event = self.server.stopping  # type: ignore[attr-defined]
        deadline = datetime.now(timezone.utc).timestamp() + timeout
        try:
            while not stopping.is_set() and datetime.now(timezone.utc).timestamp() < deadline:
                try:
                    event_type, obj = events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if as_table:
                    obj = build_table(resource.api_version, resource.kind, [obj], store.resource_version,
                                      self.query.get("includeObject", "Metadata"))
                line = _dumps({"type": event_type, "object": obj}) + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            store.unsubscribe(listener)
            self.close_connection = True


def _scale_of(obj: dict) -> dict:
    metadata = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {key: metadata[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                         "creationTimestamp") if key in metadata},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))}}


def _waiting_reason(pod: dict, container: str) -> str | None:
    """Why the kubelet has no log for a container that has not started (its wording), or None."""
    status = pod.get("status") or {}
    for container_status in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if container_status.get("name") != container:
            continue
        waiting = (container_status.get("state") or {}).get("waiting")
        if waiting is None:
            return None
        reason = waiting.get("reason") or "ContainerCreating"
        if reason == "ErrImagePull":
            return "image can't be pulled"
        if reason == "ImagePullBackOff":
            return "trying and failing to pull image"
        return reason
    return None

