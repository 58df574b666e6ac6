"""The simulated Kong 3.4: Admin API (entities, pagination, Kong's error bodies) and proxy routing, over HTTP."""
from __future__ import annotations

import base64
import json

import pytest
import requests

from nasiko_nb.sim.kong import KongWorld, decode_offset, encode_offset, start_kong, upstream_path
from nasiko_nb.sim.store import Store

AGENT_HOST = "agent-echo-1.nasiko-agents.svc.cluster.local"


def _namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _service(namespace: str, name: str, port: int = 80) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port, "targetPort": 5000}],
                     "clusterIP": "10.245.0.50"}}


def _endpoints(namespace: str, name: str, pod: str, ready: bool) -> dict:
    address = {"ip": "10.244.0.9", "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod}}
    subset = {"addresses" if ready else "notReadyAddresses": [address], "ports": [{"name": "http", "port": 5000}]}
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
            "subsets": [subset]}


def _pod(namespace: str, name: str, agent: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "agent", "image": "agent:1",
                                     "env": [{"name": "AGENT_NAME", "value": agent}]}]},
            "status": {"phase": "Running"}}


def cluster_store() -> Store:
    """Agent Services: echo (ready), down (no ready endpoint), bare (no Endpoints at all); platform's web."""
    store = Store()
    store.load([_namespace("nasiko"), _namespace("nasiko-agents"),
                _service("nasiko-agents", "agent-echo-1"), _endpoints("nasiko-agents", "agent-echo-1", "echo-pod", True),
                _pod("nasiko-agents", "echo-pod", "echo"),
                _service("nasiko-agents", "agent-down-1"), _endpoints("nasiko-agents", "agent-down-1", "down-pod", False),
                _service("nasiko-agents", "agent-bare-1"),
                _service("nasiko", "nasiko-web", 4000), _endpoints("nasiko", "nasiko-web", "web-pod", True)])
    return store


@pytest.fixture
def kong():
    server = start_kong(KongWorld(), cluster_store())
    yield server
    server.stop()


class Admin:
    def __init__(self, url: str):
        self.url = url

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, timeout=10, **kwargs)


@pytest.fixture
def admin(kong):
    return Admin(kong.admin_url)


def proxy(kong, path: str, method: str = "GET", **kwargs) -> requests.Response:
    return requests.request(method, kong.proxy_url + path, timeout=10, **kwargs)


# ---- Admin API ------------------------------------------------------------------------------------------

def test_node_info_and_status(admin):
    root = admin("GET", "/")
    assert root.status_code == 200 and root.headers["Server"] == "kong/3.4.2"
    assert root.headers["Content-Type"] == "application/json; charset=utf-8"
    info = root.json()
    assert info["version"] == "3.4.2" and info["tagline"] == "Welcome to kong"
    assert {"cors", "nasiko-auth", "chat-logger"} <= set(info["plugins"]["available_on_server"])
    status = admin("GET", "/status").json()
    assert status["database"] == {"reachable": True} and status["server"]["total_requests"] >= 0
    assert admin("GET", "/nowhere").json() == {"message": "Not found"}
    assert admin("DELETE", "/services").status_code == 405


