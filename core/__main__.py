"""Command line: python -m core generate|presets|validate|calibrate|replicate|decrypt|db|bench ...

Every error is one line on stderr (never a traceback). Exit codes:

    0    done
    1    the run failed on its way (disk full, an I/O error, a worker that died): the manifest says ``failed``
         and no data file is left under a final name; also any other operating-system error
    2    bad input: arguments, the scenario, an output folder that cannot be used (not writable, read-only,
         a file in its path, a name too long, in use by another run, holding a run without --force), a
         decrypt target that cannot be written, a DATABASE_URL that is not allowed
    3    generate --db: the files are complete but the run did not reach the database
    4    db migrate|status: the database cannot be reached
    130  cancelled by Ctrl-C (SIGINT); 143 cancelled by SIGTERM: the manifest says ``cancelled``, no data files
"""
from __future__ import annotations

import sys

try:  # Ctrl-C while the libraries load ends as quietly as Ctrl-C later on
    import argparse
    import getpass
    import json
    import os
    import threading
    from pathlib import Path

    from core import reference
    from core.scenario import ScenarioError, load_scenario
    from core.sinks import FORMATS, DecryptionError, decrypt_file
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

EXIT_FAILED = 1         # the run failed on its way (disk full, I/O error); other operating-system errors
EXIT_BAD_INPUT = 2
EXIT_NOT_PERSISTED = 3  # --db: the files are complete but the run did not reach the database
EXIT_DB_DOWN = 4        # db migrate|status: the database cannot be reached
EXIT_CANCELLED = 130    # 128 + SIGINT; a SIGTERM ends with 128 + 15


EXIT_CODES = """exit codes:
  0    done
  1    the run failed on its way (disk full, I/O error): its manifest says failed, no data file is left
  2    bad input: arguments, scenario, an output folder that cannot be used or is in use, a DATABASE_URL
  3    generate --db: the files are complete but the run did not reach the database
  4    db migrate|status: the database cannot be reached
  130  cancelled by Ctrl-C (SIGINT); 143 cancelled by SIGTERM: the manifest says cancelled, no data file is left"""


class BadInput(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise BadInput(f"{message} (see: {self.prog} --help)")


def _password(confirm: bool) -> str:
    pw = os.environ.get("ENCRYPTION_PASSWORD")
    if pw:
        return pw
    if not sys.stdin.isatty():
        raise BadInput("encryption needs a password: set ENCRYPTION_PASSWORD or run on a terminal to be asked")
    pw = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != pw:
        raise BadInput("the two passwords differ")
    if not pw:
        raise BadInput("the password is empty")
    return pw


def _bar(done: int, total: int, rate: float, eta: float | None) -> str:
    width = 30
    filled = int(width * done / total) if total else width
    eta_txt = f"{eta:5.0f}s left" if eta is not None else ""
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} patients  {rate:,.0f}/s  {eta_txt}"


def _patients_arg(text: str) -> int | str:
    if text.strip().lower() == "force":
        return "force"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of patients or 'force'") from None


def cmd_generate(args) -> int:
    from core.run import cancel_on_signals, check_output_dir, failure_reason, generate_run, shown
    scenario = load_scenario(args.scenario)
    force_mode = args.patients == "force"
    scenario = scenario.with_overrides(patients=None if force_mode else args.patients, seed=args.seed, days=args.days,
                                       medical_plan=args.medical_plan)
    if force_mode:  # N, BI share and front shares from force sizes and published daily rates (docs/casualty-model.md#force-size-mode)
        scenario = scenario.from_force_size()
    out = Path(args.out) if args.out else Path("runs") / f"{Path(str(args.scenario or 'default')).stem}-seed{scenario.seed}-{scenario.patients}"
    try:
        check_output_dir(out, args.force)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    password = _password(confirm=True) if args.encrypt else None
    tty = sys.stderr.isatty() and not args.quiet

    def progress(p):
        if tty:
            sys.stderr.write(_bar(p.patients_done, p.patients_total, p.rate, p.eta_s))
            sys.stderr.flush()

    def notice(text: str) -> None:
        print(f"note: {text}", file=sys.stderr)

    cancel = threading.Event()
    db_kwargs, db_down = _db_engine_for_run(args) if args.db else ({}, None)
    if scenario.medical_plan is not None:
        _prepare_capacity_model(quiet=args.quiet)
    with cancel_on_signals(cancel) as received:
        try:
            manifest = generate_run(scenario, out, fmt=args.format, compress=args.compress, password=password,
                                    chunk_size=args.chunk_size, workers=args.workers, on_progress=progress,
                                    cancel=cancel, fhir_profile=args.fhir_profile, force=args.force,
                                    on_notice=notice, **db_kwargs)
        except ValueError as exc:  # a bad option or output folder (OutputFolderError is one)
            raise BadInput(str(exc)) from None
        except Exception as exc:  # recorded in the manifest as failed; no data file under a final name
            if tty:
                sys.stderr.write("\n")
            print(f"error: run failed: {failure_reason(exc)}; no data files were left in {shown(out)}",
                  file=sys.stderr)
            return EXIT_FAILED
    if tty:
        sys.stderr.write("\n")
    if manifest["status"] != "completed":
        kept = " (the earlier run there is unchanged)" if manifest.get("kept_previous_run") else ""
        print(f"run {manifest['status']}: no data files were left in {shown(out)}{kept}", file=sys.stderr)
        return 128 + (received[0] if received else 2)
    if not args.quiet:
        _summary(manifest, out)
    if args.db and not manifest.get("persisted"):
        reason = manifest.get("database_error") or db_down or "the database was not reached"
        print(f"warning: run not saved to the database ({reason}); the files in {out} are complete",
              file=sys.stderr)
        return EXIT_NOT_PERSISTED
    return 0


