"""`runbook-bot`: the command line. Mirrors what the Slack front end offers.

    runbook-bot serve                      Slack (Socket Mode / --http) when configured; else the console demo
    runbook-bot run RUNBOOK -p k=v ...     walk a run in the terminal (--dry-run: plans only; --yes: auto-approve)
    runbook-bot plan RUNBOOK -p k=v ...    same as run --dry-run
    runbook-bot status [RUN]               runs and their steps, from the store
    runbook-bot approve|reject RUN STEP    decide on a step waiting for approval
    runbook-bot abort|rollback|replan RUN
    runbook-bot resolve RUN STEP verify|retry|skip|rollback   decide on an interrupted step
    runbook-bot events RUN                 the audit log of a run
    runbook-bot list                       runbooks in the runbooks folder
    runbook-bot validate PATH...           exit 1 on any error, each as file:line:col: field: message
    runbook-bot schema                     the runbook JSON Schema
    runbook-bot store migrate --to URL     copy the SQLite store into an empty PostgreSQL store, verified
    runbook-bot iam-policy RUNBOOK [--json] [--read-only]   the least-privilege AWS IAM policy the runbook needs

Exit codes: 0 succeeded, 1 failed / rolled back / invalid, 2 usage or runbook error, 3 waiting for people.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from bot import config, secrets

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise argparse.ArgumentTypeError(f"parameter {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runbook-bot", description="Run platform-migration runbooks, one "
                                     "approved step at a time.")
    parser.add_argument("--db", help="store file (default: $RUNBOOK_BOT_DB or ./state/runbook-bot.sqlite)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log engine details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the bot: Slack when configured, else the console demo on the sandbox")
    p.add_argument("--http", action="store_true", help="serve Slack over HTTP instead of Socket Mode")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default $PORT or 3000)")
    p.add_argument("--host", default=None,
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 when $PORT is set)")
    p.add_argument("--console", action="store_true", help="force the console demo even when Slack is configured")

    p = sub.add_parser("rehearse", help="walk a runbook through the embedded rehearsal world and report; "
                       "changes nothing outside it")
    p.add_argument("runbook", nargs="?", default="aws-ecs-to-do-app",
                   help="a runbook file or name (default: aws-ecs-to-do-app, seed 000's migration)")

    for name, helptext in (("run", "walk a run in the terminal"), ("plan", "print every plan; change nothing")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("runbook", help="a runbook file, or a name in the runbooks folder")
        p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--as", dest="user", default=None, help="who is acting (default: the OS user)")
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="plan every step; change nothing")
            p.add_argument("--yes", action="store_true", help="approve every step as --as (rehearsals)")

    p = sub.add_parser("status", help="list runs, or one run's steps")
    p.add_argument("run", nargs="?")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("events", help="the audit log of a run")
    p.add_argument("run")

    for name in ("approve", "reject"):
        p = sub.add_parser(name, help=f"{name} a step waiting for approval")
        p.add_argument("run")
        p.add_argument("step")
        p.add_argument("--as", dest="user", default=None)
        if name == "approve":
            p.add_argument("--confirm", default=None, help="the confirmation text the step asks for")
        else:
            p.add_argument("--reason", default="")
        p.add_argument("--follow", action="store_true", help="stay and answer the next prompts")

    for name, helptext in (("abort", "stop a run"), ("rollback", "undo a run's succeeded steps in reverse"),
                           ("replan", "accept the runbook as it now is on disk"),
                           ("resume", "continue a run in this terminal")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("run")
        p.add_argument("--as", dest="user", default=None)
        if name in ("rollback", "resume"):
            p.add_argument("--yes", action="store_true", help="approve every step as --as")

    p = sub.add_parser("resolve", help="decide on an interrupted step")
    p.add_argument("run")
    p.add_argument("step")
    p.add_argument("action", choices=["verify", "retry", "skip", "rollback"])
    p.add_argument("--as", dest="user", default=None)

    p = sub.add_parser("watch", help="a run's post-cutover watch: status, now, stop, chart, follow")
    p.add_argument("run")
    p.add_argument("action", choices=["status", "now", "stop", "chart", "follow"])
    p.add_argument("--out", default=None, help="chart: where to write the PNG (default watch-RUN.png)")
    p.add_argument("--as", dest="user", default=None)

    sub.add_parser("list", help="runbooks in the runbooks folder")
    p = sub.add_parser("validate", help="check runbook files; exit 1 on any error")
    p.add_argument("paths", nargs="+")
    sub.add_parser("schema", help="print the runbook JSON Schema")
    p = sub.add_parser("store", help="the store itself: `store migrate --to postgresql://...` copies a SQLite "
                                     "store (--db FILE, default the configured file) into an empty PostgreSQL one")
    p.add_argument("action", choices=["migrate"])
    p.add_argument("--to", required=True, help="the PostgreSQL store's URL (postgresql://user:pass@host/db)")
    p = sub.add_parser("iam-policy", help="the least-privilege AWS IAM policy a runbook's steps and watch need")
    p.add_argument("runbook", help="a runbook file, or a name in the runbooks folder")
    p.add_argument("--json", action="store_true", help="print only the policy document")
    p.add_argument("--read-only", action="store_true",
                   help="only the reads plans and verifications make (an identity for `runbook-bot plan`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors already; keep its code
        return int(exc.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _install_log_redaction()
    # Third-party libraries stay at WARNING by default (botocore's "Found credentials", azure-core's
    # request headers, moto's werkzeug access lines are not the operator's business). With -v they
    # show at INFO, masked by the redaction filter; never at DEBUG, where botocore and urllib3 dump
    # raw response bodies (secret values included) before any adapter has seen them to register.
    for noisy in ("botocore", "boto3", "urllib3", "azure", "s3transfer", "werkzeug", "moto", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.INFO if args.verbose else logging.WARNING)
    console = Console(highlight=False, emoji=False)  # a step key like `undo:watch` is not an emoji code
    if args.db:
        import os

        os.environ["RUNBOOK_BOT_DB"] = args.db if config.is_postgres_url(args.db) else str(Path(args.db).resolve())
    handler = COMMANDS[args.command]
    from bot.engine.store_faults import StoreFault

    try:
        return handler(args, console)
    except StoreFault as exc:  # one line naming the file and what to do, never a traceback
        print(f"runbook-bot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        console.print("interrupted; the run's state is in the store: `runbook-bot status`")
        return EXIT_WAITING


class _RedactingFilter(logging.Filter):
    """Secrets never reach a log line, whatever logger formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = secrets.redact(record.getMessage())
        record.args = ()
        return True


