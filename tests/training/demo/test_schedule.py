"""``schedule.run_concurrently`` with plain commands: a command gets every core only when it starts with
nothing else running and nothing left to run that could start beside it; ``dependents``."""

import os
import sys

from funaudiochat.training.demo.schedule import dependents, run_concurrently, threads_per_job, usable_cores

# a command that writes the OpenMP threads it was given to its log
SAY_THREADS = [sys.executable, "-c", "import os; print(os.environ['OMP_NUM_THREADS'])"]
ALL_CORES = str(usable_cores())
SHARED = str(threads_per_job(2))


def threads_given(tmp_path, names, needs) -> dict[str, str]:
    run_concurrently({name: SAY_THREADS for name in names}, needs, 2, tmp_path, log=lambda _: None)
    return {name: (tmp_path / f"{name}.log").read_text().strip() for name in names}


def test_dependents_are_transitive():
    needs = {"b": ["a"], "c": ["b"], "d": ["a"], "e": []}
    assert dependents(needs, ["a", "b", "c", "d", "e"]) == {
        "a": {"b", "c", "d"},
        "b": {"c"},
        "c": set(),
        "d": set(),
        "e": set(),
    }


def test_the_tail_of_the_graph_gets_every_core(tmp_path):
    """``first`` and ``side`` start together and share the cores; ``tail`` needs both and starts alone
    with only its dependent left, which also runs alone."""
    needs = {"tail": ["first", "side"], "last": ["tail"]}
    said = threads_given(tmp_path, ["first", "side", "tail", "last"], needs)
    assert said == {"first": SHARED, "side": SHARED, "tail": ALL_CORES, "last": ALL_CORES}


def test_a_command_that_starts_alone_shares_when_others_could_start_beside_it(tmp_path):
    """``root`` starts alone and everything left needs it: every core. Then ``b`` and ``c`` (neither needs
    the other) share them."""
    said = threads_given(tmp_path, ["root", "b", "c"], {"b": ["root"], "c": ["root"]})
    assert said == {"root": ALL_CORES, "b": SHARED, "c": SHARED}


def test_omp_num_threads_given_to_the_build_is_all_it_shares_out(tmp_path, monkeypatch):
    """A build started with ``OMP_NUM_THREADS=1`` (beside other work) gives no stage more than that."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    said = threads_given(tmp_path, ["first", "side", "tail"], {"tail": ["first", "side"]})
    assert said == {"first": "1", "side": "1", "tail": "1"}
    for junk in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", junk)
        assert usable_cores() == (os.cpu_count() or 1)


def test_sigterm_to_the_scheduler_stops_the_running_commands(tmp_path):
    """A build stopped with SIGTERM leaves no stage process running on in its run folder."""
    import signal
    import subprocess
    import time

    pid_file = tmp_path / "child.pid"
    child = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from pathlib import Path; from funaudiochat.training.demo.schedule import run_concurrently;"
            f"run_concurrently({{'slow': {child!r}}}, {{}}, 1, Path({str(tmp_path / 'logs')!r}))",
        ]
    )
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=30) != 0
    try:
        os.kill(child_pid, 0)
    except ProcessLookupError:
        return  # the command was terminated with its scheduler
    os.kill(child_pid, signal.SIGKILL)
    raise AssertionError(f"the command (pid {child_pid}) outlived its scheduler")


def test_the_critical_path_is_the_longest_chain_of_stages_each_after_one_it_needs():
    from funaudiochat.training.demo.schedule import critical_path

    needs = {
        "text": ["corpus"],
        "tower": ["text", "speech"],
        "vocoder": ["speech"],
        "package": ["tower", "vocoder"],
    }
    seconds = {"corpus": 1.0, "speech": 100.0, "text": 50.0, "tower": 30.0, "vocoder": 200.0, "package": 2.0}
    assert critical_path(seconds, needs) == (302.0, ["speech", "vocoder", "package"])
    seconds["text"] = 500.0  # now the text chain is the longer way to the package
    assert critical_path(seconds, needs) == (533.0, ["corpus", "text", "tower", "package"])
    assert critical_path({}, {}) == (0, [])
    # the package not yet timed (its card is written as it runs): the chain still ends with it
    del seconds["package"]
    assert critical_path(seconds, needs) == (531.0, ["corpus", "text", "tower", "package"])


# a command that watches its thread file for ``seconds`` (or until it says ``until``) and prints what it said
WATCH_THREADS = """
import os, sys, time
from pathlib import Path
path, seconds, until = Path(os.environ["FUNAUDIOCHAT_THREADS_FILE"]), float(sys.argv[1]), sys.argv[2]
end = time.monotonic() + seconds
while time.monotonic() < end and path.read_text().strip() != until:
    time.sleep(0.02)
print(path.read_text().strip())
"""


def watcher(seconds: float, until: str = "never") -> list[str]:
    return [sys.executable, "-c", WATCH_THREADS, str(seconds), until]


def test_a_command_left_alone_for_good_is_raised_to_every_core(tmp_path, monkeypatch):
    """``quick`` and ``long`` share two cores; when ``quick`` ends nothing can start beside ``long``, so its
    thread file gives it both."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    lines = []
    quick = [sys.executable, "-c", "import time; time.sleep(0.3)"]
    run_concurrently({"quick": quick, "long": watcher(30, until="2")}, {}, 2, tmp_path, log=lines.append)
    assert (tmp_path / "long.log").read_text().strip() == "2"
    assert "[long] raised to 2 thread(s): nothing else can run beside it" in lines
    assert not any(line.startswith("[quick] raised") for line in lines)


def test_a_command_is_not_raised_while_another_can_start_beside_it(tmp_path, monkeypatch):
    """When ``quick`` ends, ``after`` (which needs it) starts beside ``watch``: ``watch`` keeps its share."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    lines = []
    quick = [sys.executable, "-c", "import time; time.sleep(0.2)"]
    after = [sys.executable, "-c", "import time; time.sleep(3)"]
    commands = {"quick": quick, "watch": watcher(1.5), "after": after}
    run_concurrently(commands, {"after": ["quick"]}, 2, tmp_path, log=lines.append)
    assert (tmp_path / "watch.log").read_text().strip() == "1"
    assert not any(line.startswith("[watch] raised") for line in lines)
