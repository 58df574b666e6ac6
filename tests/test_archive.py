"""The incident archive: runs stored in S3 (moto, server mode) and in a local folder, read back by ``incidents``;
records never overwritten, never half-written, never holding a secret; bad input in one line."""
import json
import re
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest

from nasiko_nb import archive, sim
from nasiko_nb.archive import SUFFIXES, ArchiveError, LocalArchive, S3Archive, open_archive
from nasiko_nb.cli import main
from tests.s3_server import s3_with_bucket
from tests.secrets_check import leaked_in

BUCKET = "nasiko-incidents"
PREFIX = "prod/eu-1"
LOCATION = f"s3://{BUCKET}/{PREFIX}"
CONTEXT = "prod-eu-1"
MISSING_SECRET = "image-pull/missing-pull-secret"


@dataclass
class Runs:
    """Three runs against a platform whose agent lacks its pull secret: triage, the confirmed fix, triage again."""

    before: str
    fix: str
    after: str
    deployment: str
    secret_values: tuple

    @property
    def ids(self) -> list[str]:
        return [self.before, self.fix, self.after]


@pytest.fixture(scope="module")
def s3():
    with s3_with_bucket(BUCKET) as server:
        yield server


@pytest.fixture(autouse=True)
def s3_environment(s3, monkeypatch):
    for name, value in s3.environment().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory) -> Runs:
    server = sim.start("image-pull-missing-secret")
    try:
        kubeconfig = str(server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", context=CONTEXT))
        [deployment] = [d["metadata"]["name"] for d in server.store.list("apps/v1", "Deployment", "nasiko-agents")
                        if not d["spec"]["template"]["spec"].get("imagePullSecrets")]
        with pytest.MonkeyPatch.context() as env:
            for name, value in {**server.environment(), **s3.environment()}.items():
                env.setenv(name, value)
            assert main(["triage", "--kubeconfig", kubeconfig, "--output", LOCATION]) == 0
            assert main(["run", "05", "--kubeconfig", kubeconfig, "--output", LOCATION,
                         "-p", "dry_run", "false", "-p", "confirm", deployment]) == 0
            assert main(["triage", "--kubeconfig", kubeconfig, "--output", LOCATION]) == 0
            before, fix, after = open_archive(LOCATION).ids()
        return Runs(before, fix, after, deployment, server.secret_values())
    finally:
        server.stop()


@pytest.fixture(scope="module")
def local_copy(runs, s3, tmp_path_factory) -> Path:
    """The same records in a local folder, stored through the local archive."""
    folder, scratch = tmp_path_factory.mktemp("incidents"), tmp_path_factory.mktemp("download")
    with pytest.MonkeyPatch.context() as env:
        for name, value in s3.environment().items():
            env.setenv(name, value)
        for record_id in runs.ids:
            files = download(open_archive(LOCATION), record_id, scratch)
            assert LocalArchive(folder).store(record_id, files).id == record_id
    return folder


@pytest.fixture(params=["s3", "local"])
def location(request) -> str:
    return LOCATION if request.param == "s3" else str(request.getfixturevalue("local_copy"))


def download(source, record_id: str, folder: Path) -> dict[str, Path]:
    files = {}
    for suffix in SUFFIXES:
        files[suffix] = folder / f"{record_id}{suffix}"
        files[suffix].write_bytes(source.read_bytes(record_id, suffix))
    return files


def one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def listed(capsys, location: str, *filters: str) -> list[str]:
    """The record IDs ``incidents list`` shows."""
    assert main(["incidents", "list", "--output", location, *filters]) == 0
    return re.findall(r"^(\d{8}T\d{6}Z-\S+)", capsys.readouterr().out, re.MULTILINE)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # closed again when the block ends: nothing listens there


# --- storing ---------------------------------------------------------------------------------------------------

def test_each_run_is_three_objects_under_the_prefix(runs, s3):
    assert s3.keys(BUCKET) == sorted(f"{PREFIX}/{i}{suffix}" for i in runs.ids for suffix in SUFFIXES)
    head = s3.client().head_object(Bucket=BUCKET, Key=f"{PREFIX}/{runs.before}.json")
    assert head["ContentType"] == "application/json"
    record = json.loads(s3.client().get_object(Bucket=BUCKET, Key=f"{PREFIX}/{runs.fix}.json")["Body"].read())
    assert record["runbook"] == "05-image-pull-backoff" and record["outcome"] == "changed"


def test_records_in_s3_hold_no_secret(runs, s3):
    for key in s3.keys(BUCKET, PREFIX):
        text = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        assert leaked_in(text, runs.secret_values) == [], key


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_two_records_in_the_same_second_are_both_kept(kind, runs, s3, tmp_path):
    target = open_archive(f"s3://{BUCKET}/same-second" if kind == "s3" else tmp_path / "incidents")
    source = open_archive(LOCATION)
    first_files = download(source, runs.before, tmp_path)
    second_files = download(source, runs.fix, tmp_path)
    stem = runs.before   # both claim the same stem, as two runs started in the same second would
    first, second = target.store(stem, first_files), target.store(stem, second_files)
    assert (first.id, second.id) == (stem, f"{stem}-2")
    assert target.ids() == [first.id, second.id]
    assert target.read_bytes(first.id, ".json") == first_files[".json"].read_bytes()
    assert target.read_bytes(second.id, ".json") == second_files[".json"].read_bytes()


def test_a_racing_writer_cannot_overwrite(runs, s3, tmp_path, monkeypatch):
    """The name is looked up free, but another writer has put it since: If-None-Match refuses, the next name is taken."""
    target = open_archive(f"s3://{BUCKET}/race")
    files = download(open_archive(LOCATION), runs.before, tmp_path)
    original = target.store(runs.before, files)
    monkeypatch.setattr(S3Archive, "_names", lambda self, starting_with="": set())
    files[".json"].write_text('{"runbook": "the later writer"}')
    later = target.store(runs.before, files)
    assert later.id == f"{runs.before}-2"
    assert target.read_bytes(original.id, ".json") == open_archive(LOCATION).read_bytes(runs.before, ".json")
    assert len(s3.keys(BUCKET, "race/")) == 6


# --- reading back ----------------------------------------------------------------------------------------------

def test_list_shows_one_row_per_run(location, runs, capsys, monkeypatch):
    monkeypatch.setattr(archive, "S3_PAGE_SIZE", 2)   # 9 objects: the listing has to follow 5 pages
    assert main(["incidents", "list", "--output", location]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["id", "when", "(UTC)"] and "cause codes" in header and "changes" in header
    assert [row.split()[0] for row in rows] == runs.ids
    before, fix, after = rows
    assert f"{CONTEXT}  00-triage" in before and "critical" in before and MISSING_SECRET in before
    assert f"{CONTEXT}  05-image-pull-backoff" in fix and "changed" in fix and fix.split()[-1] == "1"
    assert after.split()[-1] == "0" and MISSING_SECRET not in after


def test_list_filters(location, runs, capsys):
    day = archive.when_of(runs.before).date()
    assert listed(capsys, location, "--runbook", "05") == [runs.fix]
    assert listed(capsys, location, "--runbook", "image-pull-backoff") == [runs.fix]
    assert listed(capsys, location, "--runbook", "00-triage") == [runs.before, runs.after]
    assert runs.before in listed(capsys, location, "--code", MISSING_SECRET)
    assert runs.after not in listed(capsys, location, "--code", "image-pull")
    assert runs.before in listed(capsys, location, "--agent", "weather-agent")
    assert listed(capsys, location, "--agent", "no-such-agent") == []
    assert listed(capsys, location, "--context", CONTEXT) == runs.ids
    assert listed(capsys, location, "--context", "staging") == []
    assert listed(capsys, location, "--since", str(day), "--until", str(day)) == runs.ids
    assert listed(capsys, location, "--since", str(day + timedelta(days=1))) == []
    assert listed(capsys, location, "--until", str(day - timedelta(days=1))) == []
    assert main(["incidents", "list", "--output", location, "--context", "staging"]) == 0
    assert "no records" in capsys.readouterr().out


def test_show_summarises_a_record_by_unique_prefix(location, runs, capsys):
    prefix = runs.fix[:len("20261126T101121Z-05")]
    assert main(["incidents", "show", prefix, "--output", location]) == 0
    out = capsys.readouterr().out
    assert out.startswith(runs.fix + "\n")
    assert "05-image-pull-backoff (mutating)" in out and CONTEXT in out and "outcome     changed" in out
    assert "dry_run=False" in out and f"confirm='{runs.deployment}'" in out
    assert "changes (1):" in out and f"patch  Deployment nasiko-agents/{runs.deployment}" in out
    assert re.search(r"critical\s+" + re.escape(MISSING_SECRET) + r"\s+Pod nasiko-agents/", out)
    assert f"{runs.fix}.html" in out


def test_export_writes_the_report_view_and_the_notebook(location, runs, tmp_path, capsys, monkeypatch):
    source = open_archive(location)
    assert main(["incidents", "export", runs.before, "--html", "--to", str(tmp_path / "report.html"),
                 "--output", location]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert html.encode() == source.read_bytes(runs.before, ".html")
    assert MISSING_SECRET in html and "run.snapshot(" not in html   # report view: code hidden

    assert main(["incidents", "export", runs.before, "--ipynb", "--to", str(tmp_path), "--output", location]) == 0
    notebook = tmp_path / f"{runs.before}.ipynb"
    assert capsys.readouterr().out.strip() == str(notebook)
    assert nbformat.read(notebook, as_version=4).metadata["nasiko"]["runbook"] == "00-triage"
    err = one_line_error(capsys, main(["incidents", "export", runs.before, "--ipynb", "--to", str(tmp_path),
                                       "--output", location]))
    assert "exists; not overwritten" in err

    monkeypatch.chdir(tmp_path)
    assert main(["incidents", "export", runs.after, "--html", "--output", location]) == 0
    printed = Path(capsys.readouterr().out.strip())
    expected = Path(location if location != LOCATION else tmp_path) / f"{runs.after}.html"
    assert printed == expected and printed.read_bytes() == source.read_bytes(runs.after, ".html")


def test_diff_between_runs(location, runs, capsys):
    assert main(["incidents", "diff", runs.before, runs.after, "--output", location]) == 0
    out = capsys.readouterr().out
    disappeared = out[out.index("disappeared ("):out.index("stayed (")]
    assert MISSING_SECRET in disappeared and "appeared (0):" in out
    assert main(["incidents", "diff", runs.before, runs.before, "--output", location]) == 0
    out = capsys.readouterr().out
    assert "appeared (0):" in out and "disappeared (0):" in out
    assert re.search(r"=\s+critical\s+" + re.escape(MISSING_SECRET), out)


# --- bad input -------------------------------------------------------------------------------------------------

def test_unreachable_endpoint(capsys, monkeypatch):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("NASIKO_S3_ENDPOINT_URL", endpoint)
    started = time.monotonic()
    err = one_line_error(capsys, main(["demo", "--output", LOCATION]))
    assert f"cannot reach the S3 endpoint {endpoint}" in err and LOCATION in err
    err = one_line_error(capsys, main(["incidents", "list", "--output", LOCATION]))
    assert "cannot reach" in err
    assert time.monotonic() - started < 20   # bounded retries, short connect timeout


def test_bucket_that_does_not_exist(capsys):
    err = one_line_error(capsys, main(["demo", "--output", "s3://no-such-bucket-here/records"]))
    assert "bucket 'no-such-bucket-here' does not exist" in err
    err = one_line_error(capsys, main(["incidents", "list", "--output", "s3://no-such-bucket-here"]))
    assert "does not exist" in err


@pytest.fixture(scope="module")
def users(s3):
    """IAM users made while moto does not enforce IAM yet."""
    archive_bucket = f"arn:aws:s3:::{BUCKET}"
    return {"nobody": s3.user("nobody", []),
            "reader": s3.user("reader", [{"Action": ["s3:ListBucket", "s3:GetObject"], "Resource": [
                archive_bucket, f"{archive_bucket}/*"]}]),
            # may store notebooks under half/ but nothing else there: the HTML, second of three, is refused
            "half-writer": s3.user("half-writer", [
                {"Action": "s3:ListBucket", "Resource": archive_bucket},
                {"Action": "s3:PutObject", "Resource": f"{archive_bucket}/half/*.ipynb"},
                {"Action": "s3:DeleteObject", "Resource": f"{archive_bucket}/half/*"}])}


@pytest.mark.parametrize("case, code", [("unknown key", "InvalidAccessKeyId"), ("wrong secret", "SignatureDoesNotMatch"),
                                        ("no permission", "AccessDenied")])
def test_unauthorised(case, code, users, s3, runs, capsys, monkeypatch):
    reader_key, _ = users["reader"]
    key_id, secret = {"unknown key": ("AKIAUNKNOWNUNKNOWN12", "x" * 40), "wrong secret": (reader_key, "x" * 40),
                      "no permission": users["nobody"]}[case]
    for name, value in s3.environment(key_id, secret).items():
        monkeypatch.setenv(name, value)
    with s3.iam_enforced():
        err = one_line_error(capsys, main(["incidents", "list", "--output", LOCATION]))
    assert f"access denied by {s3.endpoint_url} ({code}" in err and LOCATION in err


def test_reading_needs_only_list_and_get(users, s3, runs, capsys, monkeypatch):
    for name, value in s3.environment(*users["reader"]).items():
        monkeypatch.setenv(name, value)
    with s3.iam_enforced():
        assert listed(capsys, LOCATION) == runs.ids
        assert main(["incidents", "show", runs.fix, "--output", LOCATION]) == 0
    assert capsys.readouterr().out.startswith(runs.fix)


def test_a_store_refused_half_way_leaves_nothing_and_keeps_the_record_locally(users, s3, capsys, monkeypatch):
    for name, value in s3.environment(*users["half-writer"]).items():
        monkeypatch.setenv(name, value)
    with s3.iam_enforced():
        err = one_line_error(capsys, main(["demo", "--output", f"s3://{BUCKET}/half"]))
    assert "storing" in err and "AccessDenied" in err
    assert s3.keys(BUCKET, "half/") == []
    kept = Path(err.rsplit("the record is kept in ", 1)[1])
    assert sorted(p.suffix for p in kept.iterdir()) == sorted(SUFFIXES)
    shutil.rmtree(kept)


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_secret_material_is_refused_before_anything_is_stored(kind, runs, s3, tmp_path, monkeypatch):
    target = open_archive(f"s3://{BUCKET}/refused" if kind == "s3" else tmp_path / "incidents")
    files = download(open_archive(LOCATION), runs.before, tmp_path)
    html = files[".html"].read_text()
    files[".html"].write_text(html.replace("</body>", '<pre>{"password": "hunter2-in-plain-text"}</pre></body>'))
    with pytest.raises(ArchiveError, match="looks like secret material"):
        target.store(runs.before, files)
    files[".html"].write_text(html)
    monkeypatch.setenv("NASIKO_CANARY_TOKEN", "c4n4ry7Qx9Lm2Vb8Zt5R")   # a credential this process holds
    files[".json"].write_text(files[".json"].read_text().replace("}", ', "note": "c4n4ry7Qx9Lm2Vb8Zt5R"}', 1))
    with pytest.raises(ArchiveError, match=f"{runs.before}.json still contains"):
        target.store(runs.before, files)
    assert s3.keys(BUCKET, "refused/") == [] if kind == "s3" else not (tmp_path / "incidents").exists()


def test_record_that_does_not_exist_or_is_ambiguous(location, runs, capsys):
    err = one_line_error(capsys, main(["incidents", "show", "20991231T000000Z", "--output", location]))
    assert f"no record '20991231T000000Z' in {location}" in err
    err = one_line_error(capsys, main(["incidents", "show", runs.before[:8], "--output", location]))
    assert "ambiguous" in err and runs.before in err
    err = one_line_error(capsys, main(["incidents", "export", "nope", "--html", "--output", location]))
    assert "no record 'nope'" in err
    err = one_line_error(capsys, main(["incidents", "diff", runs.before, "nope", "--output", location]))
    assert "no record 'nope'" in err


def test_bad_dates_and_missing_folders(capsys, tmp_path):
    err = one_line_error(capsys, main(["incidents", "list", "--output", LOCATION, "--since", "last tuesday"]))
    assert "'last tuesday' is not a date" in err
    err = one_line_error(capsys, main(["incidents", "list", "--output", str(tmp_path / "absent")]))
    assert f"{tmp_path / 'absent'}: no such folder" in err
    err = one_line_error(capsys, main(["incidents", "list", "--output", "gs://bucket/records"]))
    assert "a local folder or s3://bucket/prefix" in err