def _install_log_redaction() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactingFilter) for f in handler.filters):
            handler.addFilter(_RedactingFilter())


# -- commands -----------------------------------------------------------------------------------

def _runner(console: Console, *, background: bool = False):
    from bot.chat.console import ConsoleChannel
    from bot.engine.runner import Runner
    from bot.engine.store import Store

    store = Store.configured()
    return Runner(store, ConsoleChannel(console), background=background)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from bot.chat.console import ConsoleSession
    from bot.engine.runner import StartRefused

    dry_run = args.command == "plan" or getattr(args, "dry_run", False)
    try:
        params = _params(args.param)
    except argparse.ArgumentTypeError as exc:
        console.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    user = args.user or _default_user()
    runner = _runner(console)
    try:
        run = runner.start(args.runbook, params, started_by=user, front_end="console", dry_run=dry_run)
    except StartRefused as exc:
        console.print(f"[red]cannot start:[/] {secrets.redact(str(exc))}")
        return EXIT_USAGE
    if dry_run:
        run = runner.view(run.id)
        console.print(f"dry run {run.id}: every plan above; nothing was changed")
        failed = [s for s in run.steps if s.state == "failed"]
        return EXIT_FAILED if failed else EXIT_OK
    session = ConsoleSession(runner, console, user=user, auto_approve=getattr(args, "yes", False))
    return session.follow(run.id)


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from bot.chat.console import print_run, print_status

    runner = _runner(console)
    if args.run:
        run = runner.store.find_run(args.run)
        if run is None:
            console.print(f"[red]no run {args.run}[/]")
            return EXIT_USAGE
        view = runner.view(run["id"])
        if args.json:
            from dataclasses import asdict

            print(json.dumps(secrets.redact_obj(asdict(view)), default=str, indent=2))
        else:
            print_run(console, view)
        return EXIT_OK
    runs = [runner.view(r["id"]) for r in runner.store.list_runs(limit=30)]
    if args.json:
        from dataclasses import asdict

        print(json.dumps([secrets.redact_obj(asdict(r)) for r in runs], default=str, indent=2))
    elif not runs:
        console.print("no runs yet")
    else:
        print_status(console, runs)
    return EXIT_OK


def cmd_events(args: argparse.Namespace, console: Console) -> int:
    import time

    runner = _runner(console)
    run = runner.store.find_run(args.run)
    if run is None:
        console.print(f"[red]no run {args.run}[/]")
        return EXIT_USAGE
    for event in runner.store.events(run["id"]):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event["at"]))
        move = f" {event['from_state']}→{event['to_state']}" if event["to_state"] else ""
        detail = f" {json.dumps(event['detail'])}" if event["detail"] else ""
        console.print(f"{when} {event['actor']}@{event['front_end']} {event['action']}"
                      f"{' ' + event['step_key'] if event['step_key'] else ''}{move}{detail}", markup=False)
    return EXIT_OK


