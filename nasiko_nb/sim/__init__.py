"""The simulated Nasiko platform: a Kubernetes API emulator serving a named scenario or a replayed snapshot.

This is the only entry point the CLI and tests use: ``build_store`` gives the state with its controllers
subscribed, ``start`` serves it over HTTP on 127.0.0.1.
"""
from __future__ import annotations

from pathlib import Path

from nasiko_nb.sim.aws import MOTO_LOGIN_PASSWORD, start_aws
from nasiko_nb.sim.controllers import Controllers, NodePoolController, nodes_from_objects
from nasiko_nb.sim.digitalocean import start_digitalocean
from nasiko_nb.sim.kong import start_kong
from nasiko_nb.sim.kubelet import RegistryWorld
from nasiko_nb.sim.platform import ECR_HOST, FIXED_SECRET_VALUES, PLATFORM_REGISTRY, SECRET_VALUES, Cluster
from nasiko_nb.sim.replay import SnapshotError, load_snapshot
from nasiko_nb.sim.scenarios import SCENARIOS, UnknownScenario, build
from nasiko_nb.sim.server import SimServer, start_server
from nasiko_nb.sim.service_registry import RegistryListener
from nasiko_nb.sim.store import Store

__all__ = ["SCENARIOS", "SECRET_VALUES", "SnapshotError", "UnknownScenario", "build_store", "start"]


def build_store(scenario: str | None = None, snapshot: str | Path | None = None, *, writable_snapshot: bool = False,
                extra_pods: int = 0, extra_nodes: int = 0, extra_jobs: int = 0, extra_events: int = 0) -> Store:
    """The Store of a scenario (default "healthy") or of a replayed snapshot, with controllers subscribed.

    A snapshot is served read-only unless ``writable_snapshot``; its controllers pull any image (the
    registries behind a captured cluster are unknown), so a re-rolled Deployment's new pods run.
    ``extra_*`` scale a scenario up (see :func:`nasiko_nb.sim.scenarios.build`).
    """
    if snapshot is not None:
        objects, logs = load_snapshot(snapshot)
        store = Store(read_only=not writable_snapshot)
        store.load(objects)
        for (namespace, pod, container, previous), text in logs.items():
            store.set_log(namespace, pod, container, text, previous=previous)
        nodes = nodes_from_objects([o for o in objects if o["kind"] == "Node"])
        Controllers(store, RegistryWorld(permissive=True), nodes).attach()
        return store
    cluster = build(scenario or "healthy", extra_pods=extra_pods, extra_nodes=extra_nodes, extra_jobs=extra_jobs,
                    extra_events=extra_events)
    return _scenario_store(cluster)[0]


def _scenario_store(cluster: Cluster) -> tuple[Store, Controllers]:
    """The scenario's Store with its controllers; a new service registry pod syncs the scenario's Kong."""
    store = Store()
    store.load(cluster.objects)
    for (namespace, pod, container, previous), text in cluster.logs.items():
        store.set_log(namespace, pod, container, text, previous=previous)
    controllers = Controllers(store, cluster.world, cluster.nodes).attach()
    controllers.pod_listeners.append(RegistryListener(store, cluster.kong, controllers.clock))
    return store, controllers


def start(scenario: str | None = "healthy", snapshot: str | Path | None = None, *, port: int = 0,
          writable_snapshot: bool = False, extra_pods: int = 0, extra_nodes: int = 0, extra_jobs: int = 0,
          extra_events: int = 0) -> SimServer:
    """Serve a scenario (or a snapshot, which takes precedence) on 127.0.0.1; returns the running server.

    A scenario also gets its fake DigitalOcean (API, token service, registry) over HTTPS, sharing the
    cluster's DOWorld, whose node pool resizes add or remove the cluster's Nodes; or for an ECR scenario a
    moto server holding its ECR registry and EKS node group. Either way its Kong gateway (Admin API and
    proxy) is served too. ``server.environment()`` tells a runbook kernel how to reach them.
    """
    if snapshot is not None:
        return start_server(build_store(None, snapshot, writable_snapshot=writable_snapshot), port)
    cluster = build(scenario or "healthy", extra_pods=extra_pods, extra_nodes=extra_nodes, extra_jobs=extra_jobs,
                    extra_events=extra_events)
    store, controllers = _scenario_store(cluster)
    started = []
    try:
        if cluster.registry_type == "ecr":
            provider = start_aws(cluster.world.registries[ECR_HOST], node_count=len(cluster.nodes))
        else:
            provider = start_digitalocean(cluster.digitalocean)
        started.append(provider)
        kong = start_kong(cluster.kong, store)
        started.append(kong)
        server = start_server(store, port)
    except BaseException:
        for running in reversed(started):
            running.stop()
        raise
    server.attach_kong(kong)
    if cluster.registry_type == "ecr":
        server.attach_aws(provider)
        tokens = (*cluster.secret_values, MOTO_LOGIN_PASSWORD)
    else:
        cluster.digitalocean.node_pool_listener = NodePoolController(store, controllers).on_resize
        server.attach_digitalocean(provider, cluster.digitalocean_token, PLATFORM_REGISTRY)
        tokens = tuple(cluster.secret_values)
    server.scenario = scenario or "healthy"
    server.plant_secrets((*FIXED_SECRET_VALUES, *tokens))
    return server
