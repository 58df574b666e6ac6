"""The MongoDB records of one agent: count them (dry run), then delete them as a confirmed fix.

Re-uploading an agent whose old records are still in MongoDB brings the old state back (runbook
07-agent-chat-404, guide "Step 2: Clean Up Old Agent Deployment"). :data:`AGENT_RECORDS` is the one table
of what is deleted: the dry run counts with the same filters the fix deletes with.

The platform's MongoDB is ``mongodb.nasiko:27017`` (Service ``mongodb``), user ``root`` with
``authSource=admin``; the root password is in Secret ``mongodb``, key ``mongodb-root-password``. From a
laptop, forward the port and hand the connection string over in a file only you can read::

    kubectl port-forward -n nasiko svc/mongodb 27017:27017 &
    umask 077
    printf 'mongodb://root:%s@127.0.0.1:27017/?authSource=admin' "$(kubectl get secret -n nasiko mongodb \\
        -o jsonpath='{.data.mongodb-root-password}' | base64 -d)" > ~/.nasiko-mongodb-uri
    export NASIKO_MONGODB_URI_FILE=~/.nasiko-mongodb-uri

Inside the cluster the string is ``mongodb://root:<password>@mongodb.nasiko:27017/?authSource=admin``.
A password with any of ``:/?#[]@%`` must be percent-encoded; a replica-set install reached through a
port-forward also needs ``&directConnection=true``. The string is read only from the environment
(``NASIKO_MONGODB_URI``, or ``NASIKO_MONGODB_URI_FILE`` naming a file that holds it) so that it never sits
in a notebook; everything shown replaces its password by a fingerprint
(``mongodb://root:sha256:ab12…@127.0.0.1:27017/?authSource=admin``).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote

import pandas as pd
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConfigurationError, ConnectionFailure, NetworkTimeout, OperationFailure, PyMongoError

from nasiko_nb import fixes
from nasiko_nb.fixes import Change, Plan
from nasiko_nb.redact import fingerprint, scrub

URI_VARIABLE = "NASIKO_MONGODB_URI"
URI_FILE_VARIABLE = "NASIKO_MONGODB_URI_FILE"
DATABASE = "nasiko"
TIMEOUT_S = 3.0              # to reach and log in: a runbook reports an unreachable MongoDB, it does not hang
OPERATION_TIMEOUT_S = 60.0   # one count or delete; a stuck server fails the step instead of the whole run
FIX = "clean-agent-records"

#: Collection -> the fields that hold the agent's name; a document is the agent's when any of them equals it.
#: The guide deletes ``registry`` by ``id`` only; its ``name`` is unique too, so a record whose id differs from
#: its name is found as well.
AGENT_RECORDS: dict[str, tuple[str, ...]] = {
    "registry": ("id", "name"),
    "upload-status": ("agent_name",),
    "agent_builds": ("agent_id",),
    "agent_deployments": ("agent_id",),
    "agent_permissions": ("agent_id",),
}

_UNSAFE_NAME = re.compile(r"[${}]")
_BARE_KEY = re.compile(r"[$A-Za-z_][\w$]*")
_DNS_FAILURES = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
                 "no address associated", "getaddrinfo failed")
_TIMEOUTS = ("timed out", "no servers found yet")   # the latter: selection gave up before the connect did
_KEY_PASSWORD_OPTION = re.compile(
    r"(?P<head>[?&](?:tlsCertificateKeyFilePassword|sslPEMKeyPassword)=)(?P<value>[^&]*)", re.IGNORECASE)


class AgentDbError(Exception):
    """MongoDB could not be reached or refused: a cause code and one sentence, never a secret or a traceback."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code

    def _render_traceback_(self):
        return [f"AgentDbError ({self.code}): {self}"]

    @classmethod
    def from_exception(cls, exc: Exception, where: str, timeout_s: float = TIMEOUT_S,
                       secrets: tuple[str, ...] = ()) -> "AgentDbError":
        """Name the cause of a pymongo failure; ``where`` is what was being reached (with the redacted URI)."""
        if isinstance(exc, OperationFailure):
            details = exc.details or {}
            if exc.code == 18:
                return cls("mongodb/auth-failed", f"{where} rejected the login (AuthenticationFailed): check the "
                                                  f"user, the password and authSource=admin")
            if exc.code == 13:
                return cls("mongodb/forbidden", f"{where} refused the command (Unauthorized): the user lacks the "
                                                f"right, log in as root")
            reason = _one_line(str(details.get("errmsg") or exc), secrets)
            return cls("mongodb/error", f"{where} answered error {exc.code} ({details.get('codeName', '')}): {reason}")
        if isinstance(exc, ConnectionFailure):
            reason = _network_reason(exc, secrets)
            if "refused" in reason.lower():
                return cls("mongodb/refused", f"{where} refused the connection: is `kubectl port-forward -n nasiko "
                                              f"svc/mongodb 27017:27017` running?")
            if any(marker in reason.lower() for marker in _DNS_FAILURES):
                return cls("mongodb/dns", f"{where}: the host name does not resolve (mongodb.nasiko resolves only "
                                          f"inside the cluster; from a laptop, port-forward and use 127.0.0.1)")
            if isinstance(exc, NetworkTimeout) or any(marker in reason.lower() for marker in _TIMEOUTS):
                return cls("mongodb/timeout", f"{where} did not answer within {timeout_s:g} s")
            return cls("mongodb/unreachable", f"{where} is unreachable: {reason}")
        if isinstance(exc, (ConfigurationError, ValueError, TypeError)):
            reason = _one_line(str(exc), secrets)
            code = "mongodb/dns" if "dns" in reason.lower() else "mongodb/bad-uri"
            return cls(code, f"the connection string for {where} is not usable: {reason}")
        return cls("mongodb/error", f"{where}: {type(exc).__name__}: {_one_line(str(exc), secrets)}")


