"""A stage's seconds add up over its attempts: a killed or failed attempt's time stays in its record."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from funaudiochat.training.demo.build import DemoBuild, DemoSettings, DemoStage
from funaudiochat.training.demo.stage_clock import StageClock, clock_file


def test_clock_adds_this_attempt_to_the_earlier_ones(tmp_path):
    path = tmp_path / "clock" / "stage.json"
    with StageClock(path) as first:
        time.sleep(0.05)
    assert first.attempts == 1 and first.seconds >= 0.05
    assert json.loads(path.read_text()) == {"seconds": round(first.seconds, 2), "attempts": 1}
    with StageClock(path) as second:
        time.sleep(0.05)
    assert second.attempts == 2
    assert second.seconds >= round(first.seconds, 2) + 0.05


def test_clock_writes_while_the_attempt_runs(tmp_path):
    """What a killed attempt leaves: its seconds up to the last beat."""
    path = tmp_path / "stage.json"
    with StageClock(path, every=0.02):
        time.sleep(0.2)
        written = json.loads(path.read_text())
    assert written["attempts"] == 1 and written["seconds"] >= 0.1


# a stage that runs until the file beside its clock appears, timed with quick beats
WAITER = """
import sys, time
from pathlib import Path
import funaudiochat.base.atomic  # what the clock's first write imports, before its beats start
from funaudiochat.training.demo.stage_clock import StageClock
path = Path(sys.argv[1])
with StageClock(path, every=0.05, pause_slack=0.3):
    print("started", flush=True)
    while not path.with_suffix(".go").exists():
        time.sleep(0.01)
"""


def test_a_stopped_process_is_not_counted(tmp_path):
    """SIGSTOP (a build paused while the machine does other work) then SIGCONT: the pause is kept apart."""
    path = tmp_path / "stage.json"
    child = subprocess.Popen([sys.executable, "-c", WAITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "started\n"
    began = time.perf_counter()
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGSTOP)
    time.sleep(1.5)
    os.kill(child.pid, signal.SIGCONT)
    time.sleep(0.2)
    path.with_suffix(".go").touch()
    assert child.wait(timeout=30) == 0
    wall = time.perf_counter() - began
    record = json.loads(path.read_text())
    assert 1.0 <= record["paused_seconds"] <= wall, (record, wall)
    assert record["seconds"] <= wall - 1.0, (record, wall)
    # the next attempt adds to both
    with StageClock(path) as again:
        pass
    assert again.paused_seconds == record["paused_seconds"]


def test_a_late_beat_within_the_slack_counts_whole(tmp_path):
    clock = StageClock(tmp_path / "stage.json", every=1.0, pause_slack=2.0)
    assert clock._split(2.9) == (2.9, 0.0)
    assert clock._split(3.5) == (1.0, 2.5)


def test_a_clock_file_cut_short_starts_the_count_again(tmp_path):
    path = tmp_path / "stage.json"
    path.write_text('{"seconds": 12')
    clock = StageClock(path)
    assert clock.seconds == 0.0 and clock.attempts == 1


def test_clock_wants_a_positive_beat_and_slack(tmp_path):
    with pytest.raises(ValueError, match="every must be > 0 seconds, got 0"):
        StageClock(tmp_path / "stage.json", every=0)
    with pytest.raises(ValueError, match="pause_slack must be > 0 seconds, got -1"):
        StageClock(tmp_path / "stage.json", pause_slack=-1)


def test_a_stage_resumed_after_a_failure_records_both_attempts(tmp_path):
    attempts = []

    def flaky(build):
        attempts.append(time.perf_counter())
        time.sleep(0.1)
        if len(attempts) == 1:
            raise RuntimeError("killed")
        build.folder("flaky").mkdir(parents=True, exist_ok=True)
        return {}

    lines = []
    stages = {"flaky": DemoStage(flaky, "fails once", needs=())}
    build = DemoBuild(tmp_path / "run", DemoSettings(), log=lines.append, stages=stages)
    with pytest.raises(RuntimeError, match="killed"):
        build.run()
    assert json.loads(clock_file(build.root, "flaky").read_text())["attempts"] == 1
    seconds = build.run()["flaky"]
    assert seconds >= 0.2, "both attempts' sleeps count"
    record = json.loads((build.folder("flaky") / "stage.json").read_text())
    assert record["attempts"] == 2 and record["seconds"] == round(seconds, 2)
    assert any(line.startswith("[flaky] finished in") and line.endswith("over 2 attempts") for line in lines)
    # a forced run starts its time again
    build.run(force=True)
    assert json.loads((build.folder("flaky") / "stage.json").read_text())["attempts"] == 1
