"""scheduling/* detector: FailedScheduling wordings, quantity parsing, shortfall numbers, node sums."""
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from nasiko_nb.checks.scheduling import (classify_scheduling_message, format_cpu, format_memory, node_resources_frame,
                                         parse_quantity, pending_pods_frame, pod_requests)
from nasiko_nb.snapshot import Snapshot

from .helpers import FIXTURES, load_fixture
from .test_build import check_case, fixture_cases, fixture_snapshot

CASES = fixture_cases("scheduling")


def test_every_scheduling_code_has_a_fixture():
    expected = {code for param in CASES for code in param.values[2]["expect"]}
    assert expected == {"scheduling/insufficient-cpu", "scheduling/insufficient-memory", "scheduling/untolerated-taint",
                        "scheduling/too-many-pods", "scheduling/node-unschedulable",
                        "scheduling/node-selector-mismatch", "scheduling/unbound-pvc"}


@pytest.mark.parametrize("path,index,case", CASES)
def test_fixture_codes(path: Path, index: int, case: dict):
    check_case(path, case)


MESSAGES = [
    ("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found "
     "for incoming pod.", ["scheduling/insufficient-cpu"]),
    ("0/1 nodes are available: 1 Insufficient cpu.", ["scheduling/insufficient-cpu"]),
    ("0/3 nodes are available: 3 Insufficient memory.", ["scheduling/insufficient-memory"]),
    ("0/2 nodes are available: 2 Insufficient memory. preemption: 0/2 nodes are available: 2 Preemption is not "
     "helpful for scheduling.", ["scheduling/insufficient-memory"]),
    ("0/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory.",
     ["scheduling/insufficient-cpu", "scheduling/insufficient-memory"]),
    ("0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
     "2 Insufficient memory.", ["scheduling/insufficient-memory", "scheduling/untolerated-taint"]),
    ("0/3 nodes are available: 1 node(s) had taint {node.kubernetes.io/disk-pressure: }, that the pod didn't "
     "tolerate, 2 node(s) didn't match node selector.", ["scheduling/node-selector-mismatch",
                                                          "scheduling/untolerated-taint"]),
    ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
     ["scheduling/node-selector-mismatch"]),
    ("0/5 nodes are available: 5 node(s) didn't match Pod's node affinity/selector. preemption: 0/5 nodes are "
     "available: 5 Preemption is not helpful for scheduling.", ["scheduling/node-selector-mismatch"]),
    ("0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims.", ["scheduling/unbound-pvc"]),
    ('0/1 nodes are available: persistentvolumeclaim "mongo-data" not found.', ["scheduling/unbound-pvc"]),
    ("0/1 nodes are available: 1 Too many pods.", ["scheduling/too-many-pods"]),
    ("0/2 nodes are available: 2 Too many pods. preemption: 0/2 nodes are available: 2 No preemption victims found "
     "for incoming pod.", ["scheduling/too-many-pods"]),
    ("0/2 nodes are available: 2 node(s) were unschedulable.", ["scheduling/node-unschedulable"]),
    ("0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unschedulable: }.",
     ["scheduling/node-unschedulable"]),
    ("0/4 nodes are available: 1 Insufficient cpu, 1 Too many pods, 1 node(s) were unschedulable, 1 node(s) had "
     "untolerated taint {dedicated: gpu}.", ["scheduling/insufficient-cpu", "scheduling/too-many-pods",
                                             "scheduling/node-unschedulable", "scheduling/untolerated-taint"]),
    ("0/1 nodes are available: 1 node(s) had taints that the pod didn't tolerate.", ["scheduling/untolerated-taint"]),
]


@pytest.mark.parametrize("message,codes", MESSAGES, ids=[m[:50] for m, _ in MESSAGES])
def test_classify_messages(message, codes):
    assert sorted(c.code for c in classify_scheduling_message(message)) == sorted(codes)


def test_every_code_has_two_wordings():
    counts = {}
    for _, codes in MESSAGES:
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    assert len(counts) == 7 and min(counts.values()) >= 2, counts


def test_taint_detail():
    [memory, taint] = classify_scheduling_message(MESSAGES[5][0])
    assert taint.detail == "node-role.kubernetes.io/control-plane"
    causes = classify_scheduling_message("0/2 nodes are available: 1 node(s) had untolerated taint {a: b}, "
                                         "1 node(s) had untolerated taint {c: }.")
    assert [c.detail for c in causes] == ["a=b, c"]


def test_shared_samples(samples_path):
    for sample in yaml.safe_load(samples_path.read_text())["scheduling_events"]:
        expected = sample.get("codes") or [sample["code"]]
        assert sorted(c.code for c in classify_scheduling_message(sample["message"])) == sorted(expected)


