"""Where incident records are kept: a local folder or ``s3://bucket/prefix``, written once, read back by ``incidents``.

A record is three files sharing one ID (the stem ``<UTC timestamp>-<runbook>``): ``.ipynb``, ``.html`` and
``.json``. They are stored in that order, the JSON last: listing reads only the JSON files, so a record whose
storing was interrupted is never listed, and the files already stored are removed again.

Records are never overwritten. Locally, each file is linked into place (a link fails when the name exists).
On S3 (AWS, DigitalOcean Spaces or any S3-compatible store, through boto3), free names are looked up first
and every object is put with ``If-None-Match: *``, so a writer racing for the same name loses cleanly and
takes the next one. The S3 endpoint comes from ``NASIKO_S3_ENDPOINT_URL`` (else boto3's own
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``), credentials from the standard AWS chain; the archive needs
``s3:ListBucket``, ``s3:GetObject``, ``s3:PutObject`` and ``s3:DeleteObject`` (to take back a half-stored record).

Before a record leaves the run's scratch folder it is scanned once more: if scrubbing would change any of its
files, or one holds the value of a credential in this process's environment, nothing is stored.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from nasiko_nb.redact import scrub

SUFFIXES = (".ipynb", ".html", ".json")   # the order files are stored in: the JSON, which listing reads, last
RECORD_ID = re.compile(r"^(?P<when>\d{8}T\d{6}Z)-[A-Za-z0-9._-]+$")
CONTENT_TYPES = {".ipynb": "application/x-ipynb+json", ".html": "text/html; charset=utf-8",
                 ".json": "application/json"}
MAX_SAME_NAME = 100          # records sharing one stem (same second, same runbook) before giving up
S3_PAGE_SIZE = 1000          # keys per listing request (S3's maximum)
S3_READERS = 8               # JSON records fetched in parallel by ``list``
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 60
S3_MAX_ATTEMPTS = 3          # the first try and two retries
_ENV_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD", re.IGNORECASE)
_ENV_NOT_SECRET = re.compile(r"_(FILE|PATH|DIR|URL|URI)$", re.IGNORECASE)   # where a secret is, not the secret
# credential-shaped: long, one word, letters and digits (moto's "testing" or a namespace name would otherwise
# refuse records over ordinary words)
_CREDENTIAL_SHAPE = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])\S{16,}$")
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
           "InvalidClientTokenId", "AuthorizationHeaderMalformed", "403"}
_NAME_TAKEN = {"PreconditionFailed", "ConditionalRequestConflict"}


class ArchiveError(ValueError):
    """The archive cannot be used as asked (unreachable, unauthorised, no such bucket or record): one line."""


@dataclass(frozen=True)
class StoredRecord:
    id: str
    locations: dict[str, str]   # suffix -> local path or s3:// URL


@dataclass(frozen=True)
class Incident:
    """One stored record as ``incidents`` shows it."""

    id: str
    record: dict

    @property
    def when(self) -> datetime:
        return when_of(self.id)

    @property
    def codes(self) -> list[str]:
        return list(dict.fromkeys(f["code"] for f in self.record.get("findings", []) if f.get("severity") != "ok"))

    @property
    def applied_changes(self) -> int:
        return sum(1 for change in self.record.get("changes", []) if not change.get("diagnostic"))


@dataclass(frozen=True)
class FindingsDiff:
    appeared: list[dict]
    disappeared: list[dict]
    stayed: list[dict]


def when_of(record_id: str) -> datetime:
    return datetime.strptime(RECORD_ID.match(record_id)["when"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def open_archive(location: str | os.PathLike | Archive) -> Archive:
    """The archive at ``s3://bucket/prefix`` or in a local folder (an Archive is returned as it is)."""
    if isinstance(location, Archive):
        return location
    text = str(location)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://"):].partition("/")
        if not bucket:
            raise ArchiveError(f"{text}: name a bucket, as in s3://bucket/prefix")
        return S3Archive(bucket, prefix.strip("/"))
    if re.match(r"^[a-z][a-z0-9+.-]*://", text):
        raise ArchiveError(f"{text}: an archive is a local folder or s3://bucket/prefix")
    return LocalArchive(Path(text))


