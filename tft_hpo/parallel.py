"""``tft-hpo run --workers K``: K worker processes on one study, sharing the cores (and the GPUs).

The parent checks the study file, the data and the storage and creates the study; then it starts K
``tft-hpo worker`` processes, forwards SIGINT and SIGTERM to them, waits for them, and reports. The
workers keep the total exact among themselves (:mod:`tft_hpo.worker`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import TextIO

from tft_hpo.config import StudyConfig
from tft_hpo.output import configure_output
from tft_hpo.runner import RunSummary, open_study, print_summary, resume_command, summarize
from tft_hpo.signals import HANDLED_SIGNALS, Interrupted, InterruptGuard
from tft_hpo.storage import redacted_url
from tft_hpo.worker import FINISHED, OVER_BUDGET


class WorkersFailed(RuntimeError):
    """A worker process ended with an error (it printed the error itself)."""


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """CPU threads each of ``workers`` processes gets: the cores shared evenly, at least 1."""
    cores = cores or len(os.sched_getaffinity(0))
    return max(1, cores // workers)


def set_worker_threads(threads: int) -> None:
    """Make this process's torch use ``threads`` CPU threads."""
    import torch

    torch.set_num_threads(threads)


def run_workers(
    config: StudyConfig, workers: int, *, force: bool = False, verbose: bool = False, out: TextIO | None = None
) -> RunSummary:
    """Run ``config``'s study with ``workers`` processes until it holds ``n_trials`` finished trials.

    Raises :class:`~tft_hpo.signals.Interrupted` (after every worker has ended its trial as FAIL,
    "interrupted") when SIGINT or SIGTERM arrives; a worker that ends with an error raises :class:`WorkersFailed`.
    """
    out = out or sys.stdout
    configure_output(verbose)
    started = time.perf_counter()
    with InterruptGuard() as guard:
        try:
            _, _, study = open_study(config, force=force)
            guard.check()  # a signal whose Interrupted a library swallowed
        except Interrupted as interrupted:
            interrupted.resume_hint = resume_command(config)
            raise
    before = len(study.get_trials(deepcopy=False))
    finished = sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))
    threads = threads_per_worker(workers)
    print(
        f"study {config.study.name!r} in {redacted_url(config.study.storage_url)}: "
        f"{finished}/{config.study.n_trials} trials finished",
        file=out,
        flush=True,
    )
    if finished >= config.study.n_trials:
        print("nothing to run: the study has reached n_trials (raise it with --n-trials)", file=out, flush=True)
        return summarize(study, config, [], wall_seconds=time.perf_counter() - started)
    print(f"starting {workers} workers, {threads} CPU thread(s) each", file=out, flush=True)
    commands = _worker_commands(config, workers, threads, verbose)
    signum, failed = _supervise(commands, _device_assignments(config, workers))
    if signum is not None:
        interrupted = Interrupted(signum)
        interrupted.resume_hint = resume_command(config)
        raise interrupted
    if failed:
        raise WorkersFailed(f"{len(failed)} of {workers} workers ended with exit status {', '.join(map(str, failed))}")
    new_trials = study.get_trials(deepcopy=False)[before:]
    ran = [t.number for t in new_trials if t.user_attrs.get("fail_reason") != OVER_BUDGET]
    summary = summarize(study, config, ran, wall_seconds=time.perf_counter() - started)
    print_summary(summary, study, out)
    return summary


def _worker_commands(config: StudyConfig, workers: int, threads: int, verbose: bool) -> list[list[str]]:
    command = [
        sys.executable,
        "-m",
        "tft_hpo.cli",
        "worker",
        config.study.name,
        "--storage",
        config.study.storage_url,
        "--n-trials",
        str(config.study.n_trials),
        "--threads",
        str(threads),
    ]
    if config.study.timeout is not None:
        command += ["--timeout", str(config.study.timeout)]
    if verbose:
        command.append("--verbose")
    return [command] * workers


def _device_assignments(config: StudyConfig, workers: int) -> list[dict[str, str]]:
    """Per worker, the environment that pins it to one GPU when several are visible (else nothing)."""
    if config.trainer.accelerator not in ("auto", "gpu", "cuda") or config.trainer.devices != 1:
        return [{} for _ in range(workers)]
    import torch

    count = torch.cuda.device_count()
    if count < 2:
        return [{} for _ in range(workers)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(count)]
    return [{"CUDA_VISIBLE_DEVICES": ids[i % len(ids)]} for i in range(workers)]


def _supervise(commands: list[list[str]], environments: list[dict[str, str]]) -> tuple[int | None, list[int]]:
    """Start the workers, forward SIGINT/SIGTERM to them, wait; the signal received (if any), failed statuses.

    Workers run in their own sessions, so that a terminal's Ctrl-C reaches them once, through here.
    """
    processes: list[subprocess.Popen[bytes]] = []
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in HANDLED_SIGNALS}
    try:
        for command, environment in zip(commands, environments, strict=True):
            processes.append(subprocess.Popen(command, env={**os.environ, **environment}, start_new_session=True))
            if received:
                processes[-1].send_signal(received[0])
        statuses = [process.wait() for process in processes]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return (received[0] if received else None), [status for status in statuses if status != 0]
