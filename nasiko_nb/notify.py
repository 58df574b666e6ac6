"""Tell a chat channel when a run finds something: a short JSON summary posted to a webhook.

The payload has Slack's ``text`` field (so a Slack, Mattermost or Teams-compatible incoming webhook shows it
as it is) and the summary's fields for other receivers: cluster, runbook, outcome, the codes at or above the
chosen severity, and where the record is. A webhook URL is a credential (Slack's path is its token): it comes
from ``--notify`` or ``NASIKO_NOTIFY_URL`` and only its scheme and host are ever printed. Notifying is best
effort: a failure is one line on stderr, never a failed run.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from nasiko_nb.codes import SEVERITIES

URL_VARIABLE = "NASIKO_NOTIFY_URL"
THRESHOLDS = ("critical", "warning", "info")
TIMEOUT_S = 5.0
MAX_CODES_IN_TEXT = 8
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


class NotifyError(ValueError):
    """The webhook cannot be used as given (not http/https): one line, before anything runs."""


def webhook_url(given: str = "") -> str:
    """The webhook to post to: ``--notify``'s value, else ``$NASIKO_NOTIFY_URL``; empty: no notification."""
    url = given or os.environ.get(URL_VARIABLE, "")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):   # the rest of the URL may be its token: say only what is wrong
        raise NotifyError(f"--notify needs an http(s) URL, got {f'a {parts.scheme}: URL' if parts.scheme else 'no scheme'}")
    if not parts.hostname:
        raise NotifyError(f"--notify needs an http(s) URL with a host, got {parts.scheme}: without one")
    return url


def where(url: str) -> str:
    """What may be shown of a webhook: scheme and host, never the path or query that hold its token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


def codes_at(record: dict, threshold: str) -> dict[str, int]:
    """Cause codes with findings at or above ``threshold``, worst first, with their number of findings."""
    found = sorted((f for f in record.get("findings", []) if _RANK[f.get("severity", "ok")] <= _RANK[threshold]),
                   key=lambda f: (_RANK[f["severity"]], f["code"]))
    counts: dict[str, int] = {}
    for finding in found:
        counts[finding["code"]] = counts.get(finding["code"], 0) + 1
    return counts


def reaches(record: dict, threshold: str) -> bool:
    """Worth a message: a finding at or above ``threshold``, or a run that stopped with an error (a scheduled
    triage that cannot run is as urgent as a critical finding)."""
    return bool(codes_at(record, threshold)) or record.get("outcome") == "error"


def payload(record: dict, location: str, threshold: str) -> dict:
    """The summary: Slack's ``text`` plus the same facts as fields."""
    codes = codes_at(record, threshold)
    cluster = record.get("context") or "current context"
    listed = ", ".join(f"{code} ({n})" for code, n in list(codes.items())[:MAX_CODES_IN_TEXT])
    more = f" and {len(codes) - MAX_CODES_IN_TEXT} more" if len(codes) > MAX_CODES_IN_TEXT else ""
    text = f"{record.get('runbook', 'runbook')} on {cluster}: outcome {record.get('outcome', 'error')}"
    if listed:
        text += f"; {threshold} or worse: {listed}{more}"
    if record.get("error"):
        text += f"; stopped: {record['error']}"
    text += f". Record: {location}"
    return {"text": text, "cluster": cluster, "runbook": record.get("runbook", ""),
            "outcome": record.get("outcome", "error"), "codes": list(codes), "record": location}


def post(url: str, body: dict, timeout_s: float = TIMEOUT_S) -> str:
    """POST ``body`` as JSON; "" when the webhook took it, else one line saying why not (never the URL's path)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read(1024)
        return ""
    except urllib.error.HTTPError as exc:
        return f"{where(url)} answered HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"{where(url)} could not be reached: {getattr(exc.reason, 'strerror', None) or exc.reason}"
    except (TimeoutError, OSError) as exc:
        return f"{where(url)} could not be reached: {type(exc).__name__}"


def notify(url: str, record: dict, location: str, threshold: str) -> tuple[bool, str]:
    """Post the run's summary if it reaches ``threshold``: (False, "") when there was nothing to send, else
    (sent, a line for the user saying so or why not)."""
    if not url or not reaches(record, threshold):
        return False, ""
    problem = post(url, payload(record, location, threshold))
    if problem:
        return False, f"notification not sent: {problem}; the run's result stands"
    return True, f"notified {where(url)} ({threshold} or worse)"
