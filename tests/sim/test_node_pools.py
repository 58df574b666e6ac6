"""The cloud node pools behind the emulated clusters: DOKS in the fake DigitalOcean (its resizes add and remove
Nodes), an EKS managed node group in moto for the ECR scenarios."""
from __future__ import annotations

import re

import boto3
import pydo
import pytest
from azure.core.exceptions import HttpResponseError
from openapi_core import OpenAPI

from nasiko_nb import sim
from nasiko_nb.sim.digitalocean import DOWorld, load_spec
from nasiko_nb.sim.platform import (DOKS_CLUSTER, ECR_REGION, EKS_NODE_AMI, NODE_POOL, NODE_POOL_ID, NODE_SIZE,
                                    REGISTRY_NAME, REGISTRY_USER)
from nasiko_nb.sim.scenarios import build
from tests.sim.test_digitalocean import validate

POOL_LABEL = f"doks.digitalocean.com/node-pool={NODE_POOL}"


def pool_nodes(server) -> list[dict]:
    return server.store.list("v1", "Node", label_selector=POOL_LABEL)


def ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


@pytest.fixture
def doks():
    """healthy with one extra node; afterwards every answer of its DigitalOcean is held against the contract."""
    server = sim.start("healthy", extra_nodes=1)
    try:
        yield server
        contract = OpenAPI.from_dict(load_spec())
        for exchange in server.digitalocean.exchanges:
            validate(contract, exchange)
    finally:
        server.stop()


@pytest.fixture
def pydo_client(doks):
    env = doks.environment()
    return pydo.Client(token=env["DIGITALOCEAN_TOKEN"], endpoint=env["NASIKO_DO_API_URL"],
                       connection_verify=env["NASIKO_CA_BUNDLE"], retry_total=0)


def test_baseline_world_holds_the_doks_cluster_behind_the_nodes():
    cluster = build("healthy", extra_nodes=3)
    [doks] = cluster.digitalocean.clusters.values()
    assert (doks.account, doks.name, doks.region, doks.version) == (REGISTRY_USER, DOKS_CLUSTER, "nyc1", "1.34.1-do.0")
    assert doks.registries == [REGISTRY_NAME]
    [pool] = doks.node_pools
    assert (pool.id, pool.name, pool.size, pool.count, pool.auto_scale) == (NODE_POOL_ID, NODE_POOL, NODE_SIZE, 5, False)
    nodes = cluster.of_kind("Node")
    assert [n.name for n in pool.nodes] == [n["metadata"]["name"] for n in nodes]
    assert {n["metadata"]["labels"]["doks.digitalocean.com/node-pool-id"] for n in nodes} == {pool.id}
    assert {n["metadata"]["labels"]["topology.kubernetes.io/region"] for n in nodes} == {doks.region}


def test_ecr_baseline_has_no_doks_cluster():
    assert not build("ecr-healthy").digitalocean.clusters


def test_add_cluster_takes_pool_ids_and_node_names():
    world = DOWorld()
    world.add_account("ops@example.com")
    cluster = world.add_cluster("ops@example.com", "c", node_pools=(("a", "s-1vcpu-2gb", 3), ("b", "s-2vcpu-4gb", 1)),
                                pool_ids=("pool-a-id",), node_names=(["a-first"],), registries=("r",))
    first, second = cluster.node_pools
    assert first.id == "pool-a-id" and [n.name for n in first.nodes][0] == "a-first" and first.count == 3
    assert len({n.name for n in first.nodes}) == 3 and all(n.name.startswith("a-") for n in first.nodes)
    assert second.id != first.id and second.count == 1 and cluster.registries == ["r"]