@pytest.mark.parametrize("text,value", [
    ("250m", "0.25"), ("2", "2"), ("1.5", "1.5"), ("0.1", "0.1"), ("100m", "0.1"), ("1k", "1000"),
    ("128974848", "128974848"), ("129e6", "129000000"), ("129M", "129000000"), ("123Mi", "128974848"),
    ("1Gi", "1073741824"), ("4025836Ki", "4122456064"), ("1.5Gi", "1610612736"), ("1G", "1000000000"),
    ("500u", "0.0005"), ("100n", "0.0000001"), ("1Ti", str(2 ** 40)), (".5", "0.5"), (3, "3"), ("1E3", "1000"),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5 Gb", "Mi"])
def test_parse_quantity_rejects(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


def test_formatting():
    assert format_cpu(Decimal("0.4")) == "400m" and format_cpu(Decimal(2)) == "2000m"
    assert format_memory(Decimal(1610612736)) == "1.5Gi" and format_memory(Decimal(2 ** 20 * 92)) == "92Mi"


def _pod(containers, init=(), overhead=None):
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(containers)],
            "initContainers": [{"name": f"i{i}", **r} for i, r in enumerate(init)]}
    if overhead:
        spec["overhead"] = overhead
    return {"spec": spec}


def test_pod_requests_rules():
    # sum of containers vs largest init container
    assert pod_requests(_pod([{"requests": {"cpu": "200m"}}, {"requests": {"cpu": "300m", "memory": "1Gi"}}],
                             [{"resources": {"requests": {"cpu": "1"}}}])) == {"cpu": Decimal(1),
                                                                                "memory": Decimal(2 ** 30)}
    # limits default the request; sidecar init containers add to the sum; overhead is added
    requests = pod_requests(_pod([{"limits": {"cpu": "500m", "memory": "256Mi"}}],
                                 [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}],
                                 overhead={"cpu": "50m"}))
    assert requests == {"cpu": Decimal("0.65"), "memory": Decimal(256 * 2 ** 20)}


def test_node_frame_sums():
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "scheduling" / "insufficient-cpu-and-memory.yaml"))
    frame = node_resources_frame(snapshot).set_index("node")
    a, b = frame.loc["pool-a-1"], frame.loc["pool-a-2"]
    assert (a.cpu_capacity, a.cpu_allocatable, a.cpu_requested, a.cpu_free) == (2.0, 1.9, 1.5, 0.4)
    assert (a.memory_allocatable, a.memory_requested, a.memory_free) == (3 * 2 ** 30, 1536 * 2 ** 20, 1536 * 2 ** 20)
    assert a.memory_capacity == 4025836 * 1024 and a.pods == 2
    # Succeeded and Evicted (Failed) pods hold nothing; the backend counts its larger init container
    assert (b.cpu_requested, b.memory_requested, b.pods) == (1.5, 2 * 2 ** 30, 1)
    assert list(frame.columns)[:4] == ["cpu_capacity", "cpu_allocatable", "cpu_requested", "cpu_free"]


def test_shortfall_numbers():
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "scheduling" / "insufficient-cpu-and-memory.yaml"))
    from nasiko_nb.checks import run_checks
    findings = {f.code: f for f in run_checks(snapshot, {}, families=["scheduling"])}
    assert findings["scheduling/insufficient-cpu"].evidence.splitlines()[1] == (
        "pod requests 1000m cpu; best node pool-a-1 has 400m free (1900m allocatable - 1500m requested by 2 pods "
        "seen in the snapshot): short by 600m")
    assert findings["scheduling/insufficient-memory"].evidence.splitlines()[1] == (
        "pod requests 3Gi memory; best node pool-a-1 has 1.5Gi free (3Gi allocatable - 1.5Gi requested by 2 pods "
        "seen in the snapshot): short by 1.5Gi")


def test_pending_pods_frame():
    snapshot = fixture_snapshot(load_fixture(FIXTURES / "scheduling" / "older-wordings.yaml"))
    frame = pending_pods_frame(snapshot).set_index("pod")
    assert set(frame.index) == {"p-mem", "p-taint-affinity", "p-pvc", "p-full", "p-cordoned"}
    assert frame.loc["p-mem", "memory_request"] == "2Gi" and frame.loc["p-mem", "age"] == "30m"
    assert frame.loc["p-full", "codes"] == "scheduling/too-many-pods, scheduling/node-unschedulable"
    assert frame.loc["p-pvc", "namespace"] == "nasiko"


def test_empty_snapshot():
    assert node_resources_frame(Snapshot.from_objects([])).empty
    assert pending_pods_frame(Snapshot.from_objects([])).empty