class InvalidAgentName(ValueError):
    """An agent name that could select more than that agent's documents: nothing was sent."""

    def _render_traceback_(self):
        return [f"InvalidAgentName: {self}"]


def _one_line(text: str, secrets: tuple[str, ...]) -> str:
    return " ".join(scrub(text, secrets).split())


def _network_reason(exc: ConnectionFailure, secrets: tuple[str, ...]) -> str:
    """pymongo's reason without the host prefix, timeouts and topology dump: "[Errno 111] Connection refused"."""
    text = str(exc).split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0]
    return _one_line(re.sub(r"^\S+:\d+: ", "", text), secrets)


def _uri_parts(uri: str) -> tuple[str, str, str, str]:
    """(scheme://, user, password, rest), split at the last "@" so that a password with a stray "@" stays whole."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "", uri
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return scheme + sep, "", "", rest
    user, _, password = userinfo.partition(":")
    return scheme + sep, user, password, hosts


def describe_uri(uri: str) -> str:
    """The connection string to show: its password (and a TLS key password) replaced by their fingerprints."""
    scheme, user, password, rest = _uri_parts(uri.strip())
    rest = _KEY_PASSWORD_OPTION.sub(lambda m: m["head"] + fingerprint(unquote(m["value"])), rest)
    if not user and not password:
        return scheme + rest
    return f"{scheme}{user}{':' + fingerprint(unquote(password)) if password else ''}@{rest}"


def _secrets_of(uri: str) -> tuple[str, ...]:
    _, _, password, rest = _uri_parts(uri.strip())
    values = [password] + [m["value"] for m in _KEY_PASSWORD_OPTION.finditer(rest)]
    values += [unquote(value) for value in values]
    return tuple(value for value in values if value)


def _uri_from_environment() -> str:
    inline, file_name = os.environ.get(URI_VARIABLE, "").strip(), os.environ.get(URI_FILE_VARIABLE, "").strip()
    if inline and file_name:
        raise AgentDbError("mongodb/no-uri", f"set one of {URI_VARIABLE} and {URI_FILE_VARIABLE}, not both")
    if file_name:
        try:
            inline = Path(file_name).expanduser().read_text().strip()
        except OSError as exc:
            raise AgentDbError("mongodb/no-uri", f"{URI_FILE_VARIABLE} names {file_name}, which cannot be read "
                                                 f"({exc.strerror or type(exc).__name__})") from None
        if not inline:
            raise AgentDbError("mongodb/no-uri", f"{URI_FILE_VARIABLE} names {file_name}, which is empty")
    if not inline:
        raise AgentDbError("mongodb/no-uri", f"no MongoDB connection string: set {URI_VARIABLE} or "
                                             f"{URI_FILE_VARIABLE} (see the nasiko_nb.agentdb docstring)")
    return inline


class MongoConnection:
    """A logged-in client and the database to work in; shows only the redacted connection string."""

    def __init__(self, client: MongoClient, database: Database, uri_summary: str, timeout_s: float,
                 secrets: tuple[str, ...]):
        self.client, self.database, self.uri_summary, self.timeout_s = client, database, uri_summary, timeout_s
        self._secrets = secrets

    def __repr__(self) -> str:
        return f"MongoConnection({self.uri_summary}, database {self.database.name})"

    __str__ = __repr__

    @property
    def where(self) -> str:
        return f"MongoDB at {self.uri_summary}"

    def failure(self, exc: Exception) -> AgentDbError:
        return AgentDbError.from_exception(exc, self.where, self.timeout_s, self._secrets)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "MongoConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(*, database: str = DATABASE, timeout_s: float = TIMEOUT_S) -> MongoConnection:
    """Connect with the environment's connection string and log in (one ping), or raise AgentDbError."""
    uri = _uri_from_environment()
    summary, secrets = describe_uri(uri), _secrets_of(uri)
    where = f"MongoDB at {summary}"
    timeout_ms = int(timeout_s * 1000)
    try:
        client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                             socketTimeoutMS=int(OPERATION_TIMEOUT_S * 1000), appname="nasiko-nb")
    except Exception as exc:   # pymongo's URI errors may quote the URI: only the scrubbed cause leaves
        raise AgentDbError.from_exception(exc, where, timeout_s, secrets) from None
    connection = MongoConnection(client, client.get_database(database), summary, timeout_s, secrets)
    try:
        client.admin.command("ping")
    except PyMongoError as exc:
        client.close()
        raise connection.failure(exc) from None
    return connection


