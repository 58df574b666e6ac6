"""A snapshot's API call count does not depend on how many objects the cluster holds (counts, not timings)."""
from __future__ import annotations

import pytest

from nasiko_nb import sim
from nasiko_nb.cluster import connect
from nasiko_nb.snapshot import DEFAULT_CLUSTER_KINDS, NAMESPACED_KINDS, PLATFORM_NAMESPACES, take_snapshot


def snapshot_counts(tmp_path, extra_pods: int) -> tuple[int, int, int]:
    """(client-side calls, server-side requests, pods read) of one take_snapshot on healthy + extra_pods."""
    server = sim.start("healthy", extra_pods=extra_pods)
    try:
        cluster = connect(str(server.write_kubeconfig(tmp_path / f"kubeconfig-{extra_pods}")))
        client_before, server_before = cluster.calls, server.store.request_count
        snap = take_snapshot(cluster)
        return cluster.calls - client_before, server.store.request_count - server_before, len(snap.pods)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("call-count")
    return {n: snapshot_counts(tmp, n) for n in (0, 2000)}


def test_default_kinds_are_the_documented_ten_and_two():
    assert len(NAMESPACED_KINDS) == 10 and len(DEFAULT_CLUSTER_KINDS) == 2 and len(PLATFORM_NAMESPACES) == 3


def test_call_count_is_two_plus_ten_per_namespace(counts):
    expected = len(DEFAULT_CLUSTER_KINDS) + len(NAMESPACED_KINDS) * len(PLATFORM_NAMESPACES)
    assert expected == 2 + 10 * len(PLATFORM_NAMESPACES) == 32
    client, server, _ = counts[0]
    assert (client, server) == (expected, expected)


def test_call_count_does_not_grow_with_pods(counts):
    small_client, small_server, small_pods = counts[0]
    big_client, big_server, big_pods = counts[2000]
    assert big_pods >= small_pods + 900      # the extra pods really are in namespaces the snapshot reads
    assert (big_client, big_server) == (small_client, small_server)


def test_call_count_for_other_namespaces(tmp_path):
    server = sim.start("healthy")
    try:
        cluster = connect(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        for namespaces in (["nasiko-agents"], ["nasiko", "nasiko-agents", "buildkit", "default"]):
            client_before, server_before = cluster.calls, server.store.request_count
            take_snapshot(cluster, namespaces=namespaces)
            expected = 2 + 10 * len(namespaces)
            assert (cluster.calls - client_before, server.store.request_count - server_before) == (expected, expected)
    finally:
        server.stop()
