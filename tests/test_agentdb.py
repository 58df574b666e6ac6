"""The MongoDB clean-up of one agent's records, over the real wire protocol against a scripted server.

The server (tests/mongo_wire.py) logs pymongo in with SCRAM-SHA-256 and records every other command, so
the tests assert exactly what would reach the platform's MongoDB: the count pipelines of the dry run and
the delete commands of the fix, in order, and nothing else.
"""
import json
import socket
from urllib.parse import quote

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from nasiko_nb import agentdb, fixes
from nasiko_nb.redact import fingerprint
from tests.mongo_wire import ScriptedMongo

PASSWORD = "Root/pw@7:zQ%x"        # needs percent-encoding, like a careful operator's password
AGENT = "weather-agent"
COLLECTIONS = list(agentdb.AGENT_RECORDS)
FILTERS = {
    "registry": {"$or": [{"id": AGENT}, {"name": AGENT}]},
    "upload-status": {"agent_name": AGENT},
    "agent_builds": {"agent_id": AGENT},
    "agent_deployments": {"agent_id": AGENT},
    "agent_permissions": {"agent_id": AGENT},
}
FAST_S = 0.25                       # timeouts of the tests that expect a failure


def count_command(collection: str) -> dict:
    """What pymongo's count_documents sends."""
    return {"aggregate": collection, "cursor": {}, "$db": "nasiko",
            "pipeline": [{"$match": FILTERS[collection]}, {"$group": {"_id": 1, "n": {"$sum": 1}}}]}


def delete_command(collection: str) -> dict:
    return {"delete": collection, "ordered": True, "$db": "nasiko",
            "deletes": [{"q": FILTERS[collection], "limit": 0}]}


def answer_counts(mongo: ScriptedMongo, counts: dict[str, int]) -> None:
    mongo.on("aggregate", lambda command: {"cursor": {"id": 0, "ns": f"nasiko.{command['aggregate']}", "firstBatch":
                                                      [{"_id": 1, "n": counts[command["aggregate"]]}]
                                                      if counts[command["aggregate"]] else []}})


def answer_deletes(mongo: ScriptedMongo, deleted: dict[str, int], fail: str = "") -> None:
    def delete(command: dict) -> dict:
        if command["delete"] == fail:
            return {"ok": 0, "code": 11601, "codeName": "Interrupted", "errmsg": "operation was interrupted"}
        return {"n": deleted[command["delete"]]}
    mongo.on("delete", delete)


def assert_no_password(*shown) -> None:
    for text in shown:
        text = text if isinstance(text, str) else json.dumps(text, default=str)
        assert PASSWORD not in text and quote(PASSWORD, safe="") not in text, text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    with ScriptedMongo("root", PASSWORD) as mongo:
        yield mongo


@pytest.fixture
def mongo(server, monkeypatch):
    """The scripted server named by the environment, with a fresh script and journal."""
    server.reset()
    monkeypatch.setenv(agentdb.URI_VARIABLE, server.uri)
    monkeypatch.delenv(agentdb.URI_FILE_VARIABLE, raising=False)
    monkeypatch.setattr(fixes, "JOURNAL", [])
    return server


def planned(counts: dict[str, int]) -> fixes.Plan:
    with agentdb.connect() as connection:
        return agentdb.plan_clean_agent_records(AGENT, agentdb.count_records(connection, AGENT),
                                                connection.uri_summary)


def test_the_dry_run_counts_with_the_guide_filters_and_writes_nothing(mongo):
    counts = {"registry": 1, "upload-status": 2, "agent_builds": 0, "agent_deployments": 3, "agent_permissions": 0}
    answer_counts(mongo, counts)
    with agentdb.connect() as connection:
        assert agentdb.count_records(connection, AGENT) == counts
    assert mongo.commands == [count_command(collection) for collection in COLLECTIONS]
    frame = agentdb.records_frame(counts, AGENT)
    assert frame.to_dict("records")[0] == {"collection": "registry", "filter": '{$or: [{id: "weather-agent"}, '
                                           '{name: "weather-agent"}]}', "documents": 1}
    assert list(agentdb.records_frame(counts)["documents"]) == [1, 2, 0, 3, 0]


