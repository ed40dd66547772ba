"""The ``tft-hpo`` command line: run, resume, worker, status, best, lr-find, dashboard, report.

Bad input of any kind ends with one line on stderr and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tft_hpo.config import DEFAULT_OUTPUT_DIR, StudyConfig, default_storage_url
from tft_hpo.errors import UserError
from tft_hpo.signals import Interrupted

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = _Parser(prog="tft-hpo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run (or continue) the study of a study file")
    add_run_arguments(run)

    resume = commands.add_parser("resume", help="continue a stored study from its stored config")
    resume.add_argument("name", help="study name")
    _add_storage(resume)
    _add_budget(resume, total_default="the total of the study's latest run")
    resume.add_argument("--verbose", action="store_true", help="show Lightning's progress bars and logs")

    worker = commands.add_parser("worker", help="join a running study (from its stored config) as one more worker")
    worker.add_argument("name", help="study name")
    _add_storage(worker)
    _add_budget(worker, total_default="the total of the study's latest run")
    worker.add_argument("--threads", type=_positive_int, help="CPU threads for torch (default: torch's own)")
    worker.add_argument("--verbose", action="store_true", help="show Lightning's progress bars and logs")

    status = commands.add_parser("status", help="every study in a storage, with its trial counts and best value")
    _add_storage(status, help_default="every studies/*.db")

    best = commands.add_parser("best", help="the best trial of a study")
    best.add_argument("name", help="study name")
    _add_storage(best)
    best.add_argument("--json", action="store_true", help="print one JSON object")
    best.add_argument(
        "--export", type=Path, metavar="DIR", help="also write its params, config and checkpoint into DIR"
    )

    lr_find = commands.add_parser("lr-find", help="one LR range test on the search space's middle architecture")
    lr_find.add_argument("study_file", type=Path)
    lr_find.add_argument("--out", type=Path, help="output folder (default: studies/<name>/lr_find)")
    lr_find.add_argument("--verbose", action="store_true", help="show Lightning's logs")

    dashboard = commands.add_parser("dashboard", help="optuna-dashboard on a study, with its range-test artifacts")
    dashboard.add_argument("name", help="study name")
    _add_storage(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=_port, default=8080, help="port to listen on (default: 8080; 0: any free)")

    report = commands.add_parser("report", help="one self-contained HTML page on a study")
    report.add_argument("name", help="study name")
    _add_storage(report)
    report.add_argument("--out", type=Path, help="HTML file to write (default: studies/<name>/report.html)")
    report.add_argument("--top", type=_positive_int, default=5, help="how many top trials to show (default: 5)")
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``tft-hpo run`` (shared with scripts/run_study.py)."""
    parser.add_argument("study_file", type=Path, help="TOML study file, e.g. studies/quickstart.toml")
    _add_budget(parser)
    _add_storage(parser, help_default="the file's, else sqlite:///studies/<name>.db")
    parser.add_argument("--study-name", help="study name (default: the file's, else its stem)")
    parser.add_argument("--force", action="store_true", help="go on although the stored study's settings differ")
    parser.add_argument(
        "--workers", type=_positive_int, default=1, help="worker processes on the study, sharing the cores (default 1)"
    )
    parser.add_argument(
        "--check", action="store_true", help="check the study file and its data, then exit without touching the storage"
    )
    parser.add_argument("--verbose", action="store_true", help="show Lightning's progress bars and logs")


def _add_budget(parser: argparse.ArgumentParser, total_default: str = "the study file's") -> None:
    parser.add_argument(
        "--n-trials", type=_positive_int, help=f"the study's total of finished trials (default: {total_default})"
    )
    parser.add_argument("--timeout", type=_positive_float, help="stop starting trials after this many seconds")


