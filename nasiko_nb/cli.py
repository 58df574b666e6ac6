"""``nasiko-nb``: list, run and archive runbooks; read the archive back; serve the simulated platform.

Bad input (unknown runbook or scenario, unusable kubeconfig, unreachable API server, wrong parameter
type, a confirm that does not name the target, an unreachable or unauthorised archive, an unknown record)
prints one line on stderr and exits non-zero before anything is changed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from nasiko_nb import archive, fleet, lab, notify, records, schedule
from nasiko_nb.cluster import DEFAULT_TIMEOUT_S, TIMEOUT_VARIABLE, ClusterError, connect
from nasiko_nb.records import RecordError

DEFAULT_OUTPUT = "incidents"
OUTPUT_HELP = "where records are kept: a local folder or s3://bucket/prefix (default: %(default)s)"
DEMO_SCENARIO = "image-pull-missing-secret"
INPUT_ERRORS = ("RunbookInputError", "ConfirmationError")
EXIT_BAD_INPUT, EXIT_RUN_FAILED = 2, 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (RecordError, ClusterError, ValueError, OSError) as exc:
        print(f"nasiko-nb: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasiko-nb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")

    listing = sub.add_parser("list", help="runbooks with title, side effects and parameters")
    listing.set_defaults(handler=cmd_list)

    run = sub.add_parser("run", help="execute a runbook headless and archive the record")
    run.add_argument("runbook")
    add_run_options(run)
    run.set_defaults(handler=cmd_run)

    triage = sub.add_parser("triage", help="run 00-triage (every detector) against a cluster")
    add_run_options(triage)
    triage.set_defaults(handler=cmd_triage)

    demo = sub.add_parser("demo", help="start the simulated platform and run triage against it")
    demo.add_argument("scenario", nargs="?", default=DEMO_SCENARIO)
    demo.add_argument("--output", default=DEFAULT_OUTPUT, metavar="LOCATION", help=OUTPUT_HELP)
    demo.set_defaults(handler=cmd_demo)

    sim = sub.add_parser("sim", help="serve the simulated platform until interrupted")
    sim.add_argument("scenario", nargs="?", default=None)
    sim.add_argument("--snapshot", type=Path)
    sim.add_argument("--writable", action="store_true", help="let clients change a replayed snapshot")
    sim.add_argument("--port", type=int, default=0)
    sim.add_argument("--write-kubeconfig", type=Path)
    sim.set_defaults(handler=cmd_sim)

    scenarios = sub.add_parser("scenarios", help="the simulated platform's named scenarios")
    scenarios.set_defaults(handler=cmd_scenarios)

    register_incidents(sub)
    schedule.register(sub)
    lab.register(sub)
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("-f", "--parameters-file", type=Path)
    parser.add_argument("--kubeconfig", default="")
    parser.add_argument("--context", action="append", default=[], metavar="NAME",
                        help="kubeconfig context (default: the current one); repeat it to run against several "
                             "clusters in parallel, one record each")
    parser.add_argument("--all-contexts", action="store_true", help="run against every context of the kubeconfig")
    parser.add_argument("--workers", type=int, default=fleet.MAX_WORKERS,
                        help="clusters run at once in a fleet run (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds to wait for the API server, also in the runbook (default: ${TIMEOUT_VARIABLE} or "
                             f"{DEFAULT_TIMEOUT_S:g})")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", metavar="SCENARIO")
    source.add_argument("--snapshot", type=Path, metavar="PATH")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="LOCATION", help=OUTPUT_HELP)
    parser.add_argument("--notify", default="", metavar="URL",
                        help=f"post a summary to this webhook when findings reach --notify-on (default: "
                             f"${notify.URL_VARIABLE}, which keeps the URL, a credential, off the command line)")
    parser.add_argument("--notify-on", choices=notify.THRESHOLDS, default="critical",
                        help="the least severity that sends a notification (default: %(default)s)")


def cmd_list(args) -> int:
    for info in records.runbooks():
        params = ", ".join(f"{k}={v!r}" for k, v in info.parameters.items() if k not in ("kubeconfig", "context"))
        print(f"{info.id:32} {info.side_effects:9} {info.title}\n{'':32} {params}")
    return 0


def cmd_scenarios(args) -> int:
    from nasiko_nb import sim

    for name, description in sim.SCENARIOS.items():
        print(f"{name:36} {description}")
    return 0


def cmd_run(args) -> int:
    return run_runbook(records.resolve(args.runbook), args)


def cmd_triage(args) -> int:
    return run_runbook(records.resolve("00-triage"), args)


def cmd_demo(args) -> int:
    args.demo, args.snapshot, args.kubeconfig, args.context, args.all_contexts = args.scenario, None, "", [], False
    args.parameter, args.parameters_file, args.timeout, args.notify, args.notify_on = [], None, None, "", "critical"
    return run_runbook(records.resolve("00-triage"), args)


def run_runbook(info: records.RunbookInfo, args) -> int:
    raw = {}
    if args.parameters_file:
        raw.update(_read_parameters_file(args.parameters_file))
    raw.update(dict(args.parameter))
    parameters = records.coerce_parameters(info, raw)
    webhook = notification_target(args.notify)
    destination = archive.open_archive(args.output)
    if args.timeout is not None and args.timeout <= 0:
        raise RecordError(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    with environment({TIMEOUT_VARIABLE: str(args.timeout)} if args.timeout else {}):
        if len(args.context) > 1 or args.all_contexts:
            return run_fleet(info, args, parameters, destination, webhook)
        return run_single(info, args, parameters, destination, webhook)


def run_single(info: records.RunbookInfo, args, parameters: dict, destination: archive.Archive, webhook: str) -> int:
    with connection(args) as (kubeconfig, context):
        started = time.monotonic()
        result = records.execute(info, destination, parameters, kubeconfig=kubeconfig, context=context)
    print_result(result, time.monotonic() - started)
    report_notification(*notify.notify(webhook, result.record, result.html, args.notify_on))
    if result.error:
        print(f"nasiko-nb: {info.id} stopped: {result.error}", file=sys.stderr)
        return EXIT_BAD_INPUT if result.error.startswith(INPUT_ERRORS) else EXIT_RUN_FAILED
    return 0


def run_fleet(info: records.RunbookInfo, args, parameters: dict, destination: archive.Archive, webhook: str) -> int:
    """Every named context in parallel; exit 0 when every cluster has its record (an unreachable one included)."""
    from tqdm import tqdm

    if args.demo or args.snapshot:
        raise RecordError("--demo and --snapshot serve one cluster; a fleet is the contexts of a kubeconfig")
    if args.workers < 1:
        raise RecordError(f"--workers must be at least 1, got {args.workers}")
    contexts = fleet.fleet_contexts(args.kubeconfig, args.context, args.all_contexts)
    fleet.check_read_only(info, parameters)
    destination.check()
    started = time.monotonic()
    # a bar on a terminal; in a log (CI, a CronJob) the numbered line per cluster is the progress
    with tqdm(total=len(contexts), desc=info.id, unit="cluster", file=sys.stderr,
              disable=not sys.stderr.isatty()) as bar:
        finished = []

        def on_done(run: fleet.ClusterRun) -> None:
            finished.append(run)
            bar.write(f"[{len(finished)}/{len(contexts)}] {run.context}: "
                      f"{run.error if run.failed else 'outcome ' + run.outcome} ({run.seconds:.1f}s)", file=sys.stderr)
            if run.result:
                sent, line = notify.notify(webhook, run.record, run.result.html, args.notify_on)
                if line:
                    bar.write(line if sent else f"nasiko-nb: {line}", file=sys.stderr)
            bar.update()

        runs = fleet.run_fleet(info, contexts, destination, parameters, kubeconfig=args.kubeconfig,
                               workers=args.workers, on_done=on_done)
    print(fleet.summary_line(info.id, runs, time.monotonic() - started))
    table = fleet.fleet_table(runs)
    print_table(list(table.columns), table.astype(str).values.tolist())
    print("records:")
    for run in runs:
        print(f"  {run.context}: {run.result.html if run.result else 'none: ' + run.error}")
    return EXIT_RUN_FAILED if any(run.failed for run in runs) else 0


def notification_target(given: str) -> str:
    """The webhook URL: a bad ``--notify`` stops the run before it starts; a bad ``$NASIKO_NOTIFY_URL`` (e.g. in a
    CronJob's Secret) only costs the notification, said in one line."""
    try:
        return notify.webhook_url(given)
    except notify.NotifyError as exc:
        if given:
            raise
        print(f"nasiko-nb: ${notify.URL_VARIABLE} ignored: {exc}", file=sys.stderr)
        return ""


def report_notification(sent: bool, line: str) -> None:
    if line:
        print(line if sent else f"nasiko-nb: {line}", file=sys.stdout if sent else sys.stderr)


def _read_parameters_file(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecordError(f"parameters file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RecordError(f"parameters file {path} must be a mapping of name: value")
    return data


@contextlib.contextmanager
def connection(args):
    """Yield (kubeconfig, context) for the run: a started emulator for --demo/--snapshot, else a checked kubeconfig."""
    if args.demo or args.snapshot:
        from nasiko_nb import sim

        with tempfile.TemporaryDirectory(prefix="nasiko-sim-") as tmp:
            server = sim.start(args.demo, args.snapshot)
            try:
                name = f"sim-{args.demo}" if args.demo else "sim-snapshot"
                with environment(server.environment()):
                    yield str(server.write_kubeconfig(Path(tmp) / "kubeconfig", context=name)), name
            finally:
                server.stop()
        return
    context = args.context[0] if args.context else ""
    cluster = connect(args.kubeconfig or None, context or None, timeout_s=args.timeout)
    yield args.kubeconfig, context or cluster.context


@contextlib.contextmanager
def environment(variables: dict[str, str]):
    """Set variables for the runbook kernels (they inherit this process's environment), then restore."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def print_result(result: records.RunResult, seconds: float) -> None:
    record = result.record
    findings = [f for f in record.get("findings", []) if f.get("severity") != "ok"]
    print(f"{record['runbook']} on {record.get('context') or 'current context'}: outcome {record['outcome']}, "
          f"{len(findings)} finding(s), {len(record.get('changes', []))} change(s), {seconds:.1f}s")
    if findings:
        import pandas as pd

        frame = pd.DataFrame(findings, columns=["severity", "code", "resource", "message"])
        with pd.option_context("display.max_colwidth", 90, "display.width", 200):
            print(frame.to_string(index=False))
    print(f"record: {result.notebook}")
    print(f"        {result.html}")
    print(f"        {result.json}")


def cmd_sim(args) -> int:
    from nasiko_nb import sim

    if args.scenario and args.snapshot:
        raise RecordError("give a scenario or --snapshot, not both")
    server = sim.start(args.scenario if not args.snapshot else None, args.snapshot, port=args.port,
                       writable_snapshot=args.writable)
    kubeconfig = args.write_kubeconfig or Path(tempfile.mkdtemp(prefix="nasiko-sim-")) / "kubeconfig"
    name = f"sim-{args.scenario or 'healthy'}" if not args.snapshot else "sim-snapshot"
    server.write_kubeconfig(kubeconfig, context=name)
    print(f"serving {name} at {server.url}", flush=True)
    print(f"kubeconfig: {kubeconfig}", flush=True)
    for variable, value in server.environment().items():
        if variable == "DIGITALOCEAN_TOKEN":   # a secret: written to a file, never printed
            token_file = kubeconfig.parent / "digitalocean-token"
            token_file.write_text(value)
            token_file.chmod(0o600)
            variable, value = "DIGITALOCEAN_TOKEN_FILE", str(token_file)
        print(f"export {variable}={value}", flush=True)
    print(f"try: kubectl --kubeconfig {kubeconfig} get pods -A", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def register_incidents(sub) -> None:
    """``nasiko-nb incidents list|show|export|diff``: the stored records, from a local folder or S3."""
    incidents = sub.add_parser("incidents", help="stored run records: list, show, export, diff")
    actions = incidents.add_subparsers(dest="action", required=True, metavar="{list,show,export,diff}")

    listing = actions.add_parser("list", help="a table of the records, oldest first")
    listing.add_argument("--since", metavar="DATE", help="from this date or time (UTC unless it says otherwise)")
    listing.add_argument("--until", metavar="DATE", help="up to this time, or through the end of this date")
    listing.add_argument("--code", default="", help="a cause code or a family (image-pull, image-pull/*)")
    listing.add_argument("--agent", default="", help="runs for this agent or whose findings name it")
    listing.add_argument("--runbook", default="", help="runbook id, slug or number")
    listing.add_argument("--context", default="", help="cluster context")
    listing.set_defaults(handler=cmd_incidents_list)

    show = actions.add_parser("show", help="a record's summary: parameters, findings, changes")
    show.add_argument("id", help="record ID (the file stem) or a unique prefix of it")
    show.set_defaults(handler=cmd_incidents_show)

    export = actions.add_parser("export", help="write a record's report view or executed notebook to a file")
    export.add_argument("id", help="record ID or a unique prefix of it")
    kind = export.add_mutually_exclusive_group(required=True)
    kind.add_argument("--html", dest="suffix", action="store_const", const=".html")
    kind.add_argument("--ipynb", dest="suffix", action="store_const", const=".ipynb")
    export.add_argument("--to", type=Path, metavar="PATH",
                        help="a file or folder (default: the current folder; a local archive's own file)")
    export.set_defaults(handler=cmd_incidents_export)

    diff = actions.add_parser("diff", help="findings that appeared, disappeared or stayed between two runs")
    diff.add_argument("before", help="record ID or a unique prefix of it")
    diff.add_argument("after", help="record ID or a unique prefix of it")
    diff.set_defaults(handler=cmd_incidents_diff)

    for action in (listing, show, export, diff):
        action.add_argument("--output", default=DEFAULT_OUTPUT, metavar="LOCATION", help=OUTPUT_HELP)


def cmd_incidents_list(args) -> int:
    source = archive.open_archive(args.output)
    since = archive.parse_when(args.since) if args.since else None
    until = archive.parse_when(args.until, end_of_day=True) if args.until else None
    found = archive.list_incidents(source, since=since, until=until, code=args.code, agent=args.agent,
                                   runbook=args.runbook, context=args.context)
    if not found:
        print(f"no records in {source} match" if any((since, until, args.code, args.agent, args.runbook, args.context))
              else f"no records in {source}")
        return 0
    print_table(["id", "when (UTC)", "context", "runbook", "outcome", "cause codes", "changes"],
                [[i.id, f"{i.when:%Y-%m-%d %H:%M:%S}", i.record.get("context") or "-", i.record.get("runbook", "?"),
                  i.record.get("outcome", "?"), ", ".join(i.codes) or "-", str(i.applied_changes)] for i in found])
    return 0


def cmd_incidents_show(args) -> int:
    source = archive.open_archive(args.output)
    record_id = source.resolve(args.id)
    record = source.read_record(record_id)
    parameters = ", ".join(f"{name}={value!r}" for name, value in record.get("parameters", {}).items())
    print(record_id)
    for label, value in (("runbook", f"{record.get('runbook', '?')} ({record.get('side_effects', '?')})"),
                         ("context", record.get("context") or "-"),
                         ("when", f"{record.get('started', '?')}, {record.get('duration_s', '?')} s, "
                                  f"{record.get('api_calls', '?')} API call(s)"),
                         ("outcome", record.get("outcome", "?")), ("error", record.get("error")),
                         ("parameters", parameters or "-")):
        if value:
            print(f"  {label:<11} {value}")
    findings = record.get("findings", [])
    print(f"findings ({len(findings)}):")
    print_table(["severity", "code", "resource", "message"],
                [[f.get(c, "") for c in ("severity", "code", "resource", "message")] for f in findings], indent=2)
    changes = record.get("changes", [])
    print(f"changes ({len(changes)}):")
    print_table(["at", "verb", "resource", "change"],
                [[c.get("at", ""), c.get("verb", ""), c.get("resource", ""),
                  c.get("change", "") + (" (diagnostic)" if c.get("diagnostic") else "")] for c in changes], indent=2)
    print("files:")
    for suffix in archive.SUFFIXES:
        print(f"  {source.location_of(record_id, suffix)}")
    return 0


def cmd_incidents_export(args) -> int:
    source = archive.open_archive(args.output)
    print(source.export(source.resolve(args.id), args.suffix, args.to))
    return 0


def cmd_incidents_diff(args) -> int:
    source = archive.open_archive(args.output)
    before, after = source.resolve(args.before), source.resolve(args.after)
    by_id = {record_id: source.read_record(record_id) for record_id in (before, after)}
    for record_id, record in by_id.items():
        print(f"{record_id}: {record.get('runbook', '?')} on {record.get('context') or '-'}, "
              f"outcome {record.get('outcome', '?')}")
    changed = archive.diff_findings(by_id[before], by_id[after])
    for title, sign, findings in (("appeared", "+", changed.appeared), ("disappeared", "-", changed.disappeared),
                                  ("stayed", "=", changed.stayed)):
        print(f"{title} ({len(findings)}):")
        print_table(["", "severity", "code", "resource", "message"],
                    [[sign, *(f.get(c, "") for c in ("severity", "code", "resource", "message"))] for f in findings],
                    indent=2)
    return 0


def print_table(header: list[str], rows: list[list[str]], indent: int = 0) -> None:
    """Left-aligned columns as wide as their widest cell; nothing when there are no rows."""
    if not rows:
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print(" " * indent + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