def test_the_plan_is_one_delete_many_per_collection_holding_documents():
    counts = {"registry": 1, "upload-status": 0, "agent_builds": 4, "agent_deployments": 1, "agent_permissions": 0}
    plan = agentdb.plan_clean_agent_records(AGENT, counts, "mongodb://127.0.0.1:27017/")
    assert (plan.fix, plan.target, plan.blocked, plan.objects) == ("clean-agent-records", AGENT, "", 6)
    assert [(c.verb, c.path, c.resource, c.body, c.objects) for c in plan.changes] == [
        ("delete-many", "mongodb:nasiko.registry", "MongoDB nasiko.registry", FILTERS["registry"], 1),
        ("delete-many", "mongodb:nasiko.agent_builds", "MongoDB nasiko.agent_builds", FILTERS["agent_builds"], 4),
        ("delete-many", "mongodb:nasiko.agent_deployments", "MongoDB nasiko.agent_deployments",
         FILTERS["agent_deployments"], 1)]
    assert plan.changes[1].description == 'delete 4 document(s) with {agent_id: "weather-agent"}'


def test_applying_sends_the_planned_deletes_in_order_records_them_and_verifies(mongo):
    counts = dict(zip(COLLECTIONS, [1, 2, 3, 1, 1]))
    answer_counts(mongo, counts)
    plan = planned(counts)
    answer_deletes(mongo, counts)
    progress = []
    outcome = fixes.apply_plan(None, plan, dry_run=False, confirm=AGENT,
                               progress=lambda done, total: progress.append((done, total)))
    assert mongo.commands[len(COLLECTIONS):] == [delete_command(collection) for collection in COLLECTIONS]
    assert outcome.applied and outcome.message == f"deleted 8 document(s) of {AGENT} from 5 collection(s) in nasiko"
    assert progress == [(0, 8), (1, 8), (3, 8), (6, 8), (7, 8), (8, 8)]
    assert [(entry["collection"], entry["deleted"], entry["verb"]) for entry in fixes.JOURNAL] == [
        (collection, counts[collection], "delete-many") for collection in COLLECTIONS]

    answer_counts(mongo, dict.fromkeys(COLLECTIONS, 0))
    assert plan.verify(None) == f"verify: no document of {AGENT} is left in nasiko"
    assert mongo.commands[2 * len(COLLECTIONS):] == [count_command(collection) for collection in COLLECTIONS]


def test_the_password_is_shown_only_as_a_fingerprint(mongo):
    counts = dict(zip(COLLECTIONS, [1, 1, 0, 0, 2]))
    answer_counts(mongo, counts)
    answer_deletes(mongo, counts)
    with agentdb.connect() as connection:
        shown = [repr(connection), str(connection), repr(connection.client), repr(connection.database)]
        summary = connection.uri_summary
    plan = agentdb.plan_clean_agent_records(AGENT, counts, summary)
    outcome = fixes.apply_plan(None, plan, dry_run=False, confirm=AGENT)
    assert summary == f"mongodb://root:{fingerprint(PASSWORD)}@127.0.0.1:{mongo.port}/?authSource=admin"
    assert_no_password(*shown, repr(plan), plan.notes, plan.to_frame().to_string(), outcome.message,
                       fixes.journal_records(), plan.verify(None))


def test_nothing_to_delete_sends_nothing(mongo):
    plan = agentdb.plan_clean_agent_records(AGENT, dict.fromkeys(COLLECTIONS, 0), agentdb.describe_uri(mongo.uri))
    outcome = fixes.apply_plan(None, plan, dry_run=False, confirm=AGENT)
    assert plan.changes == [] and not outcome.applied and "nothing to delete" in outcome.message
    assert mongo.commands == []


