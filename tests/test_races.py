"""Two writers on one object: the credentials reset and someone else changing the same Secret between the reset's
read and its write. The resourceVersion-checked PUT meets a real 409 Conflict from the emulator, reads again and
writes again, so the Secret ends with both changes: the new credentials and the other writer's label."""
import base64
import json

import pytest

from nasiko_nb import fixes, sim
from nasiko_nb.cluster import connect
from nasiko_nb.fixes.registry import CONFLICT_ATTEMPTS, plan_reset
from nasiko_nb.providers.base import DockerCredential
from nasiko_nb.snapshot import take_snapshot

SECRET = ("nasiko-agents", "agent-registry-credentials")
PATH = f"/api/v1/namespaces/{SECRET[0]}/secrets/{SECRET[1]}"
NEW = DockerCredential("registry.digitalocean.com", "fresh-robot", "Fr3sh-Passw0rd-For-The-Race", read_write=True)


@pytest.fixture
def platform(tmp_path):
    with sim.start("registry-401-revoked-token") as server:
        kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        yield server, connect(kubeconfig), connect(kubeconfig)


def interleave(cluster, other_writer, times: int) -> list[str]:
    """Make ``other_writer`` label the Secret right after each of the reset's first ``times`` reads of it."""
    read, labels = cluster.get_json, []

    def get_json(path, **query):
        body = read(path, **query)
        if path == PATH and len(labels) < times:
            labels.append(f"writer-{len(labels) + 1}")
            other_writer.send_json("PATCH", PATH, {"metadata": {"labels": {"rotated-by": labels[-1]}}},
                                   "application/merge-patch+json")
        return body

    cluster.get_json = get_json
    return labels


def reset(cluster) -> fixes.Outcome:
    plan = plan_reset(take_snapshot(cluster), "a fresh token", lambda: NEW, "nasiko-images", secrets=[SECRET])
    return fixes.apply_plan(cluster, plan, dry_run=False, confirm="nasiko-images")


def test_a_conflicting_writer_loses_nothing_and_neither_does_the_reset(platform):
    server, cluster, other = platform
    labels = interleave(cluster, other, times=2)
    outcome = reset(cluster)
    secret = server.store.get("v1", "Secret", *SECRET)
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert outcome.applied and labels == ["writer-1", "writer-2"]
    assert secret["metadata"]["labels"]["rotated-by"] == "writer-2"                     # the other writer's intent
    auth = base64.b64decode(config["auths"]["registry.digitalocean.com"]["auth"]).decode()
    assert auth.split(":", 1)[0] == "fresh-robot"                                        # and the reset's


def test_a_conflict_that_never_ends_stands_and_nothing_is_half_done(platform):
    server, cluster, other = platform
    before = server.store.get("v1", "Secret", *SECRET)["data"]
    interleave(cluster, other, times=CONFLICT_ATTEMPTS)
    with pytest.raises(fixes.FixFailed, match=r"could not be replaced \(409 Conflict\); Secret nasiko-agents/"
                                              r"agent-registry-credentials: unchanged \(409 Conflict\)"):
        reset(cluster)
    assert server.store.get("v1", "Secret", *SECRET)["data"] == before