def ensure_scrubbed(path: Path) -> None:
    """Refuse a record file that still holds secret-shaped text or a credential of this process's environment."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if scrub(text, environment_secrets()) != text:
        raise ArchiveError(f"{path.name} still contains text that looks like secret material; not stored")


def environment_secrets() -> list[str]:
    """Credential-shaped values of this process's credential-named environment variables (e.g. the S3 secret key)."""
    return [value for name, value in os.environ.items()
            if _ENV_SECRET_NAME.search(name) and not _ENV_NOT_SECRET.search(name) and _CREDENTIAL_SHAPE.match(value)]


def parse_when(text: str, *, end_of_day: bool = False) -> datetime:
    """A ``--since``/``--until`` value (a date or an ISO time, UTC unless it says otherwise).

    A bare date given as ``--until`` means the end of that day, so ``--until 2026-11-26`` includes it.
    """
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            day = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time(), timezone.utc)
            return day + timedelta(days=1) if end_of_day else day
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ArchiveError(f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def list_incidents(archive: Archive, *, since: datetime | None = None, until: datetime | None = None,
                   code: str = "", agent: str = "", runbook: str = "", context: str = "") -> list[Incident]:
    """Records oldest first, filtered; the time window is applied to the IDs before any record is read."""
    ids = [i for i in archive.ids() if (since is None or when_of(i) >= since) and (until is None or when_of(i) < until)]
    incidents = [Incident(i, record) for i, record in zip(ids, archive.read_records(ids))]
    return [incident for incident in incidents
            if (not code or any(_code_matches(c, code) for c in incident.codes))
            and (not agent or _mentions_agent(incident.record, agent))
            and (not runbook or _runbook_matches(incident.record.get("runbook", ""), runbook))
            and (not context or incident.record.get("context") == context)]


def _code_matches(found: str, wanted: str) -> bool:
    """A code, or a family: ``image-pull`` and ``image-pull/*`` both match ``image-pull/unauthorized``."""
    family = wanted.removesuffix("*").removesuffix("/")
    return found == wanted or found.startswith(family + "/")


def _mentions_agent(record: dict, agent: str) -> bool:
    if record.get("parameters", {}).get("agent") == agent:
        return True
    return any(agent in finding.get("resource", "") or agent in finding.get("message", "")
               for finding in record.get("findings", []))


def _runbook_matches(record_runbook: str, wanted: str) -> bool:
    slug = record_runbook.split("-", 1)[1] if record_runbook[:2].isdigit() else record_runbook
    return wanted in (record_runbook, slug, record_runbook[:2])


def diff_findings(before: dict, after: dict) -> FindingsDiff:
    """Findings of two records matched by (code, resource): what appeared, disappeared and stayed."""
    def keyed(record):
        return {(f["code"], f["resource"]): f for f in record.get("findings", [])}

    old, new = keyed(before), keyed(after)
    return FindingsDiff(appeared=[new[k] for k in new if k not in old],
                        disappeared=[old[k] for k in old if k not in new],
                        stayed=[new[k] for k in new if k in old])


def candidate_stems(stem: str):
    """``stem``, ``stem-2``, ``stem-3``, ...: the names a record may take when an earlier one holds its stem."""
    yield stem
    for n in range(2, MAX_SAME_NAME + 1):
        yield f"{stem}-{n}"


class Archive:
    """What both kinds of archive share: IDs, prefix lookup, record reading, export."""

    def check(self) -> None:
        """Raise ArchiveError unless records can be stored here; called before a run starts."""
        raise NotImplementedError

    def store(self, stem: str, files: dict[str, Path]) -> StoredRecord:
        """Store the three files (keyed by suffix) under ``stem`` or the first free name after it."""
        raise NotImplementedError

    def ids(self) -> list[str]:
        """The IDs of the records here (those whose JSON is stored), oldest first."""
        raise NotImplementedError

    def read_bytes(self, record_id: str, suffix: str) -> bytes:
        raise NotImplementedError

    def location_of(self, record_id: str, suffix: str) -> str:
        raise NotImplementedError

    def read_records(self, ids: list[str]) -> list[dict]:
        return [self.read_record(i) for i in ids]

    def read_record(self, record_id: str) -> dict:
        try:
            return json.loads(self.read_bytes(record_id, ".json"))
        except ValueError:
            raise ArchiveError(f"{self.location_of(record_id, '.json')} is not a JSON record") from None

    def resolve(self, wanted: str) -> str:
        """The ID ``wanted`` names, exactly or as a unique prefix."""
        ids = self.ids()
        if wanted in ids:
            return wanted
        matches = [i for i in ids if i.startswith(wanted)] if wanted else []
        if not matches:
            raise ArchiveError(f"no record {wanted!r} in {self}")
        if len(matches) > 1:
            shown = ", ".join(matches[:3]) + (f" and {len(matches) - 3} more" if len(matches) > 3 else "")
            raise ArchiveError(f"record ID {wanted!r} is ambiguous in {self}: {shown}")
        return matches[0]

    def export(self, record_id: str, suffix: str, to: Path | None = None) -> Path:
        """Write one file of a record to ``to`` (a file, or a folder to put it in); never replaces a file."""
        target = Path(to) if to is not None else Path.cwd()
        if target.is_dir():
            target = target / f"{record_id}{suffix}"
        data = self.read_bytes(record_id, suffix)
        try:
            with open(target, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            raise ArchiveError(f"{target} exists; not overwritten") from None
        except OSError as exc:
            raise ArchiveError(f"cannot write {target}: {exc.strerror or exc}") from None
        return target


class LocalArchive(Archive):
    def __init__(self, directory: Path):
        self.directory = directory

    def __str__(self) -> str:
        return str(self.directory)

    def check(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveError(f"{self}: cannot create the folder: {exc.strerror or exc}") from None
        if not os.access(self.directory, os.W_OK):
            raise ArchiveError(f"{self}: the folder is not writable")

    def store(self, stem: str, files: dict[str, Path]) -> StoredRecord:
        for path in files.values():
            ensure_scrubbed(path)
        self.check()
        for candidate in candidate_stems(stem):
            placed: list[Path] = []
            try:
                for suffix in SUFFIXES:
                    target = self.directory / f"{candidate}{suffix}"
                    _link_copy(files[suffix], target)
                    placed.append(target)
            except FileExistsError:
                _remove(placed)
                continue
            except BaseException as exc:
                _remove(placed)
                if isinstance(exc, OSError):
                    raise ArchiveError(f"{self}: cannot store {candidate}: {exc.strerror or exc}") from None
                raise
            return StoredRecord(candidate, {suffix: self.location_of(candidate, suffix) for suffix in SUFFIXES})
        raise ArchiveError(f"{self}: {MAX_SAME_NAME} records are already named {stem}")

    def ids(self) -> list[str]:
        if not self.directory.is_dir():
            raise ArchiveError(f"{self}: no such folder")
        return sorted(path.stem for path in self.directory.glob("*.json") if RECORD_ID.match(path.stem))

    def read_bytes(self, record_id: str, suffix: str) -> bytes:
        try:
            return (self.directory / f"{record_id}{suffix}").read_bytes()
        except FileNotFoundError:
            raise ArchiveError(f"{self.location_of(record_id, suffix)} does not exist") from None

    def location_of(self, record_id: str, suffix: str) -> str:
        return str(self.directory / f"{record_id}{suffix}")

    def export(self, record_id: str, suffix: str, to: Path | None = None) -> Path:
        """Without ``to``, the record's own file: it is already on this machine."""
        if to is None:
            path = self.directory / f"{record_id}{suffix}"
            if not path.is_file():
                raise ArchiveError(f"{path} does not exist")
            return path
        return super().export(record_id, suffix, to)


def _link_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to a hidden file beside ``target``, then link it into place: a complete file or none,
    and FileExistsError instead of replacing an existing one."""
    handle, scratch = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.link(scratch, target)
    finally:
        os.unlink(scratch)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class S3Archive(Archive):
    def __init__(self, bucket: str, prefix: str):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix
        config = Config(connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_READ_TIMEOUT_S,
                        retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
                        # S3-compatible stores (Spaces, older MinIO) reject the checksums boto3 adds by default
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        endpoint = os.environ.get("NASIKO_S3_ENDPOINT_URL") or None
        try:   # a session of its own: boto3's default one keeps the credentials it found first
            self.client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
        except Exception as exc:   # a malformed endpoint URL or profile: still one line
            raise ArchiveError(f"{self}: {_one_line(exc)}") from None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def check(self) -> None:
        self._call(self.client.list_objects_v2, Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1)

    def store(self, stem: str, files: dict[str, Path]) -> StoredRecord:
        for path in files.values():
            ensure_scrubbed(path)
        bodies = {suffix: files[suffix].read_bytes() for suffix in SUFFIXES}
        taken = self._names(stem)
        for candidate in candidate_stems(stem):
            if any(f"{candidate}{suffix}" in taken for suffix in SUFFIXES):
                continue
            if self._put_record(candidate, bodies):
                return StoredRecord(candidate, {suffix: self.location_of(candidate, suffix) for suffix in SUFFIXES})
        raise ArchiveError(f"{self}: {MAX_SAME_NAME} records are already named {stem}")

    def _put_record(self, stem: str, bodies: dict[str, bytes]) -> bool:
        """Put the three objects, none replacing another; False when another writer holds the name first.

        Whatever stops it half-way (an error, an interruption) takes back the objects already put.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        put: list[str] = []
        try:
            for suffix in SUFFIXES:
                key = self._key(f"{stem}{suffix}")
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bodies[suffix],
                                       ContentType=CONTENT_TYPES[suffix], IfNoneMatch="*")
                put.append(key)
        except BaseException as exc:
            left = self._delete(put)
            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _NAME_TAKEN and not left:
                return False
            if isinstance(exc, (ClientError, BotoCoreError)):
                problem = self._problem(exc)
                if left:
                    problem += f"; could not remove the partial record, delete by hand: {', '.join(left)}"
                raise ArchiveError(f"{self}: storing {stem} failed: {problem}") from None
            raise
        return True

    def _delete(self, keys: list[str]) -> list[str]:
        """Delete ``keys``; returns those that could not be deleted."""
        left = []
        for key in keys:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except Exception:
                left.append(key)
        return left

    def _names(self, starting_with: str = "") -> set[str]:
        """Names (keys without the prefix) directly under the prefix, from every page of the listing."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key(starting_with), Delimiter="/",
                                   PaginationConfig={"PageSize": S3_PAGE_SIZE})
        names = set()
        for page in self._call(list, pages):
            names |= {item["Key"][len(self._key("")):] for item in page.get("Contents", [])}
        return names

    def ids(self) -> list[str]:
        return sorted(name.removesuffix(".json") for name in self._names()
                      if name.endswith(".json") and RECORD_ID.match(name.removesuffix(".json")))

    def read_bytes(self, record_id: str, suffix: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(f"{record_id}{suffix}"))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ArchiveError(f"{self.location_of(record_id, suffix)} does not exist") from None
            raise ArchiveError(f"{self}: {self._problem(exc)}") from None
        except BotoCoreError as exc:
            raise ArchiveError(f"{self}: {self._problem(exc)}") from None

    def read_records(self, ids: list[str]) -> list[dict]:
        with ThreadPoolExecutor(max_workers=S3_READERS) as pool:
            return list(pool.map(self.read_record, ids))

    def location_of(self, record_id: str, suffix: str) -> str:
        return f"s3://{self.bucket}/{self._key(record_id + suffix)}"

    def _call(self, function, *args, **kwargs):
        """Call boto3, turning its errors into one line that names this archive."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return function(*args, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise ArchiveError(f"{self}: {self._problem(exc)}") from None

    def _problem(self, exc: Exception) -> str:
        """What went wrong, in the user's terms."""
        from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError,
                                         EndpointConnectionError, NoCredentialsError, ParamValidationError,
                                         ReadTimeoutError)

        endpoint = self.client.meta.endpoint_url
        if isinstance(exc, NoCredentialsError):
            return "no AWS credentials found (environment, shared credentials file, profile or instance role)"
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)):
            return f"cannot reach the S3 endpoint {endpoint} (after {S3_MAX_ATTEMPTS} attempts)"
        if isinstance(exc, ReadTimeoutError):
            return f"the S3 endpoint {endpoint} did not answer within {S3_READ_TIMEOUT_S}s"
        if isinstance(exc, ParamValidationError):
            return f"invalid S3 request: {_one_line(exc)}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code, message = error.get("Code", ""), error.get("Message", "")
            if code == "NoSuchBucket":
                return f"bucket {self.bucket!r} does not exist at {endpoint}"
            if code in _DENIED:
                return (f"access denied by {endpoint} ({code}: {message or 'Forbidden'}); check the credentials of "
                        f"the AWS credential chain and their permissions on the bucket")
            return f"{code}: {message}" if message else code
        return _one_line(exc)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
