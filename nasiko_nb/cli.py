"""``nasiko-nb``: list, run and archive runbooks; serve the simulated platform.

Bad input (unknown runbook or scenario, unusable kubeconfig, unreachable API server, wrong parameter
type, a confirm that does not name the target) prints one line on stderr and exits non-zero before
anything is changed.
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

from nasiko_nb import records
from nasiko_nb.cluster import ClusterError, connect
from nasiko_nb.records import RecordError

DEFAULT_OUTPUT = Path("incidents")
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
    demo.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
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
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("-f", "--parameters-file", type=Path)
    parser.add_argument("--kubeconfig", default="")
    parser.add_argument("--context", default="")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the API server")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--demo", metavar="SCENARIO")
    source.add_argument("--snapshot", type=Path, metavar="PATH")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)


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
    args.demo, args.snapshot, args.kubeconfig, args.context = args.scenario, None, "", ""
    args.parameter, args.parameters_file, args.timeout = [], None, 10.0
    return run_runbook(records.resolve("00-triage"), args)


def run_runbook(info: records.RunbookInfo, args) -> int:
    raw = {}
    if args.parameters_file:
        raw.update(_read_parameters_file(args.parameters_file))
    raw.update(dict(args.parameter))
    parameters = records.coerce_parameters(info, raw)
    with connection(args) as (kubeconfig, context):
        started = time.monotonic()
        result = records.execute(info, args.output, parameters, kubeconfig=kubeconfig, context=context)
    print_result(result, time.monotonic() - started)
    if result.error:
        print(f"nasiko-nb: {info.id} stopped: {result.error}", file=sys.stderr)
        return EXIT_BAD_INPUT if result.error.startswith(INPUT_ERRORS) else EXIT_RUN_FAILED
    return 0


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
    cluster = connect(args.kubeconfig or None, args.context or None, timeout_s=args.timeout)
    yield args.kubeconfig, args.context or cluster.context


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


if __name__ == "__main__":
    sys.exit(main())