def _prepare_capacity_model(quiet: bool) -> None:
    """The medical plan's simulation is compiled once per install; say so when that takes a while."""
    from core.capacity.preview import warm
    note = threading.Timer(2.0, lambda: print("preparing the capacity model (compiled once after an install; up to "
                                              "a minute)...", file=sys.stderr, flush=True))
    note.daemon = True
    if not quiet:
        note.start()
    try:
        warm()
    finally:
        note.cancel()


def _db_engine_for_run(args) -> tuple[dict, str | None]:
    """generate_run's database arguments for --db; a database that is down means files only (warned at the end)."""
    if args.encrypt:
        raise BadInput("--db cannot be combined with --encrypt (the database would hold the tables in clear)")
    try:
        from core import db
    except ImportError as exc:
        raise BadInput(f"--db needs the database libraries (pip install -r requirements.txt): {exc}") from None
    try:
        engine = db.get_engine()
    except ValueError as exc:  # a malformed DATABASE_URL or pool setting
        raise BadInput(str(exc)) from None
    except db.DatabaseUnavailable as exc:
        print(f"warning: {exc}; generating to files only", file=sys.stderr)
        return {}, str(exc)
    return {"engine": engine, "persist": True, "scenario_name": Path(str(args.scenario or "default")).stem}, None


def cmd_db(args) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from core import db
    try:
        engine = db.create_engine()
        if args.action == "migrate":  # the operator asks: this may add our tables beside a database's own
            before = db.schema_revision(engine)
            after = db.migrate(engine, adopt=True)
            print(f"{db.describe(engine)}: schema {before or 'empty'} -> {after} (head {db.head_revision()})")
            return 0
        info = db.status(engine)
        print(f"database  {info['database']} ({info['dialect']})")
        if info["foreign"]:
            print(f"schema    not this project's: {info['foreign']}")
            return 1
        print(f"schema    {info['revision'] or 'empty'} (head {info['head']})")
        if info["runs"] is not None:
            print(f"runs      {info['runs']:,} ({info['persisted_runs']:,} with their tables, {info['running']:,} "
                  f"being written), scenarios {info['scenarios']:,}")
        if info["recovered"]:
            shown = ", ".join(info["recovered"][:5]) + (" ..." if len(info["recovered"]) > 5 else "")
            print(f"cleaned   {len(info['recovered']):,} interrupted run(s) marked failed and their half-loaded "
                  f"rows dropped: {shown}")
        pool = info["pool"]
        print(f"pool      budget {pool['budget']} (size {pool['size']} + overflow), checked out {pool['checked_out']}")
        return 0 if info["revision"] == info["head"] else 1
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    except db.DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DB_DOWN
    except SQLAlchemyError as exc:  # e.g. migrate into a database whose own tables clash with ours
        print(f"error: {db.redact(' '.join(str(getattr(exc, 'orig', None) or exc).split())[:300])}", file=sys.stderr)
        return EXIT_FAILED