def _decision_exit(console: Console, decision: Any) -> int:
    style = "green" if decision.ok else "red"
    console.print(f"[{style}]{secrets.redact(decision.message)}[/]")
    if getattr(decision, "next_action", None) and decision.run_id:
        # The engine says what can be done next; the command that does it is this front end's wording.
        action, *rest = decision.next_action
        console.print(f"next: `runbook-bot {action} {decision.run_id}{''.join(' ' + r for r in rest)}`")
    return EXIT_OK if decision.ok else EXIT_FAILED


def cmd_decide(args: argparse.Namespace, console: Console) -> int:
    from bot.chat.console import ConsoleSession

    runner = _runner(console)
    user = args.user or _default_user()
    if args.command == "approve":
        decision = runner.approve(args.run, args.step, user=user, front_end="console", confirm=args.confirm)
    else:
        decision = runner.reject(args.run, args.step, user=user, front_end="console", reason=args.reason)
    code = _decision_exit(console, decision)
    if decision.ok and args.follow and decision.run_id:
        return ConsoleSession(runner, console, user=user).follow(decision.run_id)
    return code


def cmd_run_action(args: argparse.Namespace, console: Console) -> int:
    from bot.chat.console import ConsoleSession

    runner = _runner(console)
    user = args.user or _default_user()
    if args.command == "resume":
        run = runner.store.find_run(args.run)
        if run is None:
            console.print(f"[red]no run {args.run}[/]")
            return EXIT_USAGE
        runner.resume_all()
        return ConsoleSession(runner, console, user=user, auto_approve=args.yes).follow(run["id"])
    action = {"abort": runner.abort, "rollback": runner.rollback, "replan": runner.replan}[args.command]
    decision = action(args.run, user=user, front_end="console")
    code = _decision_exit(console, decision)
    if decision.ok and args.command in ("rollback", "replan") and decision.run_id:
        return ConsoleSession(runner, console, user=user, auto_approve=getattr(args, "yes", False)).follow(
            decision.run_id)
    return code


def cmd_resolve(args: argparse.Namespace, console: Console) -> int:
    from bot.chat.console import ConsoleSession

    runner = _runner(console)
    user = args.user or _default_user()
    decision = runner.resolve(args.run, args.step, args.action, user=user, front_end="console")
    code = _decision_exit(console, decision)
    if decision.ok and decision.run_id:
        return ConsoleSession(runner, console, user=user).follow(decision.run_id)
    return code


def cmd_watch(args: argparse.Namespace, console: Console) -> int:
    """The console's side of the watch: the same summaries Slack gets, printed here."""
    import time

    from bot.watch import service
    from bot.watch.scheduler import WatchScheduler

    runner = _runner(console)
    run = runner.store.find_run(args.run)
    if run is None:
        console.print(f"[red]no run {args.run}[/]")
        return EXIT_USAGE
    run_id = run["id"]
    try:
        if args.action == "status":
            console.print_json(data=service.status(runner.store, run_id))
        elif args.action == "now":
            service.tick_now(runner.store, run_id, runner.channel, run_view=runner.view)
        elif args.action == "stop":
            service.stop(runner.store, run_id, by=args.user or _default_user())
            console.print(f"watch of run {run_id} stopped")
        elif args.action == "chart":
            out = Path(args.out or f"watch-{run_id}.png")
            out.write_bytes(service.chart_png(runner.store, run_id))
            console.print(f"chart written to {out}")
        else:  # follow: run the scheduler here and print each summary until the watch ends
            scheduler = WatchScheduler(runner.store, runner.channel, run_view=runner.view)
            if not scheduler.start():
                console.print("another process holds the watch scheduler's lease; its summaries go to its front end")
            try:
                while service.status(runner.store, run_id).get("state") == "active":
                    time.sleep(1)
            finally:
                scheduler.shutdown()
    except service.WatchError as exc:
        console.print(f"[red]{secrets.redact(str(exc))}[/]")
        return EXIT_FAILED
    return EXIT_OK


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from bot.runbook.load import RunbookInvalid, find_runbooks, load_runbook

    for name, path in find_runbooks(config.runbooks_dir()).items():
        try:
            loaded = load_runbook(path)
            console.print(f"[bold]{name}[/] · {loaded.model.description}", markup=True)
        except RunbookInvalid as exc:
            console.print(f"[bold]{name}[/] · [red]invalid ({len(exc.errors)} errors)[/]")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from bot.runbook.load import RunbookInvalid, load_runbook

    failed = False
    for raw in args.paths:
        paths = sorted(Path(raw).glob("*.y*ml")) if Path(raw).is_dir() else [Path(raw)]
        for path in paths:
            try:
                loaded = load_runbook(path)
            except RunbookInvalid as exc:
                failed = True
                for error in exc.errors:
                    print(str(error))
                continue
            for warning in loaded.warnings:
                print(f"{path}: warning: {warning}")
            print(f"{path}: ok ({len(loaded.model.steps)} steps)")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    from bot.runbook.schema import schema_json

    sys.stdout.write(schema_json())
    return EXIT_OK