def _add_storage(parser: argparse.ArgumentParser, help_default: str = "sqlite:///studies/<name>.db") -> None:
    parser.add_argument("--storage", help=f"SQLAlchemy URL (default: {help_default})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tft-hpo`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except UserError as error:
        print(f"tft-hpo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as interrupted:
        print(f"tft-hpo: interrupted by {interrupted}; to go on: {interrupted.resume_hint}", file=sys.stderr)
        return interrupted.exit_status
    except KeyboardInterrupt:  # Ctrl-C before a run took over the signals (e.g. while loading torch)
        print("tft-hpo: interrupted; run the same command again to go on", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from tft_hpo.config import load_study_file

    config = load_study_file(args.study_file).with_overrides(
        name=args.study_name, n_trials=args.n_trials, timeout=args.timeout, storage=args.storage
    )
    if args.check:
        from tft_hpo.data import build_datasets

        datasets = build_datasets(config.data)
        print(
            f"{args.study_file}: valid; data gives {len(datasets.training)} training and "
            f"{len(datasets.validation)} validation samples"
        )
        return 0
    if args.workers > 1:
        from tft_hpo.parallel import WorkersFailed, run_workers  # torch and Lightning load only once the file is valid

        try:
            run_workers(config, args.workers, force=args.force, verbose=args.verbose)
        except WorkersFailed as error:
            print(f"tft-hpo: error: {error}", file=sys.stderr)
            return EXIT_FAILED
        return 0
    from tft_hpo.runner import run_study

    run_study(config, force=args.force, verbose=args.verbose)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from tft_hpo.runner import run_study

    run_study(_stored_study_config(args), verbose=args.verbose)
    return 0


def _worker(args: argparse.Namespace) -> int:
    config = _stored_study_config(args)
    from tft_hpo.parallel import set_worker_threads
    from tft_hpo.runner import run_study

    if args.threads:
        set_worker_threads(args.threads)
    run_study(config, verbose=args.verbose, as_worker=True)
    return 0


def _stored_study_config(args: argparse.Namespace) -> StudyConfig:
    """The stored config of study ``args.name``, with the command's budget and storage."""
    from tft_hpo.storage import find_study, open_storage, redacted_url, stored_config, stored_total

    url = args.storage or default_storage_url(args.name)
    study = find_study(open_storage(url, must_exist=True), args.name)
    if study is None:
        raise UserError(f"{args.command}: study {args.name!r} does not exist in {redacted_url(url)}")
    n_trials = args.n_trials or stored_total(study)
    return stored_config(study).with_overrides(n_trials=n_trials, timeout=args.timeout, storage=url)


def _status(args: argparse.Namespace) -> int:
    from tft_hpo.results import study_rows
    from tft_hpo.storage import open_storage

    urls = [args.storage] if args.storage else [f"sqlite:///{p}" for p in sorted(Path(DEFAULT_OUTPUT_DIR).glob("*.db"))]
    if not urls:
        print(f"no studies: no {DEFAULT_OUTPUT_DIR}/*.db here (use --storage URL)")
        return 0
    for url in urls:
        rows = study_rows(open_storage(url, must_exist=True))
        print(f"{url}: {len(rows)} stud{'y' if len(rows) == 1 else 'ies'}")
        for row in rows:
            counts = ", ".join(f"{state} {n}" for state, n in sorted(row["counts"].items())) or "no trials"
            best = (
                f"best {row['best_value']:.5f} (trial {row['best_trial']})"
                if row["best_trial"] is not None
                else "no best yet"
            )
            print(f"  {row['name']}: {counts}; {best}")
    return 0


def _best(args: argparse.Namespace) -> int:
    from tft_hpo.results import best_record
    from tft_hpo.storage import open_storage

    record = best_record(open_storage(args.storage or default_storage_url(args.name), must_exist=True), args.name)
    written = []
    if args.export:
        from tft_hpo.export import export_best

        written = export_best(args.name, args.export, storage=args.storage)
    if args.json:
        print(json.dumps({**record, "exported": [str(path) for path in written]} if args.export else record))
        return 0
    print(f"study {record['study']}: best trial {record['trial']}, val_loss {record['value']:.5f}")
    print(f"  learning rate {record['learning_rate']:.3e} (range test suggested {record['lr_suggestion']})")
    for key, value in record["params"].items():
        print(f"  {key} = {value}")
    print(f"  best epoch {record['best_epoch']}, checkpoint {record['checkpoint']}")
    if written:
        print(f"exported to {args.export}: {', '.join(path.name for path in written)}")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from tft_hpo.config import load_study_file
    from tft_hpo.lr_find import lr_find
    from tft_hpo.output import configure_output

    config = load_study_file(args.study_file)
    configure_output(args.verbose)
    report = lr_find(config, args.out or config.study.study_dir / "lr_find")
    fallback = f" (fallback: {report.choice.fallback})" if report.choice.fallback else ""
    print(f"architecture: {report.architecture}")
    print(f"range test: {report.result.steps} steps in {report.result.seconds:.1f}s")
    print(f"suggested learning rate: {report.choice.lr:.3e} by {report.choice.source}{fallback}")
    print(f"curve: {report.csv_path}\nplot: {report.plot_path}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from tft_hpo.dashboard import serve_dashboard

    try:
        serve_dashboard(args.storage or default_storage_url(args.name), args.name, args.host, args.port)
    except KeyboardInterrupt:
        print("dashboard stopped")
    return 0


def _report(args: argparse.Namespace) -> int:
    from tft_hpo.report import write_report

    out = args.out or Path(DEFAULT_OUTPUT_DIR) / args.name / "report.html"
    write_report(args.name, args.storage or default_storage_url(args.name), out, top=args.top)
    print(f"report: {out}")
    return 0


_COMMANDS = {
    "run": _run,
    "resume": _resume,
    "worker": _worker,
    "status": _status,
    "best": _best,
    "lr-find": _lr_find,
    "dashboard": _dashboard,
    "report": _report,
}


if __name__ == "__main__":
    sys.exit(main())