def test_service_crud_by_id_and_name(admin):
    created = admin("POST", "/services", json={"name": "billing", "url": "https://billing.nasiko:8443/v1"})
    assert created.status_code == 201
    service = created.json()
    assert (service["protocol"], service["host"], service["port"], service["path"]) == \
        ("https", "billing.nasiko", 8443, "/v1")
    assert service["retries"] == 5 and service["connect_timeout"] == 60000 and service["enabled"] is True
    assert isinstance(service["created_at"], int) and service["updated_at"] >= service["created_at"]
    assert "url" not in service
    assert admin("GET", f"/services/{service['id']}").json() == admin("GET", "/services/billing").json()

    patched = admin("PATCH", "/services/billing", json={"url": "http://billing.nasiko", "retries": 1}).json()
    assert (patched["protocol"], patched["port"], patched["path"], patched["retries"]) == ("http", 80, None, 1)
    assert patched["id"] == service["id"]

    replaced = admin("PUT", "/services/billing", json={"host": "billing-v2.nasiko"})
    assert replaced.status_code == 200
    assert replaced.json()["retries"] == 5 and replaced.json()["id"] == service["id"]
    upserted = admin("PUT", "/services/ledger", json={"url": "http://ledger.nasiko:9000"})
    assert upserted.status_code == 200 and upserted.json()["name"] == "ledger"

    assert admin("DELETE", "/services/billing").status_code == 204
    missing = admin("GET", "/services/billing")
    assert missing.status_code == 404 and missing.json() == {"message": "Not found"}
    assert admin("DELETE", "/services/billing").status_code == 204      # Kong's delete is idempotent