def test_resizes_reach_the_listener_when_delivered():
    world = DOWorld()
    world.add_account("ops@example.com")
    cluster = world.add_cluster("ops@example.com", "c", node_pools=(("a", "s-1vcpu-2gb", 2),))
    [pool] = cluster.node_pools
    first = [n.name for n in pool.nodes]
    grown = world.resize_node_pool(cluster, pool, 4)
    assert len(grown.added) == 2 and not grown.removed and pool.count == 4
    delivered = []
    world.node_pool_listener = delivered.append
    shrunk = world.resize_node_pool(cluster, pool, 1)
    assert shrunk.removed == (first[1], *grown.added) and [n.name for n in pool.nodes] == first[:1]
    assert not delivered
    world.deliver_node_pool_changes()
    assert delivered == [grown, shrunk]
    regrown = world.resize_node_pool(cluster, pool, 2)
    assert not set(regrown.added) & set(shrunk.removed), "a new droplet never takes a removed one's name"


def test_scaling_the_pool_through_pydo_adds_ready_nodes(doks, pydo_client):
    [cluster] = pydo_client.kubernetes.list_clusters()["kubernetes_clusters"]
    assert cluster["name"] == DOKS_CLUSTER and cluster["registries"] == [REGISTRY_NAME]
    [pool] = cluster["node_pools"]
    assert pool["id"] == NODE_POOL_ID and pool["count"] == 3 and pool["size"] == NODE_SIZE
    baseline_node = pool_nodes(doks)[0]

    answer = pydo_client.kubernetes.update_node_pool(cluster["id"], pool["id"], body={"name": pool["name"],
                                                                                       "count": 5})
    assert doks.digitalocean.exchanges[-1].status == 202
    assert answer["node_pool"]["count"] == 5 and len(answer["node_pool"]["nodes"]) == 5
    [listed] = pydo_client.kubernetes.list_node_pools(cluster["id"])["node_pools"]
    assert listed["count"] == 5

    nodes = pool_nodes(doks)
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(n["name"] for n in listed["nodes"])
    joined = [n for n in nodes if n["metadata"]["name"] not in {x["name"] for x in pool["nodes"]}]
    assert len(joined) == 2 and all(ready(n) and not n["spec"].get("unschedulable") for n in joined)
    for node in joined:
        assert re.fullmatch(rf"{NODE_POOL}-[a-z0-9]{{5}}", node["metadata"]["name"])
        assert node["metadata"]["labels"].keys() == baseline_node["metadata"]["labels"].keys()
        assert node["metadata"]["labels"]["doks.digitalocean.com/node-pool-id"] == NODE_POOL_ID
        assert node["status"]["allocatable"] == baseline_node["status"]["allocatable"]
    addresses = [a["address"] for n in nodes for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
    assert len(set(addresses)) == 5
    events = doks.store.list("v1", "Event", "default", field_selector="reason=RegisteredNode")
    assert {e["involvedObject"]["name"] for e in events} == {n["metadata"]["name"] for n in joined}


def test_new_pods_run_on_joined_nodes(doks, pydo_client):
    [cluster] = pydo_client.kubernetes.list_clusters()["kubernetes_clusters"]
    pool = cluster["node_pools"][0]
    answer = pydo_client.kubernetes.update_node_pool(cluster["id"], pool["id"], body={"name": pool["name"],
                                                                                       "count": 6})
    joined = {n["name"] for n in answer["node_pool"]["nodes"]} - {n["name"] for n in pool["nodes"]}
    deploy = doks.store.get("apps/v1", "Deployment", "nasiko", "nasiko-web")
    deploy["spec"]["replicas"] = 8
    doks.store.update(deploy)
    placed = {p["spec"]["nodeName"] for p in doks.store.list("v1", "Pod", "nasiko", label_selector="app=nasiko-web")}
    assert placed & joined


def test_shrinking_the_pool_removes_idle_nodes_and_cordons_busy_ones(doks, pydo_client):
    [cluster] = pydo_client.kubernetes.list_clusters()["kubernetes_clusters"]
    pool = cluster["node_pools"][0]
    grown = pydo_client.kubernetes.update_node_pool(cluster["id"], pool["id"], body={"name": pool["name"],
                                                                                      "count": 4})["node_pool"]
    idle = grown["nodes"][-1]["name"]
    busy = grown["nodes"][-2]["name"]           # the baseline's extra node, running pods since the start
    assert doks.store.list("v1", "Pod", field_selector=f"spec.nodeName={busy},status.phase=Running")

    shrunk = pydo_client.kubernetes.update_node_pool(cluster["id"], pool["id"], body={"name": pool["name"],
                                                                                       "count": 2})["node_pool"]
    assert [n["name"] for n in shrunk["nodes"]] == [n["name"] for n in grown["nodes"][:2]]
    names = {n["metadata"]["name"]: n for n in pool_nodes(doks)}
    assert idle not in names
    assert names[busy]["spec"]["unschedulable"] is True
    assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}.items() <= \
        names[busy]["spec"]["taints"][0].items()
    assert not any(n["spec"].get("unschedulable") for name, n in names.items() if name != busy)