def _summary(m: dict, out: Path) -> None:
    total = sum(f["bytes"] for f in m["files"])
    name = f"scenario '{m['scenario']['name']}'" if m.get("scenario") else "scenario encrypted (scenario.json.enc)"
    lines = [
        f"Run {m['run_id']} completed: {m['patients']:,} patients, {name}, seed {m['seed']}",
        f"  time      {m['elapsed_s']:.2f} s   ({m['patients_per_s']:,.0f} patients/s)",
        f"  memory    {m['peak_rss_mb']:.0f} MB peak RSS",
        f"  realism   {m['calibration']['pass']} published targets met, {m['calibration']['warn']} warnings "
        f"({'calibration.json.enc' if m['encrypted'] else 'calibration.json'})",
        f"  output    {out}  ({total / 2**20:,.1f} MB, {m['format']}"
        f"{', gzip' if m['compressed'] else ''}{', AES-256-GCM' if m['encrypted'] else ''})",
    ]
    lines += [f"    {f['name']:<34} {f['rows']:>12,} rows {f['bytes'] / 2**20:>10,.1f} MB" for f in m["files"]]
    lines.append("    manifest.json")
    if m.get("capacity") and (out / "capacity.json").is_file():  # the medical plan at work (capacity.json)
        from core.capacity.report import format_report
        lines.append("  medical plan (capacity.json)")
        lines += [f"  {line}" for line in format_report(json.loads((out / "capacity.json").read_text())).splitlines()]
    print("\n".join(lines))


def cmd_presets(args) -> int:
    from core.scenario import preset
    rows = [("default", load_scenario("default"))] + [(k, preset(k)) for k in reference.presets()]
    if args.json:
        print(json.dumps({k: s.to_dict() for k, s in rows}, indent=2, ensure_ascii=False))
        return 0
    print(f"{'id':<20} {'patients':>8} {'days':>4}  {'warfare':<28} {'intensity':<9} name")
    for key, s in rows:
        wt = ", ".join(s.warfare_types)
        print(f"{key:<20} {s.patients:>8,} {s.days:>4}  {wt:<28} {s.intensity:<9} {s.name}")
    return 0


def cmd_validate(args) -> int:
    scenario = load_scenario(args.file)
    print(f"valid: '{scenario.name}', {scenario.patients:,} patients over {scenario.days} days, "
          f"{len(scenario.fronts)} front(s), sha256 {scenario.sha256()[:16]}…")
    if args.show:
        print(json.dumps(scenario.to_dict(), indent=2, ensure_ascii=False))
    return 0


def cmd_calibrate(args) -> int:
    from core import generator
    from core.calibration import calibrate, format_report
    scenario = load_scenario(args.scenario).with_overrides(patients=args.patients, seed=args.seed)
    try:
        report = calibrate(scenario, generator.stream(scenario, workers=args.workers))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0


def cmd_replicate(args) -> int:
    from core.replicate import format_replications, replicate
    scenario = load_scenario(args.scenario)
    force_mode = args.patients == "force"
    scenario = scenario.with_overrides(patients=None if force_mode else args.patients, seed=args.seed,
                                       medical_plan=args.medical_plan)
    if force_mode:
        scenario = scenario.from_force_size()
    try:
        rep = replicate(scenario, args.runs, workers=args.workers)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2, ensure_ascii=False), encoding="utf-8")
    print(format_replications(rep))
    return 0


def cmd_check(args) -> int:
    from core.contract import RunUnreadable, check_run
    try:
        report = check_run(args.run_dir)
    except RunUnreadable as exc:
        raise BadInput(str(exc)) from None
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else "\n".join(report.lines()))
    return 0 if report.holds else 1