def test_routes_form_encoded_and_nested(admin):
    admin("POST", "/services", data={"name": "echo", "url": f"http://{AGENT_HOST}:80"})
    created = admin("POST", "/services/echo/routes",
                    data="name=echo-route&paths[]=/agents/echo&paths[]=/echo&strip_path=false&methods=GET",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert created.status_code == 201, created.text
    route = created.json()
    assert route["paths"] == ["/agents/echo", "/echo"] and route["strip_path"] is False
    assert route["methods"] == ["GET"] and route["protocols"] == ["http", "https"]
    assert route["service"] == {"id": admin("GET", "/services/echo").json()["id"]}
    assert (route["regex_priority"], route["preserve_host"], route["path_handling"]) == (0, False, "v0")
    listed = admin("GET", "/services/echo/routes").json()
    assert [r["name"] for r in listed["data"]] == ["echo-route"] and listed["next"] is None
    assert "offset" not in listed

    patched = admin("PATCH", "/routes/echo-route", json={"paths": ["/agents/echo2"], "strip_path": True}).json()
    assert patched["paths"] == ["/agents/echo2"] and patched["strip_path"] is True
    by_service_name = admin("POST", "/routes", json={"name": "by-name", "paths": ["/x"], "service": {"name": "echo"}})
    assert by_service_name.status_code == 201 and by_service_name.json()["service"] == route["service"]
    assert admin("DELETE", "/routes/echo-route").status_code == 204
    assert admin("GET", f"/routes/{route['id']}").status_code == 404


def test_unique_violation_bodies(admin):
    admin("POST", "/services", json={"name": "x", "host": "x.nasiko"})
    duplicate = admin("POST", "/services", json={"name": "x", "host": "y.nasiko"})
    assert duplicate.status_code == 409
    assert duplicate.json() == {"code": 5, "name": "unique constraint violation",
                                "message": "UNIQUE violation detected on '{name=\"x\"}'", "fields": {"name": "x"}}
    admin("POST", "/services/x/routes", json={"name": "x-route", "paths": ["/x"]})
    again = admin("POST", "/routes", json={"name": "x-route", "paths": ["/y"]})
    assert again.status_code == 409 and again.json()["fields"] == {"name": "x-route"}
    assert admin("POST", "/routes", json={"name": "shared-path", "paths": ["/x"]}).status_code == 201


def test_schema_violation_bodies(admin):
    no_host = admin("POST", "/services", json={"name": "nohost"})
    assert no_host.status_code == 400
    assert no_host.json() == {"code": 2, "name": "schema violation", "fields": {"host": "required field missing"},
                              "message": "schema violation (host: required field missing)"}
    admin("POST", "/services", json={"name": "s", "host": "s.nasiko"})
    bare_route = admin("POST", "/services/s/routes", json={"name": "bare"})
    expected = ("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'")
    assert bare_route.status_code == 400
    assert bare_route.json() == {"code": 2, "name": "schema violation", "fields": {"@entity": [expected]},
                                 "message": f"schema violation ({expected})"}
    bad_path = admin("POST", "/routes", json={"paths": ["/ok", "agents"]}).json()
    assert bad_path["fields"] == {"paths": [None, "should start with: / (fixed path) or ~/ (regex path)"]}
    assert bad_path["message"] == "schema violation (paths.2: should start with: / (fixed path) or ~/ (regex path))"
    two = admin("POST", "/services", json={"host": "h", "port": "eighty", "colour": "blue"}).json()
    assert two["message"] == "2 schema violations (colour: unknown field; port: expected an integer)"
    bad_name = admin("POST", "/services", json={"name": "has space", "host": "h"}).json()
    assert bad_name["fields"]["name"].startswith("invalid value 'has space'")
    assert admin("POST", "/services", data=b"{not json", headers={"Content-Type": "application/json"}).json() == \
        {"message": "Cannot parse JSON body"}


def test_foreign_keys_and_referenced_service(admin):
    ghost = "6f1e8a0c-4b51-4d0f-9a63-3f1a6d2b7c10"
    orphan = admin("POST", "/routes", json={"paths": ["/a"], "service": {"id": ghost}})
    assert orphan.status_code == 400
    assert orphan.json() == {"code": 4, "name": "foreign key violation", "fields": {"service": {"id": ghost}},
                             "message": f"the foreign key '{{id=\"{ghost}\"}}' does not reference an existing "
                                        "'services' entity."}
    unresolved = admin("POST", "/routes", json={"paths": ["/a"], "service": {"name": "nope"}}).json()
    assert unresolved["code"] == 13 and unresolved["name"] == "foreign keys unresolved"
    assert admin("POST", "/services/nope/routes", json={"paths": ["/a"]}).status_code == 404

    admin("POST", "/services", json={"name": "kept", "host": "kept.nasiko"})
    admin("POST", "/services/kept/routes", json={"name": "kept-route", "paths": ["/kept"]})
    refused = admin("DELETE", "/services/kept")
    assert refused.status_code == 400
    assert refused.json() == {"code": 4, "name": "foreign key violation",
                              "message": "an existing 'routes' entity references this 'services' entity",
                              "fields": {"@referenced_by": "routes"}}
    assert admin("GET", "/services/kept").status_code == 200


def test_plugins(admin):
    service = admin("POST", "/services", json={"name": "p", "host": "p.nasiko"}).json()
    cors = admin("POST", "/services/p/plugins", json={"name": "cors", "config": {"origins": ["*"]}})
    assert cors.status_code == 201
    plugin = cors.json()
    assert plugin["service"] == {"id": service["id"]} and plugin["route"] is None and plugin["consumer"] is None
    assert plugin["config"]["origins"] == ["*"] and plugin["config"]["credentials"] is False
    assert plugin["enabled"] is True and plugin["protocols"] == ["grpc", "grpcs", "http", "https"]
    admin("POST", "/services/p/plugins", data={"name": "nasiko-auth", "config.require_auth": "true"})
    auth = next(p for p in admin("GET", "/plugins").json()["data"] if p["name"] == "nasiko-auth")
    assert auth["config"] == {"require_auth": True}
    assert admin("GET", f"/plugins/{plugin['id']}").json() == plugin
    assert admin("GET", "/plugins/cors").status_code == 404           # plugins are named by instance_name
    again = admin("POST", "/services/p/plugins", json={"name": "cors"})
    assert again.status_code == 409 and again.json()["code"] == 5
    unknown = admin("POST", "/plugins", json={"name": "teapot"})
    assert unknown.status_code == 400
    assert unknown.json()["fields"] == {"name": "plugin 'teapot' not enabled; add it to the 'plugins' configuration "
                                                "property"}
    assert sorted(p["name"] for p in admin("GET", "/services/p/plugins").json()["data"]) == ["cors", "nasiko-auth"]
    assert admin("DELETE", f"/plugins/{plugin['id']}").status_code == 204
    assert admin("GET", f"/plugins/{plugin['id']}").status_code == 404
    assert admin("DELETE", "/services/p").status_code == 204       # no routes: its plugins go with it
    assert admin("GET", "/plugins").json()["data"] == []


def test_pagination_follows_next_across_pages(admin, kong):
    for index in range(250):
        kong.world.insert("services", {"name": f"svc-{index:03d}", "host": f"svc-{index:03d}.nasiko"})
    pages, path = [], "/services?size=100"
    while path:
        body = admin("GET", path).json()
        pages.append(body)
        path = body["next"]
    assert [len(p["data"]) for p in pages] == [100, 100, 50]
    for page in pages[:-1]:
        token = page["offset"]
        assert page["next"] == f"/services?offset={requests.utils.quote(token, safe='')}&size=100"
        assert decode_offset(token) == page["data"][-1]["id"]
        assert json.loads(base64.b64decode(token + "=" * (-len(token) % 4))) == [page["data"][-1]["id"]]
    assert "offset" not in pages[-1] and pages[-1]["next"] is None
    ids = [s["id"] for p in pages for s in p["data"]]
    assert len(set(ids)) == 250 and ids == sorted(ids)          # Kong's postgres pages by primary key

    default = admin("GET", "/services").json()
    assert len(default["data"]) == 100 and "&size" not in default["next"]
    assert len(admin("GET", "/services?size=1000").json()["data"]) == 250
    too_big = admin("GET", "/services?size=1001")
    assert too_big.status_code == 400 and too_big.json() == {
        "code": 9, "name": "invalid size", "message": "size must be an integer between 1 and 1000"}
    assert admin("GET", "/services?size=ten").json()["message"] == "size must be a number"
    bad = admin("GET", "/services?offset=%25%25")
    assert bad.status_code == 400
    assert bad.json() == {"code": 7, "name": "invalid offset", "message": "'%%' is not a valid offset: bad base64 encoding"}
    assert encode_offset("abc") == "WyJhYmMiXQ"


def test_nested_pagination_and_tags(admin, kong):
    kong.world.insert("services", {"name": "many", "host": "many.nasiko"})
    for index in range(5):
        kong.world.insert("routes", {"name": f"r{index}", "paths": [f"/r{index}"], "service": {"name": "many"},
                                     "tags": ["agent", "blue" if index % 2 else "green"]})
    first = admin("GET", "/services/many/routes?size=2").json()
    assert len(first["data"]) == 2 and first["next"].startswith("/services/many/routes?offset=")
    second = admin("GET", first["next"] + "&size=2").json()
    assert not {r["id"] for r in first["data"]} & {r["id"] for r in second["data"]}
    assert len(admin("GET", "/routes?tags=agent,blue").json()["data"]) == 2
    assert len(admin("GET", "/routes?tags=blue/green").json()["data"]) == 5


# ---- proxy ----------------------------------------------------------------------------------------------

def _route(kong, name: str, paths: list[str], host: str = AGENT_HOST, port: int = 80, **fields) -> dict:
    world = kong.world
    if world.find("services", name) is None:
        world.insert("services", {"name": name, "url": f"http://{host}:{port}"})
    return world.insert("routes", {"name": f"{name}-route", "paths": paths, "service": {"name": name}, **fields})


def test_strip_path_and_agent_stub(kong):
    _route(kong, "echo", ["/agents/echo"])
    health = proxy(kong, "/agents/echo/health")
    assert health.status_code == 200 and health.json() == {"status": "healthy", "agent": "echo"}
    assert health.headers["Via"] == "kong/3.4.2"
    assert int(health.headers["X-Kong-Upstream-Latency"]) >= 0 and int(health.headers["X-Kong-Proxy-Latency"]) >= 0
    chat = proxy(kong, "/agents/echo", "POST", json={"jsonrpc": "2.0", "id": 1, "method": "message/send",
                                                      "params": {"message": {"parts": [{"kind": "text",
                                                                                        "text": "hi"}]}}})
    assert chat.status_code == 200
    assert chat.json() == {"agent": "echo", "method": "POST", "path": "/", "reply": "echo received: hi"}
    card = proxy(kong, "/agents/echo/.well-known/agent.json").json()
    assert card["name"] == "echo"


def test_path_without_strip_and_longest_prefix(kong):
    _route(kong, "catch-all", ["/agents"], strip_path=False)
    _route(kong, "echo", ["/agents/echo"])
    assert proxy(kong, "/agents/echo/x", "POST").json()["path"] == "/x"
    assert proxy(kong, "/agents/other/x", "POST").json()["path"] == "/agents/other/x"
    assert proxy(kong, "/agents/echoes", "POST").json()["path"] == "/es"       # Kong's prefixes are plain text


def test_methods_hosts_and_oldest_route_win(kong):
    _route(kong, "posts-only", ["/chat"], methods=["POST"])
    assert proxy(kong, "/chat", "POST").status_code == 200
    assert proxy(kong, "/chat").status_code == 404
    world = kong.world
    world.insert("services", {"name": "web", "url": "http://nasiko-web.nasiko.svc.cluster.local:4000"})
    world.insert("routes", {"name": "newer", "paths": ["/same"], "service": {"name": "web"}, "created_at": 2000})
    world.insert("routes", {"name": "older", "paths": ["/same"], "service": {"name": "posts-only"},
                            "created_at": 1000, "methods": None})
    assert proxy(kong, "/same", "POST").json()["agent"] == "echo"
    world.insert("routes", {"name": "hosted", "hosts": ["chat.nasiko.example"], "paths": ["/same"],
                            "service": {"name": "web"}})
    assert proxy(kong, "/same", "POST", headers={"Host": "chat.nasiko.example"}).json()["service"] == "nasiko-web"


def test_landing_page_regex_and_upstream_paths(kong):
    kong.world.insert("services", {"name": "landing", "url": "http://nasiko-web.nasiko.svc.cluster.local:4000/app/"})
    kong.world.insert("routes", {"name": "landing", "paths": ["~/$"], "strip_path": False, "service": {"name": "landing"}})
    assert proxy(kong, "/").json() == {"service": "nasiko-web", "path": "/app/", "status": "ok"}
    assert proxy(kong, "/agents/x").status_code == 404
    route, service = {"strip_path": True}, {"path": "/base/"}
    assert upstream_path(route, service, "/agents/a/health", "/agents/a") == "/base/health"
    assert upstream_path(route, {"path": None}, "/agents/a", "/agents/a") == "/"


def test_kong_errors_from_the_proxy(kong):
    missing = proxy(kong, "/agents/echo/health")
    assert missing.status_code == 404 and missing.json() == {"message": "no Route matched with those values"}
    assert missing.headers["Server"] == "kong/3.4.2" and "X-Kong-Response-Latency" in missing.headers
    assert "Via" not in missing.headers
    _route(kong, "gone", ["/agents/gone"], host="agent-gone-1.nasiko-agents.svc.cluster.local")
    _route(kong, "down", ["/agents/down"], host="agent-down-1.nasiko-agents.svc.cluster.local")
    _route(kong, "bare", ["/agents/bare"], host="agent-bare-1.nasiko-agents.svc.cluster.local")
    _route(kong, "wrong-port", ["/agents/wrong-port"], port=8080)
    assert (proxy(kong, "/agents/gone/health").status_code, proxy(kong, "/agents/gone/health").json()) == \
        (503, {"message": "name resolution failed"})
    for path in ("/agents/down/health", "/agents/bare/health"):
        answer = proxy(kong, path)
        assert answer.status_code == 503
        assert answer.json() == {"message": "failure to get a peer from the ring-balancer"}
        assert "X-Kong-Response-Latency" in answer.headers
    assert proxy(kong, "/agents/wrong-port").status_code == 504
    assert kong.world.requests >= 6


def test_stopped_kong_refuses_connections():
    server = start_kong(KongWorld(), Store())
    url = server.admin_url
    assert requests.get(url + "/status", timeout=5).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/status", timeout=2)