def test_a_pool_without_autoscaling_keeps_a_node(doks, pydo_client):
    [cluster] = pydo_client.kubernetes.list_clusters()["kubernetes_clusters"]
    pool = cluster["node_pools"][0]
    with pytest.raises(HttpResponseError) as refused:
        pydo_client.kubernetes.update_node_pool(cluster["id"], pool["id"], body={"name": pool["name"], "count": 0})
    assert refused.value.status_code == 422
    assert len(pool_nodes(doks)) == 3


# -- EKS ------------------------------------------------------------------------------------------------------


def test_ecr_scenarios_run_on_an_eks_node_group():
    cluster = build("ecr-healthy", extra_nodes=2)
    nodes = cluster.of_kind("Node")
    assert len(nodes) == 4
    for node in nodes:
        labels = node["metadata"]["labels"]
        assert not [key for key in labels if key.startswith("doks.digitalocean.com/")]
        assert labels["eks.amazonaws.com/nodegroup"] == "nasiko-nodes"
        assert labels["eks.amazonaws.com/capacityType"] == "ON_DEMAND"
        assert labels["eks.amazonaws.com/nodegroup-image"] == EKS_NODE_AMI
        assert labels["topology.kubernetes.io/region"] == ECR_REGION
        assert labels["node.kubernetes.io/instance-type"] == "m5.xlarge"
        assert re.fullmatch(rf"aws:///{ECR_REGION}a/i-0[0-9a-f]{{16}}", node["spec"]["providerID"])
        assert re.fullmatch(r"ip-192-168-\d+-\d+\.ec2\.internal", node["metadata"]["name"])
    assert len({n["spec"]["providerID"] for n in nodes}) == 4
    assert {p["spec"]["nodeName"] for p in cluster.of_kind("Pod") if p["spec"].get("nodeName")} <= \
        {n["metadata"]["name"] for n in nodes}


def test_moto_holds_the_eks_cluster_and_node_group():
    server = sim.start("ecr-healthy")
    try:
        env = server.environment()
        eks = boto3.client("eks", endpoint_url=server.aws.endpoint_url, region_name=env["AWS_DEFAULT_REGION"],
                           aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        assert eks.list_clusters()["clusters"] == ["nasiko"]
        assert eks.list_nodegroups(clusterName="nasiko")["nodegroups"] == ["nasiko-nodes"]
        group = eks.describe_nodegroup(clusterName="nasiko", nodegroupName="nasiko-nodes")["nodegroup"]
        assert group["scalingConfig"] == {"minSize": 1, "maxSize": 4, "desiredSize": 2}
        assert group["instanceTypes"] == ["m5.xlarge"]
        assert len(server.store.list("v1", "Node", label_selector="eks.amazonaws.com/nodegroup=nasiko-nodes")) == 2
        update = eks.update_nodegroup_config(clusterName="nasiko", nodegroupName="nasiko-nodes",
                                             scalingConfig={"minSize": 1, "maxSize": 4, "desiredSize": 3})["update"]
        assert update["type"] == "ConfigUpdate"
        group = eks.describe_nodegroup(clusterName="nasiko", nodegroupName="nasiko-nodes")["nodegroup"]
        assert group["scalingConfig"]["desiredSize"] == 3
    finally:
        server.stop()