def cmd_iam_policy(args: argparse.Namespace, console: Console) -> int:
    """Which step uses what, the notes, then the document (`--json`: the document alone)."""
    from bot.runbook.load import RunbookInvalid, load_runbook, resolve_runbook
    from bot.steps import iam

    try:
        loaded = load_runbook(resolve_runbook(args.runbook, config.runbooks_dir()))
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    except RunbookInvalid as exc:  # the loader's file:line:col: field: message, as `validate` prints it
        for error in exc.errors:
            print(str(error), file=sys.stderr)
        return EXIT_USAGE
    needs = iam.collect(loaded)
    document = needs.document(read_only=args.read_only)
    if args.json:
        print(json.dumps(document, indent=2))
        return EXIT_OK
    if not needs.uses:
        print(f"{loaded.name}: no step or watch signal uses AWS; no IAM permissions needed "
              "(the policy document would have no statements)")
        return EXIT_OK
    for use in needs.uses:
        if args.read_only and use.access == "write":
            print(f"{use.step}: {use.kind} -> {use.target} ({use.what}, read only: its apply would be refused)")
            continue
        print(f"{use.step}: {use.kind} -> {use.target} ({use.what}, {use.access})")
    for note in needs.notes_for(read_only=args.read_only):
        print(f"note: {note}")
    print(json.dumps(document, indent=2))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    slack_configured = any(config.get(n) for n in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"))
    if slack_configured and not args.console:
        from bot.chat.slack import serve

        return serve(http=args.http, port=args.port, host=args.host)
    console.print("[bold]No Slack settings found[/] (SLACK_BOT_TOKEN, SLACK_APP_TOKEN or SLACK_SIGNING_SECRET): "
                  "rehearsing seed 000's migration on the embedded rehearsal world.")
    return cmd_rehearse(argparse.Namespace(runbook="aws-ecs-to-do-app"), console)


def cmd_rehearse(args: argparse.Namespace, console: Console) -> int:
    from bot.runbook.load import resolve_runbook
    from bot.sandbox.rehearse import rehearse

    try:
        path = resolve_runbook(args.runbook, config.runbooks_dir())
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        return EXIT_USAGE
    return rehearse(console, str(path))


def cmd_store(args: argparse.Namespace, console: Console) -> int:
    from bot.engine.store_copy import CopyRefused, copy_store
    from bot.engine.store_pg import display_url

    if not config.is_postgres_url(args.to):
        print(f"runbook-bot: --to must be a postgresql:// URL, not {secrets.redact(args.to)!r}", file=sys.stderr)
        return EXIT_USAGE
    if config.is_postgres_url(config.store_location()):
        print("runbook-bot: the configured store is PostgreSQL already; name the SQLite file with --db FILE",
              file=sys.stderr)
        return EXIT_USAGE
    source = config.store_path()
    console.print(f"copying {source} -> {display_url(args.to)} (stop every bot on the file first: "
                  "writes after this moment are not copied)", soft_wrap=True)
    try:
        report = copy_store(source, args.to,
                            progress=lambda table, rows: console.print(f"  {table}: {rows} rows", soft_wrap=True))
    except CopyRefused as exc:
        print(f"runbook-bot: {secrets.redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    console.print(f"verified: {sum(report.tables.values())} rows in {len(report.tables)} tables, equal on both "
                  "sides (counts and row digests)", soft_wrap=True)
    console.print(f"next: set RUNBOOK_BOT_DB={report.target} (with its password) or DATABASE_URL on every bot, "
                  "and carry over RUNBOOK_BOT_FINGERPRINT_KEY (or the state folder's fingerprint.key) so the "
                  "fingerprints stored in the runs still compare", soft_wrap=True)
    return EXIT_OK


COMMANDS = {
    "serve": cmd_serve,
    "rehearse": cmd_rehearse,
    "run": cmd_run,
    "plan": cmd_run,
    "status": cmd_status,
    "events": cmd_events,
    "approve": cmd_decide,
    "reject": cmd_decide,
    "abort": cmd_run_action,
    "rollback": cmd_run_action,
    "replan": cmd_run_action,
    "resume": cmd_run_action,
    "resolve": cmd_resolve,
    "watch": cmd_watch,
    "list": cmd_list,
    "validate": cmd_validate,
    "schema": cmd_schema,
    "store": cmd_store,
    "iam-policy": cmd_iam_policy,
}