def cmd_decrypt(args) -> int:
    from core.run import os_reason
    src, dst = Path(args.input), Path(args.output)
    if not src.is_file():
        raise BadInput(f"{src} is not a file")
    if dst.is_dir():
        raise BadInput(f"{dst} is a folder; give the name of the file to write")
    if dst.exists() and not args.force:
        raise BadInput(f"{dst} exists; choose another name or pass --force")
    if not dst.parent.is_dir():
        raise BadInput(f"cannot write {dst}: the folder {dst.parent} does not exist")
    try:
        decrypt_file(src, dst, _password(confirm=False))
    except DecryptionError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"cannot decrypt {src} into {dst}: {os_reason(exc)}") from None
    print(f"decrypted {src} -> {dst}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core", description="Synthetic NATO casualty generator (engine and CLI).",
                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", parser_class=_Parser, required=True)
    g = sub.add_parser("generate", help="generate a run into a folder")
    g.add_argument("--scenario", help="preset id (see `presets`), 'default', or a scenario JSON file")
    g.add_argument("--patients", type=_patients_arg,
                   help="number of patients (1 to 100,000,000), or 'force' to derive it from the fronts' "
                        "force_size and published daily casualty rates")
    g.add_argument("--seed", type=int, help="random seed (0 to 2^63-1); same scenario + seed = same data")
    g.add_argument("--days", type=int, help="scenario length in days (1 to 180)")
    g.add_argument("--format", default="parquet", choices=FORMATS, help="output format (default parquet)")
    g.add_argument("--fhir-profile", choices=("collection", "ips"),
                   help="with --format fhir: Bundle type collection (default) or an IPS document per patient")
    g.add_argument("--out", help="output folder (default runs/<scenario>-seed<seed>-<patients>)")
    g.add_argument("--compress", action="store_true", help="gzip every file (.gz)")
    g.add_argument("--encrypt", action="store_true",
                   help="AES-256-GCM (.enc); password from ENCRYPTION_PASSWORD or a prompt")
    g.add_argument("--workers", type=int, default=1, help="worker processes (same data for any number)")
    g.add_argument("--chunk-size", type=int, default=16_384,
                   help="patients per written batch (default 16,384; the data is the same for any size)")
    g.add_argument("--force", action="store_true", help="replace a run already in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    g.add_argument("--medical-plan", choices=("brigade", "unconstrained"),
                   help="run with the brigade medical laydown on every front (capacity: beds, operating tables, "
                        "surgical teams, vehicles) or without limits; default: the scenario's own medical_plan")
    g.add_argument("--db", action="store_true",
                   help="also save the run's tables to the database (DATABASE_URL or data/mpg.sqlite)")
    g.set_defaults(func=cmd_generate)
    pr = sub.add_parser("presets", help="list the scenario presets")
    pr.add_argument("--json", action="store_true", help="print the full validated presets as JSON")
    pr.set_defaults(func=cmd_presets)
    v = sub.add_parser("validate", help="validate a scenario JSON file")
    v.add_argument("file")
    v.add_argument("--show", action="store_true", help="print the validated scenario with defaults filled in")
    v.set_defaults(func=cmd_validate)
    c = sub.add_parser("calibrate", help="generate in memory and compare with the published targets")
    c.add_argument("--scenario", help="preset id, 'default', or a scenario JSON file")
    c.add_argument("--patients", type=int, default=200_000, help="patients to generate (default 200,000)")
    c.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    c.add_argument("--workers", type=int, default=1, help="worker processes")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(func=cmd_calibrate)
    r = sub.add_parser("replicate", help="run a scenario over many seeds: each report figure with its mean and "
                                         "95 %% interval")
    r.add_argument("--scenario", help="preset id, 'default', or a scenario JSON file")
    r.add_argument("--runs", type=int, default=50, help="replications (1 to 1,000; default 50)")
    r.add_argument("--patients", type=_patients_arg, help="patients per run, or 'force' (from force sizes)")
    r.add_argument("--seed", type=int, help="first seed (default: the scenario's); run i uses seed + i")
    r.add_argument("--medical-plan", choices=("brigade", "unconstrained"), help="as for generate")
    r.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    r.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    r.set_defaults(func=cmd_replicate)
    k = sub.add_parser("check", help="check a run folder against the data contract (docs/data-contract.md)")
    k.add_argument("run_dir", help="the run folder (the one holding manifest.json)")
    k.add_argument("--json", action="store_true", help="print the report as JSON")
    k.set_defaults(func=cmd_check)
    d = sub.add_parser("decrypt", help="decrypt an .enc file (password from ENCRYPTION_PASSWORD or a prompt)")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    d.set_defaults(func=cmd_decrypt)
    dbp = sub.add_parser("db", help="database schema: migrate | status (DATABASE_URL or data/mpg.sqlite)")
    dbp.add_argument("action", choices=("migrate", "status"))
    dbp.set_defaults(func=cmd_db)
    sub.add_parser("bench", help="benchmark throughput and memory (options: python -m core bench --help)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["bench"]:  # the benchmark has its own options
            from benchmarks.bench_engine import main as bench_main
            return bench_main(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (BadInput, ScenarioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except OSError as exc:  # anything the operating system refused that no command turned into a message
        from core.run import os_reason
        print(f"error: {os_reason(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