def test_a_dry_run_sends_nothing(mongo):
    plan = agentdb.plan_clean_agent_records(AGENT, dict.fromkeys(COLLECTIONS, 1), agentdb.describe_uri(mongo.uri))
    outcome = fixes.apply_plan(None, plan, dry_run=True, confirm=AGENT)
    assert not outcome.applied and mongo.commands == [] and fixes.JOURNAL == []


def test_a_confirm_naming_another_agent_sends_nothing(mongo):
    plan = agentdb.plan_clean_agent_records(AGENT, dict.fromkeys(COLLECTIONS, 1), agentdb.describe_uri(mongo.uri))
    with pytest.raises(fixes.ConfirmationError):
        fixes.apply_plan(None, plan, dry_run=False, confirm="weather-agent-2")
    assert mongo.commands == [] and fixes.JOURNAL == []


def test_a_plan_without_counts_is_blocked_and_sends_nothing(mongo):
    plan = agentdb.plan_clean_agent_records(AGENT, None, agentdb.describe_uri(mongo.uri))
    assert plan.changes == [] and "counts are unavailable" in plan.blocked
    with pytest.raises(fixes.FixFailed, match="cannot be applied"):
        fixes.apply_plan(None, plan, dry_run=False, confirm=AGENT)
    assert mongo.commands == []


def test_a_failure_midway_names_what_was_deleted_and_what_is_untouched(mongo):
    counts = dict(zip(COLLECTIONS, [1, 2, 3, 4, 5]))
    answer_counts(mongo, counts)
    plan = planned(counts)
    answer_deletes(mongo, counts, fail="agent_builds")
    with pytest.raises(fixes.FixFailed) as failed:
        fixes.apply_plan(None, plan, dry_run=False, confirm=AGENT)
    message = str(failed.value)
    assert "delete-many MongoDB nasiko.agent_builds failed (mongodb/error)" in message
    assert "deleted before it: registry (1 deleted), upload-status (2 deleted)" in message
    assert "untouched: agent_deployments, agent_permissions" in message
    assert failed.value._render_traceback_() == [f"FixFailed: {message}"] and "\n" not in message
    assert_no_password(message)
    assert mongo.commands[len(COLLECTIONS):] == [delete_command(c) for c in ("registry", "upload-status",
                                                                             "agent_builds")]
    assert [entry["collection"] for entry in fixes.JOURNAL] == ["registry", "upload-status"]


def test_a_changed_connection_string_deletes_nothing(mongo, monkeypatch):
    plan = agentdb.plan_clean_agent_records(AGENT, dict.fromkeys(COLLECTIONS, 1), agentdb.describe_uri(mongo.uri))
    monkeypatch.setenv(agentdb.URI_VARIABLE, mongo.uri.replace("authSource=admin", "authSource=admin&appname=x"))
    with pytest.raises(fixes.FixFailed, match="not the planned .*nothing was deleted"):
        fixes.apply_plan(None, plan, dry_run=False, confirm=AGENT)
    assert mongo.commands == []


@pytest.mark.parametrize("agent", ["", "  ", "$where", '{"$ne": null}', "agent}", None])
def test_names_that_could_select_other_documents_are_refused_before_sending(mongo, agent):
    with agentdb.connect() as connection:
        with pytest.raises(agentdb.InvalidAgentName):
            agentdb.count_records(connection, agent)
    with pytest.raises(agentdb.InvalidAgentName):
        agentdb.plan_clean_agent_records(agent, dict.fromkeys(COLLECTIONS, 1), "mongodb://127.0.0.1:27017/")
    assert mongo.commands == []


def test_a_refused_connection_is_one_line_without_the_password(monkeypatch):
    monkeypatch.setenv(agentdb.URI_VARIABLE,
                       f"mongodb://root:{quote(PASSWORD, safe='')}@127.0.0.1:{free_port()}/?authSource=admin")
    with pytest.raises(agentdb.AgentDbError) as refused:
        agentdb.connect(timeout_s=FAST_S)
    [line] = refused.value._render_traceback_()
    assert refused.value.code == "mongodb/refused" and "\n" not in line
    assert fingerprint(PASSWORD) in line and "kubectl port-forward -n nasiko svc/mongodb 27017:27017" in line
    assert_no_password(line)


