"""A scripted MongoDB on 127.0.0.1 for the tests: the real wire protocol, with answers the test chooses.

mockupdb parses and writes the wire messages (OP_MSG, and the OP_QUERY of pymongo's first handshake);
this wraps it with what a real server does before any command is run: the ``hello`` handshake, SCRAM-SHA-256
login of one user (verified, so a wrong password fails as it would against the platform's MongoDB),
``ping``, ``buildInfo`` and ``endSessions``. Every other command is recorded in :attr:`ScriptedMongo.commands`
and answered by the handler the test registered for its name, or refused when there is none, so an
unexpected command fails the test at once instead of waiting for a timeout.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Callable
from urllib.parse import quote

from bson import Binary
from mockupdb import MockupDB

HANDSHAKE = {"hello", "ismaster"}
SERVED = HANDSHAKE | {"saslstart", "saslcontinue", "ping", "buildinfo", "endsessions"}
ITERATIONS = 4096                       # the least pymongo accepts
AUTHENTICATION_FAILED = 18
HELLO = {"ismaster": True, "isWritablePrimary": True, "helloOk": True, "minWireVersion": 0, "maxWireVersion": 21,
         "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
         "logicalSessionTimeoutMinutes": 30, "saslSupportedMechs": ["SCRAM-SHA-256"]}

Handler = Callable[[dict], dict]        # a command (without session fields) -> the reply's fields


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


class ScriptedMongo:
    """One standalone server; ``with ScriptedMongo(...) as mongo:`` serves while the block runs."""

    def __init__(self, user: str = "root", password: str = "s3cret-Passw0rd", *, refuse_login: bool = False):
        self.user, self.password, self.refuse_login = user, password, refuse_login
        self.commands: list[dict] = []          # every command a test answers, as sent, without session fields
        self.handlers: dict[str, Handler] = {}
        self._salt = os.urandom(16)
        self._salted = hashlib.pbkdf2_hmac("sha256", password.encode(), self._salt, ITERATIONS)
        self._logins: dict[int, tuple[str, str]] = {}   # client port -> (nonce, client-first-bare)
        self._server = MockupDB()
        self._server.autoresponds(self._answer)
        self.port = 0

    def __enter__(self) -> "ScriptedMongo":
        self.port = self._server.run()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    @property
    def uri(self) -> str:
        return (f"mongodb://{quote(self.user, safe='')}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/"
                "?authSource=admin")

    def reset(self) -> None:
        """Forget the last test's script and commands, so one server can serve a whole module."""
        self.commands.clear()
        self.handlers.clear()
        self.refuse_login = False

    def on(self, command: str, handler: Handler) -> None:
        self.handlers[command] = handler

    def _answer(self, request) -> bool:
        command = {key: value for key, value in request.doc.items() if key not in ("lsid", "$clusterTime")}
        name = next(iter(command))
        if name.lower() in SERVED:
            return self._serve(request, name.lower(), command)
        self.commands.append(command)
        handler = self.handlers.get(name)
        if handler is None:
            return request.command_err(59, f"no such command: '{name}' (not scripted)", codeName="CommandNotFound")
        try:
            reply = handler(command)
        except Exception as exc:   # a broken script must fail its test now, not leave pymongo waiting for a reply
            return request.command_err(1, f"the test's {name} handler failed: {exc!r}")
        return request.reply(reply)

    def _serve(self, request, name: str, command: dict) -> bool:
        if name in HANDSHAKE:
            return request.reply(HELLO)
        if name == "saslstart":
            return self._sasl_start(request, command)
        if name == "saslcontinue":
            return self._sasl_continue(request, command)
        return request.reply({})    # ping, buildInfo, endSessions

    def _sasl_start(self, request, command: dict) -> bool:
        if self.refuse_login or command.get("mechanism") != "SCRAM-SHA-256":
            return request.command_err(AUTHENTICATION_FAILED, "Authentication failed.", codeName="AuthenticationFailed")
        client_first_bare = bytes(command["payload"]).decode().split(",", 2)[2]
        fields = dict(part.split("=", 1) for part in client_first_bare.split(","))
        if fields["n"] != self.user:
            return request.command_err(AUTHENTICATION_FAILED, "Authentication failed.", codeName="AuthenticationFailed")
        nonce = fields["r"] + base64.b64encode(os.urandom(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(self._salt).decode()},i={ITERATIONS}"
        self._logins[request.client_port] = (client_first_bare, server_first)
        return request.reply({"conversationId": 1, "done": False, "payload": Binary(server_first.encode())})

    def _sasl_continue(self, request, command: dict) -> bool:
        client_first_bare, server_first = self._logins.pop(request.client_port)
        client_final = bytes(command["payload"]).decode()
        without_proof, _, proof = client_final.rpartition(",p=")
        auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
        stored_key = hashlib.sha256(_hmac(self._salted, b"Client Key")).digest()
        signature = _hmac(stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
            return request.command_err(AUTHENTICATION_FAILED, "Authentication failed.", codeName="AuthenticationFailed")
        verifier = base64.b64encode(_hmac(_hmac(self._salted, b"Server Key"), auth_message)).decode()
        return request.reply({"conversationId": 1, "done": True, "payload": Binary(f"v={verifier}".encode())})
