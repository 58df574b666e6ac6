"""Scenarios of the guide's BuildKit, build Job and resource sections, built on the healthy baseline.

As in :mod:`nasiko_nb.sim.scenarios`, each changes inputs (a Service, an env var, a request, a taint, what a
container exits with) and lets :mod:`nasiko_nb.sim.kubelet` derive pod states and events; only what a
program prints (buildctl, curl, buildkitd) is written here, in the wordings of the shared samples.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from nasiko_nb.sim.kubelet import CLUSTER_DNS, CRASH_RUNTIME, Node, crash_history, restart_container
from nasiko_nb.sim.kubelet import EventSink
from nasiko_nb.sim.platform import (BUILD_STEPS, DOWNLOAD_LOG, Agent, Cluster, build_job, build_job_template,
                                    build_log, deployment_status, emit_controller_event, evict_and_replace, iso,
                                    memory_eviction_message, parse_iso, pending_build, pod_from_template, pod_name,
                                    replicaset_status, restart_deployment, run_failed_build, run_failing_job,
                                    run_workload_pod, set_node_condition, stable_uid, start_job)

NEW_AGENT = "summarizer-agent"
WRONG_BUILDKIT_ADDRESS = "tcp://buildkit.buildkit.svc.cluster.local:1234"
BUILDKIT_FQDN = "buildkitd.buildkit.svc.cluster.local"


def _dial_error(detail: str) -> str:
    return ("error: failed to get status: rpc error: code = Unavailable desc = connection error: desc = "
            f"\"transport: Error while dialing: {detail}\"\n")


def _new_agent(cluster: Cluster, ago: timedelta = timedelta(minutes=9), name: str = NEW_AGENT) -> Agent:
    built = cluster.now - ago
    return Agent(name, built, built, cluster.agent_registry)


def _mark_job(cluster: Cluster, job: dict, pods: list[dict]) -> None:
    cluster.broken.append(f"Job nasiko-agents/{job['metadata']['name']}")
    cluster.broken += [f"Pod nasiko-agents/{p['metadata']['name']}" for p in pods
                       if p["status"]["phase"] not in ("Running", "Succeeded")]


def _pods_of(cluster: Cluster, owner: dict) -> list[dict]:
    uid = owner["metadata"]["uid"]
    return [p for p in cluster.of_kind("Pod", owner["metadata"]["namespace"])
            if any(r["uid"] == uid for r in p["metadata"].get("ownerReferences", []))]


# ---- BuildKit ---------------------------------------------------------------------------------------

ROOTLESSKIT_ERROR = ("[rootlesskit:parent] error: failed to setup UID/GID map: newuidmap 18 [0 1000 1 1 100000 65536] "
                     "failed: newuidmap: write to uid_map failed: Operation not permitted\n: exit status 1")


def _buildkitd_log(started: datetime) -> str:
    stamp = iso(started).replace("Z", "") + ".412873521Z"
    return f"time=\"{stamp}\" level=info msg=\"running in rootless mode\"\n{ROOTLESSKIT_ERROR}\n"


def buildkit_down(cluster: Cluster) -> None:
    """buildkitd's pod was recreated 38 minutes ago (node recycled) and crash-loops: rootlesskit may not write
    uid_map on the new node. No ready endpoint: every build's buildctl is refused at the Service IP."""
    deploy = cluster.find("Deployment", "buildkit", "buildkitd")
    [rs] = [o for o in cluster.of_kind("ReplicaSet", "buildkit")
            if o["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]]
    [old] = _pods_of(cluster, rs)
    cluster.remove(old)
    created = cluster.now - timedelta(minutes=38)
    pod = pod_from_template(rs, rs["spec"]["template"], pod_name(rs["metadata"]["name"], f"{old['metadata']['name']}/2"),
                            created)
    pod = run_workload_pod(cluster, pod, created, crashing={"buildkitd": 1})
    emit_controller_event(cluster, rs, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", created,
                          "replicaset-controller")
    rs["status"] = replicaset_status(rs, [pod])
    deploy["status"] = deployment_status(deploy, rs, [pod], [pod], cluster.now)
    for condition in deploy["status"]["conditions"]:
        if condition["type"] == "Available":          # the rollout had completed: only availability changed
            condition["lastUpdateTime"] = condition["lastTransitionTime"] = iso(created + timedelta(seconds=1))
        else:
            condition.update({"status": "True", "reason": "NewReplicaSetAvailable",
                              "message": f"ReplicaSet \"{rs['metadata']['name']}\" has successfully progressed.",
                              "lastUpdateTime": condition["lastTransitionTime"]})
    status = pod["status"]["containerStatuses"][0]
    last_start = parse_iso(status["lastState"]["terminated"]["startedAt"])
    _, _, delay = crash_history(created + timedelta(seconds=4), cluster.now)
    key = ("buildkit", pod["metadata"]["name"], "buildkitd")
    cluster.logs[(*key, False)] = _buildkitd_log(last_start)
    cluster.logs[(*key, True)] = _buildkitd_log(last_start - CRASH_RUNTIME - delay)
    cluster.broken += ["Deployment buildkit/buildkitd", f"Pod buildkit/{pod['metadata']['name']}"]

    service_ip = cluster.find("Service", "buildkit", "buildkitd")["spec"]["clusterIP"]
    job, pods = run_failed_build(cluster, _new_agent(cluster),
                                 [_dial_error(f"dial tcp {service_ip}:1234: connect: connection refused")],
                                 durations={"buildkit-client": timedelta(seconds=1)})
    _mark_job(cluster, job, pods)


def buildkit_service_missing(cluster: Cluster) -> None:
    """Service buildkitd was deleted (buildkitd itself runs): the name no longer resolves."""
    cluster.remove(cluster.find("Service", "buildkit", "buildkitd"))
    cluster.broken.append("Service buildkit/buildkitd")
    job, pods = run_failed_build(cluster, _new_agent(cluster), [_dial_error(
        f"dial tcp: lookup {BUILDKIT_FQDN} on {CLUSTER_DNS}:53: no such host")],
        durations={"buildkit-client": timedelta(seconds=1)})
    _mark_job(cluster, job, pods)


def buildkit_wrong_address(cluster: Cluster) -> None:
    """The build worker's BUILDKIT_ADDRESS was edited to buildkit.buildkit... (no such Service) 25 minutes ago;
    the next build Job got it as BUILDKIT_HOST and cannot resolve it."""
    worker = cluster.find("Deployment", "nasiko", "nasiko-k8s-build-worker")
    for env in worker["spec"]["template"]["spec"]["containers"][0]["env"]:
        if env["name"] == "BUILDKIT_ADDRESS":
            env["value"] = WRONG_BUILDKIT_ADDRESS
    worker["metadata"]["generation"] = 2
    restarted = cluster.now - timedelta(minutes=25)
    restart_deployment(cluster, worker, restarted, revision=2)
    for pod in _pods_of_deployment(cluster, worker):
        stamp = parse_iso(pod["status"]["startTime"]).strftime("%Y-%m-%d %H:%M:%S")
        cluster.logs[("nasiko", pod["metadata"]["name"], "nasiko-k8s-build-worker", False)] = (
            f"{stamp} INFO Build worker started; BuildKit at {WRONG_BUILDKIT_ADDRESS}\n")
    cluster.broken.append("Deployment nasiko/nasiko-k8s-build-worker")
    agent = _new_agent(cluster)
    job, pods = run_failed_build(cluster, agent, [_dial_error(
        f"dial tcp: lookup buildkit.buildkit.svc.cluster.local on {CLUSTER_DNS}:53: no such host")],
        template=build_job_template(agent, buildkit_host=WRONG_BUILDKIT_ADDRESS),
        durations={"buildkit-client": timedelta(seconds=1)})
    _mark_job(cluster, job, pods)


def _pods_of_deployment(cluster: Cluster, deploy: dict) -> list[dict]:
    ns = deploy["metadata"]["namespace"]
    rs_uids = {rs["metadata"]["uid"] for rs in cluster.of_kind("ReplicaSet", ns)
               if rs["metadata"]["ownerReferences"][0]["uid"] == deploy["metadata"]["uid"]}
    return [p for p in cluster.of_kind("Pod", ns) if p["metadata"].get("ownerReferences")
            and p["metadata"]["ownerReferences"][0]["uid"] in rs_uids]


# ---- build Jobs that stay Pending -------------------------------------------------------------------

def _pending(cluster: Cluster, cpu: str | None = None, memory: str | None = None) -> None:
    agent = _new_agent(cluster, timedelta(minutes=10))
    template = build_job_template(agent)
    requests = template["spec"]["containers"][0]["resources"]["requests"]
    requests.update({k: v for k, v in (("cpu", cpu), ("memory", memory)) if v})
    job, pod = pending_build(cluster, agent, template)
    _mark_job(cluster, job, [pod])


def pending_insufficient_cpu(cluster: Cluster) -> None:
    """The build Job's buildkit-client requests 4 CPUs; a node has 3900m allocatable."""
    _pending(cluster, cpu="4")


def pending_insufficient_memory(cluster: Cluster) -> None:
    """The build Job's buildkit-client requests 8Gi; a node has 6694Mi allocatable."""
    _pending(cluster, memory="8Gi")


POOL_TAINT = {"key": "dedicated", "value": "platform", "effect": "NoSchedule"}


def pending_untolerated_taint(cluster: Cluster) -> None:
    """The node pool was tainted dedicated=platform:NoSchedule 30 minutes ago (running pods stay); the new build
    pod tolerates nothing but the defaults."""
    for node in cluster.of_kind("Node"):
        node["spec"]["taints"] = [dict(POOL_TAINT)]
        cluster.broken.append(f"Node {node['metadata']['name']}")
    _pending(cluster)


# ---- build Jobs that fail ---------------------------------------------------------------------------

CURL_404 = ("  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
            "                                 Dload  Upload   Total   Spent    Left  Speed\n"
            "  0    22    0     0    0     0      0      0 --:--:-- --:--:-- --:--:--     0\n"
            "curl: (22) The requested URL returned error: 404\n")


def _uvicorn_start() -> list[str]:
    return ["INFO:     Started server process [1]", "INFO:     Waiting for application startup.",
            "INFO:     Application startup complete.",
            "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)"]


def init_download_404(cluster: Cluster) -> None:
    """summarizer-agent was uploaded 15 minutes ago; the backend was OOMKilled 13 minutes ago and lost the upload
    (no volume); the build Job started 12 minutes ago and its download-agent gets 404 (curl exit 22)."""
    backend = cluster.find("Deployment", "nasiko", "nasiko-backend")
    [pod] = _pods_of_deployment(cluster, backend)
    killed = cluster.now - timedelta(minutes=13)
    cluster.add(*restart_container(pod, "nasiko-backend", killed, cluster.now))
    agent = _new_agent(cluster, timedelta(minutes=12))
    job, pods = run_failed_build(cluster, agent, [""], exit_codes={"download-agent": 22},
                                 durations={"download-agent": timedelta(seconds=1)}, download_log=CURL_404)
    uploaded = (cluster.now - timedelta(minutes=15)).strftime("%H:%M")
    key = ("nasiko", pod["metadata"]["name"], "nasiko-backend")
    cluster.logs[(*key, True)] = "\n".join(_uvicorn_start() + [
        "INFO:     10.244.0.37:40112 - \"POST /api/v1/agents/upload HTTP/1.1\" 200 OK",
        f"INFO:     Stored upload {NEW_AGENT}.zip in /tmp/nasiko/uploads/{NEW_AGENT} ({uploaded})",
        f"INFO:     10.244.0.37:40112 - \"GET /api/v1/agents/{NEW_AGENT}/status HTTP/1.1\" 200 OK", ""])
    cluster.logs[(*key, False)] = "\n".join(_uvicorn_start() + [
        f"INFO:     {p['status']['podIP']}:{41000 + i} - \"GET /api/v1/agents/{NEW_AGENT}/download HTTP/1.1\" "
        "404 Not Found" for i, p in enumerate(pods)] + [""])
    cluster.broken.append("Deployment nasiko/nasiko-backend")
    _mark_job(cluster, job, pods)


def _download_log(*files: str) -> str:
    size = 4096 + len("".join(files)) * 97
    return ("  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
            "                                 Dload  Upload   Total   Spent    Left  Speed\n"
            f"100 {size}  100 {size}    0     0   812k      0 --:--:-- --:--:-- --:--:--  836k\n"
            "Archive:  agent.zip\n" + "".join(f"  inflating: {f}\n" for f in files))


def _build_output(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def _missing_dockerfile_logs() -> list[str]:
    head = ("#1 [internal] load build definition from Dockerfile", "#1 transferring dockerfile: 2B done",
            "#1 DONE 0.0s")
    return [_build_output(*head, "error: failed to solve: failed to read dockerfile: open Dockerfile: no such file "
                                 "or directory"),
            _build_output(*head, "#1 ERROR: failed to read dockerfile: open /tmp/buildkit-mount2619823647/Dockerfile:"
                                 " no such file or directory",
                          "error: failed to solve: failed to read dockerfile: open /tmp/buildkit-mount2619823647/"
                          "Dockerfile: no such file or directory")]


def build_missing_dockerfile(cluster: Cluster) -> None:
    """The uploaded archive has its files under summarizer/ (zipped folder): no Dockerfile at the context root."""
    job, pods = run_failed_build(cluster, _new_agent(cluster), _missing_dockerfile_logs(),
                                 durations={"buildkit-client": timedelta(seconds=2)},
                                 download_log=_download_log("summarizer/Dockerfile", "summarizer/requirements.txt",
                                                            "summarizer/src/main.py"))
    _mark_job(cluster, job, pods)


CONTEXT_ERROR = "rpc error: code = ResourceExhausted desc = grpc: received message larger than max (6871946 vs. 4194304)"


def _context_too_large_logs() -> list[str]:
    return [_build_output(*BUILD_STEPS[:3], "#2 [internal] load .dockerignore", "#2 transferring context: 2B done",
                          "#2 DONE 0.0s", "#3 [internal] load build context",
                          "#3 transferring context: 4.19MB 1.1s", f"#3 ERROR: {CONTEXT_ERROR}",
                          f"error: failed to solve: {CONTEXT_ERROR}")]


def build_context_too_large(cluster: Cluster) -> None:
    """The upload carries a .venv and model weights without a .dockerignore: the context exceeds gRPC's 4 MiB."""
    job, pods = run_failed_build(cluster, _new_agent(cluster), _context_too_large_logs(),
                                 durations={"buildkit-client": timedelta(seconds=4)},
                                 download_log=_download_log("Dockerfile", "requirements.txt", "src/main.py",
                                                            ".venv/lib/python3.12/site-packages/torch/lib/libtorch.so",
                                                            "models/summarizer.bin"))
    _mark_job(cluster, job, pods)


PIP_STEP = "#7 [4/5] RUN pip install --no-cache-dir -r requirements.txt"


def _pip_retries(host: str, path: str, seconds: float) -> list[str]:
    lines = []
    for attempt, total in enumerate((4, 3, 2, 1, 0)):
        lines.append(f"#7 {seconds + attempt * 15.2:.2f} WARNING: Retrying (Retry(total={total}, connect=None, read=None, "
                     "redirect=None, status=None)) after connection broken by 'ConnectTimeoutError(<pip._vendor."
                     "urllib3.connection.HTTPSConnection object at 0x7f>, 'Connection to "
                     f"{host} timed out. (connect timeout=15)')': {path}")
    return lines


def _network_timeout_logs() -> list[str]:
    failed = ("error: failed to solve: process \"/bin/sh -c pip install --no-cache-dir -r requirements.txt\" did not "
              "complete successfully: exit code: 1")
    first = [*BUILD_STEPS[:7], PIP_STEP, *_pip_retries("github.com", "/acme/agent-tools/archive/v1.2.tar.gz", 12.31),
             "#7 91.12 ERROR: Could not install packages due to an OSError: HTTPSConnectionPool(host='github.com', "
             "port=443): Max retries exceeded with url: /acme/agent-tools/archive/v1.2.tar.gz (Caused by "
             "ConnectTimeoutError(<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>, 'Connection to "
             "github.com timed out. (connect timeout=15)'))", "#7 ERROR: process \"/bin/sh -c pip install "
             "--no-cache-dir -r requirements.txt\" did not complete successfully: exit code: 1", failed]
    second = [*BUILD_STEPS[:7], PIP_STEP, *_pip_retries("packages.example.com", "/simple/fastapi/", 11.87),
              "#7 88.40 ERROR: Could not find a version that satisfies the requirement fastapi==0.115.0 "
              "(from versions: none)", "#7 88.41 ERROR: No matching distribution found for fastapi==0.115.0",
              "#7 ERROR: process \"/bin/sh -c pip install --no-cache-dir -r requirements.txt\" did not complete "
              "successfully: exit code: 1", failed]
    return [_build_output(*first), _build_output(*second)]


def build_network_timeout(cluster: Cluster) -> None:
    """Egress from the build is blackholed: pip's downloads (github.com, then packages.example.com) time out."""
    job, pods = run_failed_build(cluster, _new_agent(cluster), _network_timeout_logs(),
                                 durations={"buildkit-client": timedelta(seconds=95)})
    _mark_job(cluster, job, pods)


def _copy_source_missing_logs() -> list[str]:
    ref = "moby::q4x7n2kd0v8wz5mj3rc1ty6hb"
    dockerfile = ["Dockerfile:4", "--------------------", "   2 |     WORKDIR /app",
                  "   3 |     COPY requirements.txt .", "   4 | >>> COPY src/ ./src/",
                  "   5 |     RUN pip install --no-cache-dir -r requirements.txt", "--------------------"]
    return [_build_output(*BUILD_STEPS[:7], "#6 [3/5] COPY src/ ./src/",
                          f"#6 ERROR: failed to calculate checksum of ref {ref}: \"/src\": not found", "------",
                          " > [3/5] COPY src/ ./src/:", "------", *dockerfile,
                          f"error: failed to solve: failed to compute cache key: failed to calculate checksum of ref "
                          f"{ref}: \"/src\": not found")]


def build_copy_source_missing(cluster: Cluster) -> None:
    """The Dockerfile copies src/ but the upload has main.py at its root."""
    job, pods = run_failed_build(cluster, _new_agent(cluster), _copy_source_missing_logs(),
                                 durations={"buildkit-client": timedelta(seconds=3)},
                                 download_log=_download_log("Dockerfile", "requirements.txt", "main.py"))
    _mark_job(cluster, job, pods)


# ---- resources: evictions, node pressure, Job clutter -------------------------------------------------

AGENT_USAGE = {"a2a-github-agent": ("498Mi", "87Mi"), "weather-agent": ("471Mi", "92Mi")}


def _agent_pods(cluster: Cluster) -> list[dict]:
    return [p for p in cluster.of_kind("Pod", "nasiko-agents")
            if p["metadata"].get("labels", {}).get("pod-template-hash") and p["status"]["phase"] == "Running"]


def _eviction_message(pod: dict) -> str:
    container = pod["spec"]["containers"][0]
    request = container["resources"]["requests"]["memory"]
    agent = next((e["value"] for e in container.get("env", []) if e["name"] == "AGENT_NAME"), "")
    using, available = AGENT_USAGE.get(agent, (f"{3 * int(request.rstrip('Mi'))}Mi", "94Mi"))
    return memory_eviction_message(container["name"], using, request, available)


def _pressure_episode(cluster: Cluster, node: dict, began: datetime, ended: datetime | None,
                      pods: list[dict], elsewhere: Node) -> list[dict]:
    """Memory pressure on ``node`` from ``began`` (to ``ended``, or still): its kubelet evicts ``pods`` and
    their ReplicaSets place the replacements on ``elsewhere``. Returns the replacements."""
    name = node["metadata"]["name"]
    sink = EventSink(cluster.now)
    sink.emit(node, "NodeHasInsufficientMemory", f"Node {name} status is now: NodeHasInsufficientMemory",
              first=began, host=name)
    sink.emit(node, "EvictionThresholdMet", "Attempting to reclaim memory", type_="Warning", first=began, host=name)
    replacements = []
    for index, pod in enumerate(pods):
        at = began + timedelta(seconds=10 + 20 * index)
        replacements.append(evict_and_replace(cluster, pod, at, _eviction_message(pod), node=elsewhere))
        cluster.broken.append(f"Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}")
    if ended is None:
        set_node_condition(node, "MemoryPressure", "True", "KubeletHasInsufficientMemory",
                           "kubelet has insufficient memory available", began)
        node["spec"]["taints"] = [{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]
        cluster.broken.append(f"Node {name}")
    else:
        sink.emit(node, "NodeHasSufficientMemory", f"Node {name} status is now: NodeHasSufficientMemory",
                  first=ended, host=name)
        set_node_condition(node, "MemoryPressure", "False", "KubeletHasSufficientMemory",
                           "kubelet has sufficient memory available", ended)
    cluster.add(*sink.events)
    return replacements


def _busiest_node(cluster: Cluster) -> tuple[dict, Node, Node]:
    """The Node object hosting most agent pods, its kubelet Node and the other one."""
    counts = {n.name: 0 for n in cluster.nodes}
    for pod in _agent_pods(cluster):
        counts[pod["spec"]["nodeName"]] += 1
    busiest = max(cluster.nodes, key=lambda n: counts[n.name])
    other = next(n for n in cluster.nodes if n is not busiest)
    return cluster.find("Node", None, busiest.name), busiest, other


def cluster_evicted_pods(cluster: Cluster) -> None:
    """Two memory-pressure episodes (one per node, 22 and 13 minutes ago, both over) evicted the agents' pods
    several times; their replacements run, the Evicted pods stay behind."""
    node_a, kubelet_a, kubelet_b = _busiest_node(cluster)
    first = cluster.now - timedelta(minutes=22)
    on_a = [p for p in _agent_pods(cluster) if p["spec"]["nodeName"] == kubelet_a.name]
    _pressure_episode(cluster, node_a, first, first + timedelta(minutes=6), on_a, kubelet_b)
    second = cluster.now - timedelta(minutes=13)
    on_b = [p for p in _agent_pods(cluster) if p["spec"]["nodeName"] == kubelet_b.name]
    _pressure_episode(cluster, cluster.find("Node", None, kubelet_b.name), second, second + timedelta(minutes=4),
                      on_b, kubelet_a)


def cluster_node_pressure(cluster: Cluster) -> None:
    """A node has been under memory pressure for 7 minutes (MemoryPressure=True, memory-pressure taint); its
    kubelet evicted the agent and web pods on it, which now run on the other node."""
    node_a, kubelet_a, kubelet_b = _busiest_node(cluster)
    victims = [p for p in cluster.of_kind("Pod") if p["spec"].get("nodeName") == kubelet_a.name
               and p["status"]["phase"] == "Running" and p["metadata"].get("labels", {}).get("pod-template-hash")
               and (p["metadata"]["namespace"] == "nasiko-agents"
                    or p["metadata"]["labels"].get("app") in ("nasiko-web", "nasiko-router"))]
    _pressure_episode(cluster, node_a, cluster.now - timedelta(minutes=7), None, victims, kubelet_b)


FAILED_JOBS = 300
RECENT_FAILED = 40            # within the last hour: ttlSecondsAfterFinished 3600 has not reaped them yet
OLD_COMPLETED = 12
ORPHAN_CONFIGMAPS = 20
_CLUTTER_AGENTS = ("invoice-agent", "ticket-triage-agent", "sql-helper-agent", "calendar-agent", "pdf-reader-agent",
                   "slack-notifier-agent", "jira-agent", "crm-sync-agent", "translator-agent", "faq-agent",
                   "code-review-agent", "expense-agent")


def _failure_causes() -> list[tuple[dict, list[str], dict, str]]:
    """Why clutter builds failed, in turn: (exit codes, buildkit-client logs, durations, download-agent log)."""
    return [
        ({"buildkit-client": 1}, _missing_dockerfile_logs(), {"buildkit-client": timedelta(seconds=2)},
         _download_log("agent/Dockerfile", "agent/requirements.txt")),
        ({"buildkit-client": 1}, _network_timeout_logs(), {"buildkit-client": timedelta(seconds=95)}, DOWNLOAD_LOG),
        ({"buildkit-client": 1}, _context_too_large_logs(), {"buildkit-client": timedelta(seconds=4)}, DOWNLOAD_LOG),
        ({"buildkit-client": 1}, _copy_source_missing_logs(), {"buildkit-client": timedelta(seconds=3)},
         _download_log("Dockerfile", "requirements.txt", "main.py")),
        ({"download-agent": 22}, [""], {"download-agent": timedelta(seconds=1)}, CURL_404),
    ]


def cluster_failed_jobs(cluster: Cluster) -> None:
    """300 failed build Jobs (two failed pods each): 40 from the last hour with ttlSecondsAfterFinished 3600, 260
    older without it (rebuilds and hand-made Jobs); 12 completed Jobs older than a day without a TTL;
    20 ConfigMaps agent-files-<agent>-<ts> whose Jobs are gone."""
    causes = _failure_causes()
    recent_step = timedelta(minutes=55) / RECENT_FAILED
    old_span = timedelta(days=10) - timedelta(hours=1)
    for index in range(FAILED_JOBS):
        if index < RECENT_FAILED:
            built, ttl = cluster.now - timedelta(minutes=3) - index * recent_step, 3600
        else:
            built, ttl = cluster.now - timedelta(hours=1, minutes=5) - (index - RECENT_FAILED) * (
                old_span / (FAILED_JOBS - RECENT_FAILED)), None
        name = _CLUTTER_AGENTS[index % len(_CLUTTER_AGENTS)]
        agent = Agent(name, built, built, cluster.agent_registry)
        exit_codes, logs, durations, download = causes[index % len(causes)]
        template = build_job_template(agent)
        job_name = agent.job if ttl else f"job-{name}-rebuild-{agent.build_ts}"
        job = build_job("nasiko-agents", job_name, template, built, ttl=ttl)
        _run_prepared_failed_job(cluster, job, built, exit_codes, durations, logs, download)
    for index in range(OLD_COMPLETED):
        built = cluster.now - timedelta(days=1, hours=3) - index * timedelta(hours=9, minutes=17)
        agent = Agent(_CLUTTER_AGENTS[(index * 5) % len(_CLUTTER_AGENTS)], built, built, cluster.agent_registry)
        job = build_job("nasiko-agents", agent.job, build_job_template(agent), built)
        pod = start_job(cluster, job, built)
        key = ("nasiko-agents", pod["metadata"]["name"])
        cluster.logs[(*key, "download-agent", False)] = DOWNLOAD_LOG
        cluster.logs[(*key, "buildkit-client", False)] = build_log(agent)
    for index in range(ORPHAN_CONFIGMAPS):
        created = cluster.now - timedelta(hours=2) - index * timedelta(hours=11, minutes=3)
        name = _CLUTTER_AGENTS[(index * 7) % len(_CLUTTER_AGENTS)]
        cluster.add({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": f"agent-files-{name}-{int(created.timestamp())}", "namespace": "nasiko-agents",
                                  "uid": stable_uid("cm", name, iso(created)), "creationTimestamp": iso(created)},
                     "data": {"Dockerfile": "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\n"
                                            "RUN pip install --no-cache-dir -r requirements.txt\nCMD [\"python\", \"main.py\"]\n",
                              "requirements.txt": "fastapi==0.115.0\nuvicorn==0.32.0\n",
                              "main.py": f"# {name}\n"}})


EXTRA_JOBS_SINCE = timedelta(hours=2)      # older than the failed builds a scenario itself makes in the last hour
EXTRA_JOBS_EVERY = timedelta(minutes=4, seconds=7)


def add_extra_jobs(cluster: Cluster, count: int) -> None:
    """``count`` more failed build Jobs in nasiko-agents for scale tests, one failed pod each and no
    ttlSecondsAfterFinished (nothing reaps them), built every few minutes going back from two hours ago."""
    if count <= 0:
        return
    taken = {job["metadata"]["name"] for job in cluster.of_kind("Job", "nasiko-agents")}
    causes = _failure_causes()
    built = cluster.now - EXTRA_JOBS_SINCE
    made = 0
    while made < count:
        agent = Agent(_CLUTTER_AGENTS[made % len(_CLUTTER_AGENTS)], built, built, cluster.agent_registry)
        built -= EXTRA_JOBS_EVERY
        if agent.job in taken:
            continue
        exit_codes, logs, durations, download = causes[made % len(causes)]
        job = build_job("nasiko-agents", agent.job, build_job_template(agent), agent.built, backoff_limit=0)
        _run_prepared_failed_job(cluster, job, agent.built, exit_codes, durations, logs, download)
        taken.add(agent.job)
        made += 1


def _run_prepared_failed_job(cluster: Cluster, job: dict, built: datetime, exit_codes: dict, durations: dict,
                             logs: list[str], download: str) -> None:
    pods = run_failing_job(cluster, job, built, exit_codes, durations)
    for attempt, pod in enumerate(pods):
        key = ("nasiko-agents", pod["metadata"]["name"])
        cluster.logs[(*key, "download-agent", False)] = download
        if "download-agent" not in exit_codes:
            cluster.logs[(*key, "buildkit-client", False)] = logs[attempt % len(logs)]
    _mark_job(cluster, job, pods)


BUILD_SCENARIOS: dict[str, str] = {
    "buildkit-down": "buildkitd crash-loops (rootlesskit cannot write uid_map): no ready endpoint, the new build "
                     "Job's buildctl gets 'connection refused' at the Service IP.",
    "buildkit-service-missing": "Service buildkitd deleted: the new build Job's buildctl cannot resolve "
                                "buildkitd.buildkit.svc.cluster.local ('no such host').",
    "buildkit-wrong-address": "The build worker's BUILDKIT_ADDRESS names buildkit.buildkit.svc.cluster.local (no such "
                              "Service): the new build Job's BUILDKIT_HOST does not resolve.",
    "job-pending-insufficient-cpu": "A build Job's pod requests 4 CPUs, more than any node's allocatable: Pending, "
                                    "FailedScheduling 'Insufficient cpu'.",
    "job-pending-insufficient-memory": "A build Job's pod requests 8Gi memory, more than any node's allocatable: "
                                       "Pending, FailedScheduling 'Insufficient memory'.",
    "job-pending-untolerated-taint": "Both nodes tainted dedicated=platform:NoSchedule: the new build pod is Pending "
                                     "with 'untolerated taint'.",
    "build-init-download-404": "The backend was OOMKilled after an upload and lost the files: the build Job's "
                               "download-agent gets HTTP 404 (curl exit 22), Init:Error.",
    "build-missing-dockerfile": "The uploaded archive has no Dockerfile at its root: buildctl 'failed to read "
                                "dockerfile', the Job failed.",
    "build-context-too-large": "The upload carries a virtualenv and model weights: buildctl's context exceeds "
                               "gRPC's 4 MiB (ResourceExhausted), the Job failed.",
    "build-network-timeout": "The build's pip install times out reaching github.com and packages.example.com, the Job failed.",
    "build-copy-source-missing": "The Dockerfile copies src/ that the upload lacks: 'failed to compute cache key', "
                                 "the Job failed.",
    "cluster-evicted-pods": "Memory pressure (now over) evicted the agents' pods several times: Evicted pods "
                            "(phase Failed) remain in nasiko-agents.",
    "cluster-failed-jobs": "300 failed build Jobs with their pods (most without ttlSecondsAfterFinished), completed "
                           "Jobs older than a day, orphaned agent-files ConfigMaps.",
    "cluster-node-pressure": "A node under memory pressure now (MemoryPressure=True, memory-pressure taint): the "
                             "pods on it were evicted and run on the other node.",
}

BUILD_BUILDERS: dict[str, Callable[[Cluster], None]] = {
    "buildkit-down": buildkit_down,
    "buildkit-service-missing": buildkit_service_missing,
    "buildkit-wrong-address": buildkit_wrong_address,
    "job-pending-insufficient-cpu": pending_insufficient_cpu,
    "job-pending-insufficient-memory": pending_insufficient_memory,
    "job-pending-untolerated-taint": pending_untolerated_taint,
    "build-init-download-404": init_download_404,
    "build-missing-dockerfile": build_missing_dockerfile,
    "build-context-too-large": build_context_too_large,
    "build-network-timeout": build_network_timeout,
    "build-copy-source-missing": build_copy_source_missing,
    "cluster-evicted-pods": cluster_evicted_pods,
    "cluster-failed-jobs": cluster_failed_jobs,
    "cluster-node-pressure": cluster_node_pressure,
}