def test_a_server_that_never_answers_times_out_in_one_line(monkeypatch):
    with socket.socket() as silent:   # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv(agentdb.URI_VARIABLE, f"mongodb://root:{quote(PASSWORD, safe='')}@127.0.0.1:"
                                                 f"{silent.getsockname()[1]}/?authSource=admin")
        with pytest.raises(agentdb.AgentDbError) as timed_out:
            agentdb.connect(timeout_s=FAST_S)
    assert timed_out.value.code == "mongodb/timeout"
    assert str(timed_out.value).endswith(f"did not answer within {FAST_S:g} s")
    assert_no_password(str(timed_out.value))


@pytest.mark.parametrize("how", ["server refuses the login", "wrong password"])
def test_a_failed_login_is_one_line_without_the_password(mongo, monkeypatch, how):
    if how == "wrong password":
        monkeypatch.setenv(agentdb.URI_VARIABLE, mongo.uri.replace(quote(PASSWORD, safe=""), "not-the-password"))
    else:
        mongo.refuse_login = True
    with pytest.raises(agentdb.AgentDbError) as rejected:
        agentdb.connect(timeout_s=FAST_S)
    [line] = rejected.value._render_traceback_()
    assert rejected.value.code == "mongodb/auth-failed" and "AuthenticationFailed" in line and "\n" not in line
    assert_no_password(line)
    assert mongo.commands == []


def test_a_host_that_does_not_resolve_is_named_as_such():
    exc = ServerSelectionTimeoutError("mongodb.nasiko:27017: [Errno -2] Name or service not known (configured "
                                      "timeouts: socketTimeoutMS: 60000.0ms, connectTimeoutMS: 3000.0ms), Timeout: "
                                      "3.0s, Topology Description: <TopologyDescription ...>")
    problem = agentdb.AgentDbError.from_exception(exc, "MongoDB at mongodb://root:sha256:0@mongodb.nasiko:27017/")
    assert problem.code == "mongodb/dns" and "port-forward" in str(problem)


def test_the_connection_string_comes_from_the_environment_or_a_file(mongo, monkeypatch, tmp_path):
    uri_file = tmp_path / "uri"
    uri_file.write_text(mongo.uri + "\n")
    monkeypatch.setenv(agentdb.URI_FILE_VARIABLE, str(uri_file))
    with pytest.raises(agentdb.AgentDbError, match="not both"):
        agentdb.connect()
    monkeypatch.delenv(agentdb.URI_VARIABLE)
    with agentdb.connect() as connection:
        assert connection.database.name == "nasiko"
    uri_file.write_text("")
    with pytest.raises(agentdb.AgentDbError, match="is empty"):
        agentdb.connect()
    monkeypatch.delenv(agentdb.URI_FILE_VARIABLE)
    with pytest.raises(agentdb.AgentDbError) as missing:
        agentdb.connect()
    assert missing.value.code == "mongodb/no-uri"


def test_describe_uri_masks_every_password_it_holds():
    assert agentdb.describe_uri("mongodb://root:p%40ss@mongodb.nasiko:27017/?authSource=admin") == (
        f"mongodb://root:{fingerprint('p@ss')}@mongodb.nasiko:27017/?authSource=admin")
    assert agentdb.describe_uri("mongodb://root:p@ss@h:1/") == f"mongodb://root:{fingerprint('p@ss')}@h:1/"
    assert agentdb.describe_uri("mongodb://h:1/?tls=true&tlsCertificateKeyFilePassword=k3y") == (
        f"mongodb://h:1/?tls=true&tlsCertificateKeyFilePassword={fingerprint('k3y')}")
    assert agentdb.describe_uri("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"
    assert agentdb.describe_uri("root:pw1@h:1") == f"root:{fingerprint('pw1')}@h:1"   # no scheme: still masked