def check_agent_name(agent: str) -> str:
    """The name, if it can only match itself: no operator (``$``) or document (``{``) can ride in with it."""
    if not isinstance(agent, str) or not agent.strip():
        raise InvalidAgentName(f"the agent name must be a non-empty string, not {agent!r}")
    if _UNSAFE_NAME.search(agent):
        raise InvalidAgentName(f"the agent name {agent!r} contains $, {{ or }}; agent names never do, "
                               f"so it is refused rather than sent to MongoDB")
    return agent


def agent_filter(collection: str, agent: str) -> dict:
    """The filter that selects ``agent``'s documents in ``collection``, matching the name as a literal string."""
    fields = AGENT_RECORDS[collection]
    name = check_agent_name(agent)
    if len(fields) == 1:
        return {fields[0]: name}
    return {"$or": [{field: name} for field in fields]}


def shell_form(value) -> str:
    """A filter as mongosh shows it: ``{agent_id: "x"}``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_shell_key(key)}: {shell_form(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(shell_form(item) for item in value) + "]"
    return json.dumps(value)


def _shell_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _database_of(source: MongoConnection | MongoClient | Database) -> tuple[Database, MongoConnection | None]:
    if isinstance(source, MongoConnection):
        return source.database, source
    if isinstance(source, MongoClient):
        return source.get_database(DATABASE), None
    if isinstance(source, Database):
        return source, None
    raise TypeError(f"expected a MongoConnection, MongoClient or Database, not {type(source).__name__}")


def count_records(client_or_db: MongoConnection | MongoClient | Database, agent: str) -> dict[str, int]:
    """The dry run: how many documents each filter of :data:`AGENT_RECORDS` selects; nothing is written."""
    database, connection = _database_of(client_or_db)
    filters = {collection: agent_filter(collection, agent) for collection in AGENT_RECORDS}
    counts = {}
    for collection, query in filters.items():
        try:
            counts[collection] = database[collection].count_documents(query)
        except PyMongoError as exc:
            raise (connection.failure(exc) if connection else
                   AgentDbError.from_exception(exc, f"MongoDB database {database.name}")) from None
    return counts


def records_frame(counts: Mapping[str, int], agent: str | None = None) -> pd.DataFrame:
    """The dry run as a table: one row per collection, with its filter when ``agent`` is given."""
    rows = [{"collection": collection, **({"filter": shell_form(agent_filter(collection, agent))} if agent else {}),
             "documents": counts.get(collection)} for collection in AGENT_RECORDS]
    return pd.DataFrame(rows, columns=["collection", *(["filter"] if agent else []), "documents"])


def plan_clean_agent_records(agent: str, counts: Mapping[str, int] | None, uri_summary: str, *,
                             database: str = DATABASE) -> Plan:
    """One delete-many per collection that holds the agent's documents, with the dry run's filters.

    ``counts`` is the dry run's answer (None when it failed: the plan is then blocked). The executor connects
    again from the environment and refuses to run against another MongoDB than ``uri_summary``.
    """
    check_agent_name(agent)
    notes = [f"MongoDB {uri_summary}, database {database}. Each delete uses the dry run's filter, so documents "
             f"of {agent} written since the dry run are deleted too."]
    if counts is None or any(not isinstance(counts.get(collection), int) for collection in AGENT_RECORDS):
        return Plan(fix=FIX, target=agent, changes=[], notes=notes,
                    blocked="the record counts are unavailable (the dry run could not count them); "
                            "nothing can be planned without them")
    collections = [collection for collection in AGENT_RECORDS if counts[collection] > 0]
    changes = []
    for collection in collections:
        query, count = agent_filter(collection, agent), counts[collection]
        changes.append(Change(verb="delete-many", path=f"mongodb:{database}.{collection}",
                              resource=f"MongoDB {database}.{collection}", body=query, objects=count,
                              description=f"delete {count} document(s) with {shell_form(query)}"))
    if not changes:
        notes.append(f"No document of {agent} in any of {', '.join(AGENT_RECORDS)}: nothing to delete.")
    return Plan(fix=FIX, target=agent, changes=changes, notes=notes,
                executor=lambda _cluster, plan, progress: _delete_records(plan, collections, uri_summary, database,
                                                                          progress),
                verify=lambda _cluster: _left_over(agent, uri_summary, database))


def _connect_to(uri_summary: str, database: str) -> MongoConnection:
    """The planned MongoDB again, or AgentDbError when the environment now names another one."""
    connection = connect(database=database)
    if connection.uri_summary != uri_summary:
        connection.close()
        raise AgentDbError("mongodb/changed", f"the environment now names MongoDB {connection.uri_summary}, not the "
                                              f"planned {uri_summary}: plan again")
    return connection


def _delete_records(plan: Plan, collections: list[str], uri_summary: str, database: str,
                    progress: fixes.Progress) -> fixes.Outcome:
    """Send the planned delete-many commands in order; a failure names what is deleted and what is untouched."""
    if not plan.changes:
        return fixes.Outcome(plan, False, f"no document of {plan.target} in {database}: nothing to delete")
    results: list[dict] = []
    done = 0
    progress(0, plan.objects)
    try:
        connection = _connect_to(uri_summary, database)
    except AgentDbError as exc:
        raise fixes.FixFailed(f"{exc} ({exc.code}); nothing was deleted") from None
    with connection:
        for index, (collection, change) in enumerate(zip(collections, plan.changes)):
            try:
                deleted = connection.database[collection].delete_many(change.body).deleted_count
            except PyMongoError as exc:
                before = ", ".join(f"{entry['collection']} ({entry['deleted']} deleted)" for entry in results)
                untouched = ", ".join(collections[index + 1:])
                failure = connection.failure(exc)
                raise fixes.FixFailed(f"delete-many {change.resource} failed ({failure.code}): {failure}; "
                                      f"deleted before it: {before or 'nothing'}; untouched: {untouched or 'none'}; "
                                      f"count again (dry run) to see what is left") from None
            entry = fixes.record(plan, change)
            entry.update(collection=collection, deleted=deleted)
            results.append(entry)
            done += change.objects
            progress(done, plan.objects)
    deleted = sum(entry["deleted"] for entry in results)
    extra = f" ({plan.objects} planned)" if deleted != plan.objects else ""
    return fixes.Outcome(plan, True, f"deleted {deleted} document(s){extra} of {plan.target} from "
                                     f"{len(results)} collection(s) in {database}", results)


def _left_over(agent: str, uri_summary: str, database: str) -> str:
    """Count again after applying: every count should now be zero."""
    try:
        with _connect_to(uri_summary, database) as connection:
            counts = count_records(connection, agent)
    except AgentDbError as exc:
        return f"verify: counting again failed ({exc.code}): {exc}"
    left = {collection: count for collection, count in counts.items() if count}
    if not left:
        return f"verify: no document of {agent} is left in {database}"
    return (f"verify: {sum(left.values())} document(s) of {agent} still in {database}: "
            + ", ".join(f"{collection} {count}" for collection, count in left.items()))
