"""Run commands as a dependency graph, several at once, each in its own process with its own log.

``run_concurrently(commands, needs, jobs, log_dir)`` is how ``DemoBuild.run(jobs=N)`` runs the demo
recipe's stages: a command starts once every command it needs has exited with 0, at most ``jobs`` run at
once, and ready ones start in the order of ``commands``. Each process gets ``cores // jobs`` OpenMP and
MKL threads (so concurrent torch processes do not fight over the cores; ``cores``: ``OMP_NUM_THREADS``
when this process has it, else every core), or all those cores when it starts with
nothing else running and every command still to run needs it (the recipe's tail: nothing can start beside
it, so a core would idle). One started beside others is raised to all those cores when it is left so
(its fits read the count between steps from ``log_dir/<name>.threads``: ``training.threads``). Each
command writes its stdout and stderr to ``log_dir/<name>.log`` (``log_dir=None``: to this process's
own, as ``--jobs 1`` does). A failure starts nothing new: the running ones finish, then
``StagesFailed``. Ctrl-C or a SIGTERM to the scheduling process
terminates the running commands before it exits, so none is left training in the run folder beside a
build started again."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

POLL_SECONDS = 0.1  # how often the running processes are checked
TERMINATE_SECONDS = 10.0  # how long a terminated process gets before it is killed


class StagesFailed(RuntimeError):
    """One or more commands of ``run_concurrently`` exited with a non-zero code."""


def usable_cores() -> int:
    """The cores the commands may use: ``OMP_NUM_THREADS`` when this process was given it (a build sharing
    the machine with other work), else every core."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """The OpenMP/MKL threads each of ``jobs`` concurrent processes gets: ``usable_cores`` shared out, at
    least 1."""
    return max(1, usable_cores() // jobs)


def dependents(needs: Mapping[str, Collection[str]], order: Sequence[str]) -> dict[str, set[str]]:
    """Each command of ``order`` -> the commands that need it, directly or through others."""
    out: dict[str, set[str]] = {name: set() for name in order}
    for name in reversed(order):  # a command's needs come before it, so its dependents are complete here
        for need in needs.get(name, ()):
            out[need] |= {name} | out[name]
    return out


def critical_path(
    seconds: Mapping[str, float], needs: Mapping[str, Collection[str]]
) -> tuple[float, list[str]]:
    """The longest chain of stages, each after one it needs: what no number of jobs shortens.

    seconds: each stage's seconds (a stage without an entry counts 0).
    needs: each stage's inputs (those not in ``needs`` have none); every stage after its inputs in order.
    Returns the chain's seconds and its stages, first to last.

        >>> critical_path({"a": 2, "b": 5, "c": 1}, {"b": ["a"], "c": ["a"]})
        (7, ['a', 'b'])
    """
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(stage: str) -> tuple[float, list[str]]:
        if stage not in best:
            before = max((longest(need) for need in needs.get(stage, ())), default=(0, []))
            best[stage] = (before[0] + seconds.get(stage, 0), [*before[1], stage])
        return best[stage]

    # a chain that goes on through stages of no seconds (the package before its own are counted) is the
    # one reported; among equal chains the first in ``needs``'s order
    stages = [*needs, *(stage for stage in seconds if stage not in needs)]
    return max((longest(stage) for stage in stages), default=(0, []), key=lambda t: (t[0], len(t[1])))


def run_concurrently(
    commands: Mapping[str, Sequence[str]],
    needs: Mapping[str, Collection[str]],
    jobs: int,
    log_dir: Path | None,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Run every command of ``commands`` (name -> argv) and return each one's wall-clock seconds (from its
    start to its exit, any time it was stopped included), in ``commands`` order.

    ``needs[name]`` names the commands that must have exited with 0 before ``name`` starts; each must come
    before ``name`` in ``commands``. ``log_dir``: where each command's output goes (``<name>.log``), or
    ``None`` for this process's stdout and stderr. On Ctrl-C, SIGTERM (when called from the main thread) or
    any error here the running processes are terminated.

    Raises:
        ValueError: ``jobs`` < 1, or a need that is not an earlier command.
        StagesFailed: a command exited with a non-zero code (after the running ones have finished)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    order = list(commands)
    for name in order:
        later = [need for need in needs.get(name, ()) if need not in order[: order.index(name)]]
        if later:
            raise ValueError(f"{name!r} needs {later}, which are not commands before it in {order}")
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="threads-") as scratch:
        threads_dir = log_dir if log_dir is not None else Path(scratch)
        return _run(commands, needs, jobs, log_dir, threads_dir, log)


def _run(
    commands: Mapping[str, Sequence[str]],
    needs: Mapping[str, Collection[str]],
    jobs: int,
    log_dir: Path | None,
    threads_dir: Path,
    log: Callable[[str], None],
) -> dict[str, float]:
    """``run_concurrently``'s loop, the thread files of the commands in ``threads_dir``."""
    from ..threads import THREADS_FILE_ENV, write_threads

    order = list(commands)
    log_paths = {name: log_dir / f"{name}.log" if log_dir is not None else None for name in order}
    thread_files = {name: threads_dir / f"{name}.threads" for name in order}
    needed_by = dependents(needs, order)
    pending, finished, failed = list(order), set(), []
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    threads_of: dict[str, int] = {}
    took: dict[str, float] = {}
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main_thread else None
    try:
        while pending or running:
            ready = [] if failed else [name for name in pending if set(needs.get(name, ())) <= finished]
            for name in ready[: jobs - len(running)]:
                pending.remove(name)
                alone = not running and set(pending) <= needed_by[name]  # nothing can start beside it
                threads_of[name] = usable_cores() if alone else threads_per_job(jobs)
                threads = str(threads_of[name])
                write_threads(thread_files[name], threads_of[name])
                env = {
                    **os.environ,
                    "OMP_NUM_THREADS": threads,
                    "MKL_NUM_THREADS": threads,
                    THREADS_FILE_ENV: str(thread_files[name]),
                }
                running[name] = (_start(commands[name], env, log_paths[name]), time.perf_counter())
                output = f"log: {log_paths[name]}" if log_paths[name] is not None else "its output below"
                log(f"[{name}] started, {threads} thread(s) ({output})")
            if not running:
                break  # a failure left the pending ones unstarted
            if len(running) == 1 and not failed:
                (last,) = running
                if threads_of[last] < usable_cores() and set(pending) <= needed_by[last]:
                    threads_of[last] = usable_cores()  # left alone for good: the idle cores are its
                    write_threads(thread_files[last], threads_of[last])
                    log(f"[{last}] raised to {threads_of[last]} thread(s): nothing else can run beside it")
            time.sleep(POLL_SECONDS)
            for name, (process, start) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[name]
                if process.returncode == 0:
                    finished.add(name)
                    took[name] = time.perf_counter() - start
                    log(f"[{name}] exited after {took[name]:.1f} s of wall clock")
                else:
                    failed.append(name)
                    log(f"[{name}] FAILED (exit code {process.returncode}, see {log_paths[name] or 'above'})")
    finally:
        _stop([process for process, _ in running.values()])
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    if failed:
        logs = ", ".join(f"{name!r} (log: {log_paths[name] or 'its output above'})" for name in failed)
        raise StagesFailed(f"stage(s) failed: {logs}; not started: {pending or 'none'}")
    return {name: took[name] for name in order}


def _start(argv: Sequence[str], env: dict[str, str], log_path: Path | None) -> subprocess.Popen:
    """``argv`` started with ``env``, its stdout and stderr to ``log_path`` (else this process's)."""
    if log_path is None:
        return subprocess.Popen(argv, env=env)
    with open(log_path, "w") as out:  # the child keeps its own copy of the file
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def _interrupt(signum, frame) -> None:
    """SIGTERM handler: unwind as Ctrl-C does, so that the running commands are terminated."""
    raise KeyboardInterrupt(f"signal {signum}")


def _stop(processes: list[subprocess.Popen]) -> None:
    """Terminate ``processes`` and wait for them (killing those that outlast ``TERMINATE_SECONDS``)."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=TERMINATE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
