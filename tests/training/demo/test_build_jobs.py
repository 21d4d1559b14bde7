"""``DemoBuild.run(jobs=N)`` runs the recipe as a dependency graph: independent stages at once, each in its
own process, a stage only after the stages it needs; ``needs`` matches what each stage ``require``s."""

import ast
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from funaudiochat.training.demo.build import (
    STAGE_COMMAND,
    STAGES,
    DemoBuild,
    DemoSettings,
    main,
    settings_assignments,
    settings_with,
)
from funaudiochat.training.demo.schedule import StagesFailed, threads_per_job

# A recipe of stages that sleep and record when they ran (``<stage>/start`` and ``<stage>/end``, wall
# clock) and how they ran; run as a script it is ``main`` over these stages, as ``STAGE_COMMAND`` is over
# the real ones. A child takes seconds to start (it imports torch), hence few of them.
FAKE_RECIPE = """
import os
import sys
import time

from funaudiochat.training.demo.build import DemoStage, main

SLEEP = 1.0  # the seconds of the stages that sleep


def timed(name, sleeps=False, fail=False, after=None):
    def run(build):
        for need in STAGES[name].needs:
            build.require(need, name)
        folder = build.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "start").write_text(repr(time.time()))
        while after and not (build.root / after).exists():
            time.sleep(0.05)
        time.sleep(SLEEP if sleeps else 0.0)
        if fail:
            raise RuntimeError(f"{name} fails on purpose")
        (folder / "end").write_text(repr(time.time()))
        return {"pid": os.getpid(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}

    return run


STAGES = {
    "left": DemoStage(timed("left", sleeps=True), "sleeps", needs=()),
    "right": DemoStage(timed("right", sleeps=True), "sleeps", needs=()),
    "joined": DemoStage(timed("joined"), "reads left and right", needs=("left", "right")),
    "broken": DemoStage(timed("broken", fail=True), "fails", needs=()),
    "slow": DemoStage(timed("slow", sleeps=True, after="broken/start"), "outlasts broken", needs=()),
    "later": DemoStage(timed("later"), "ready, waits for a free slot", needs=()),
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], stages=STAGES, stage_command=(sys.executable, __file__)))
"""


@pytest.fixture
def recipe(tmp_path):
    """The fake recipe, written to ``tmp_path`` and imported (its stages run here with ``jobs=1``)."""
    script = tmp_path / "fake_recipe.py"
    script.write_text(FAKE_RECIPE)
    spec = importlib.util.spec_from_file_location("fake_recipe", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_build(recipe, settings=None, lines=None):
    """A build in ``run/`` beside the fake recipe, whose stages run in a new process as its script."""
    return DemoBuild(
        Path(recipe.__file__).parent / "run",
        settings or DemoSettings(),
        log=lines.append if lines is not None else (lambda _: None),
        stages=recipe.STAGES,
        stage_command=(sys.executable, recipe.__file__),
    )


def interval(build, name):
    folder = build.folder(name)
    return float((folder / "start").read_text()), float((folder / "end").read_text())


def record(build, name):
    return json.loads((build.folder(name) / "stage.json").read_text())


def test_independent_stages_overlap_and_a_dependent_one_waits_for_them(recipe):
    settings = DemoSettings(seed=7, pairs_per_file=2, cocktail_alpha=1.0)
    lines = []
    build = fake_build(recipe, settings, lines)
    began = time.perf_counter()
    took = build.run(["left", "right", "joined"], jobs=2)
    elapsed = time.perf_counter() - began
    assert list(took) == ["left", "right", "joined"]
    (left_start, left_end), (right_start, right_end) = interval(build, "left"), interval(build, "right")
    assert left_start < right_end and right_start < left_end, "left and right ran at the same time"
    assert interval(build, "joined")[0] > max(left_end, right_end), "joined started after its needs"
    assert set(json.loads((build.root / "timings.json").read_text())) == {"left", "right", "joined"}
    for name in took:
        assert record(build, name)["pid"] != os.getpid(), "each stage runs in its own process"
        # left and right share the cores; joined, the last, starts alone with nothing left to run beside it
        threads = str(os.cpu_count() if name == "joined" else threads_per_job(2))
        assert record(build, name)["omp_threads"] == threads
        assert record(build, name)["settings"] == vars(settings), "the children get the parent's settings"
        log = build.root / "logs" / f"{name}.log"
        started = f"[{name}] started, {threads} thread(s) (log: {log})"
        assert started in lines and f"[{name}] finished in" in log.read_text()
        assert any(line.startswith(f"[{name}] exited after") for line in lines)
        assert took[name] == record(build, name)["seconds"], "the stage's own clock, not its process's"
    # the build's own clock: the schedule's wall time, once (the stages it started do not add theirs)
    clock = json.loads((build.root / "clock" / "build.json").read_text())
    assert clock["attempts"] == 1 and max(took.values()) < clock["seconds"] <= elapsed + 0.01
    assert any(line.startswith("[build] ") and "1 run" in line for line in lines)
    assert build.run(["left", "right", "joined"], jobs=2) == {}, "done stages are skipped"
    assert json.loads((build.root / "clock" / "build.json").read_text()) == clock, "nothing ran: no time"


def test_restored_stages_run_here_first_and_leave_the_cores_to_the_rest(recipe):
    """A stage whose products were restored only checks them: run in this process before the graph, it does
    not share the cores with a long stage that would start beside it (which would keep part of them)."""
    from funaudiochat.training.demo.products import RESTORED_FILE

    recipe.SLEEP = 0.2
    build = fake_build(recipe)
    build.folder("left").mkdir(parents=True)
    (build.folder("left") / RESTORED_FILE).write_text("{}")
    took = build.run(["left", "right"], jobs=2)
    assert set(took) == {"left", "right"}
    assert record(build, "left")["pid"] == os.getpid() and record(build, "left")["restored"] == {}
    assert record(build, "right")["pid"] != os.getpid()
    assert record(build, "right")["omp_threads"] == str(os.cpu_count()), "right started alone"


def test_one_job_runs_the_stages_in_this_process_one_after_the_other(recipe):
    recipe.SLEEP = 0.2  # the stages run here; sleeping longer proves nothing more
    build = fake_build(recipe)
    assert list(build.run(["left", "right"])) == ["left", "right"]
    assert interval(build, "left")[1] <= interval(build, "right")[0]
    assert record(build, "left")["pid"] == os.getpid() and not (build.root / "logs").exists()


def test_the_command_line_with_one_job_runs_each_stage_in_a_process_of_its_own(recipe, capfd):
    """``--jobs 1`` (the default): one after the other, but each stage in a new process with every core, its
    output on the console; a long process that had run the tower's stages slowed the later ones 2-3x."""
    recipe.SLEEP = 0.2
    root = Path(recipe.__file__).parent / "run"
    argv = ["--out", str(root), "--stage", "left", "--stage", "right"]
    assert main(argv, stages=recipe.STAGES, stage_command=(sys.executable, recipe.__file__)) == 0
    build = fake_build(recipe)
    assert interval(build, "left")[1] <= interval(build, "right")[0], "one after the other"
    pids = {record(build, name)["pid"] for name in ("left", "right")}
    assert len(pids) == 2 and os.getpid() not in pids, "each in a process of its own"
    assert {record(build, name)["omp_threads"] for name in ("left", "right")} == {str(os.cpu_count())}
    output = capfd.readouterr().out
    assert "[left] started" in output and "its output below" in output
    assert "[right] finished in" in output, "the child's own lines reach the console"
    assert not (root / "logs").exists()


def test_a_failed_stage_starts_nothing_new_and_is_named_with_its_log(recipe):
    lines = []
    build = fake_build(recipe, lines=lines)
    build.folder("slow").mkdir(parents=True)
    (build.folder("slow") / "stage.json").write_text("{}")  # done already: it runs because forced
    log = build.root / "logs" / "broken.log"
    with pytest.raises(StagesFailed, match=rf"'broken' \(log: {log}\)"):
        build.run(["broken", "slow", "later"], force=True, jobs=2)
    assert "fails on purpose" in log.read_text()
    assert any(line.startswith(f"[broken] FAILED (exit code 1, see {log})") for line in lines)
    assert (build.folder("slow") / "end").is_file(), "the stage running beside the failed one finished"
    assert record(build, "slow")["pid"] != os.getpid(), "and was redone: its process got --force"
    assert not build.folder("later").exists() and not any("[later]" in line for line in lines)


def test_a_need_neither_done_nor_in_the_run_is_refused_before_anything_starts(recipe):
    build = fake_build(recipe)
    with pytest.raises(ValueError, match=r"stage 'joined' needs stage 'left'.*--stage left"):
        build.run(["right", "joined"], jobs=2)
    assert not build.root.exists() or not any(build.root.iterdir()), "nothing ran"


def test_jobs_must_be_at_least_one(recipe, tmp_path, capsys):
    with pytest.raises(ValueError, match="at least 1"):
        fake_build(recipe).run(["left"], jobs=0)
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--jobs", "0"])
    assert (
        exit_info.value.code == 2 and "--jobs: give a whole number of stages >= 1" in capsys.readouterr().err
    )


def test_every_run_that_runs_a_stage_adds_its_time_to_the_build_clock(recipe):
    """``clock/build.json``: the wall clock of every run in the folder, here two in this process."""
    from funaudiochat.training.demo.package_stage import build_clock_row

    recipe.SLEEP = 0.2
    build = fake_build(recipe)
    assert build_clock_row(build) == "", "no clock before anything ran"
    build.run(["left"])
    first = json.loads((build.root / "clock" / "build.json").read_text())
    build.run(["left", "right"])
    second = json.loads((build.root / "clock" / "build.json").read_text())
    assert first["attempts"] == 1 and second["attempts"] == 2
    assert first["seconds"] >= recipe.SLEEP and second["seconds"] >= first["seconds"] + recipe.SLEEP
    assert build_clock_row(build) == (
        f"| wall clock of the build up to `package` (2 runs of `train_demo.py`) "
        f"| {second['seconds']:.0f} ({second['seconds'] / 3600:.2f} h) |\n"
    )
    build.run(["right"], force=True, build_clock=False)  # a stage a schedule started: the schedule's time
    assert json.loads((build.root / "clock" / "build.json").read_text()) == second


def test_no_stage_may_take_the_build_clocks_name(recipe, tmp_path):
    with pytest.raises(ValueError, match="no stage may be called 'build'"):
        DemoBuild(tmp_path, stages={**recipe.STAGES, "build": recipe.STAGES["left"]})


def test_the_stage_command_is_the_command_line():
    usage = subprocess.run([*STAGE_COMMAND, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--jobs N" in usage and "--stage STAGE" in usage


def test_settings_travel_to_the_children_as_assignments():
    assert settings_assignments(DemoSettings()) == []
    settings = DemoSettings(seed=3, pairs_per_file=2, dpo_lr=5e-7, text_lm_size="tiny", cocktail_alpha=1.0)
    assert settings_with(DemoSettings(), settings_assignments(settings)) == settings
    with pytest.raises(ValueError, match="do not read back"):
        settings_assignments(DemoSettings(text_lm_size="none"))


def required(function) -> list[tuple[str, str]]:
    """The ``(stage, by)`` of every ``*.require(stage, by)`` call in ``function``'s source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "require"
    ]
    assert all(isinstance(arg, ast.Constant) for call in calls for arg in call.args), "literal stage names"
    return [(call.args[0].value, call.args[1].value) for call in calls]


@pytest.mark.parametrize("name", list(STAGES))
def test_needs_are_the_stages_a_stage_requires_and_come_before_it(name):
    stage = STAGES[name]
    calls = required(stage.run)
    assert {by for _, by in calls} <= {name}, "each require names the stage that reads"
    assert sorted(stage.needs) == sorted({needed for needed, _ in calls})
    earlier = list(STAGES)[: list(STAGES).index(name)]
    assert all(need in earlier for need in stage.needs)


def test_the_recipe_order_starts_the_longer_way_first():
    """``--jobs N`` starts ready stages in the recipe's order: after ``text_lm`` the tower's two stages (the
    longer way to ``pre_alignment``) before ``text_lm_copy``; the vocoders after the speech model's chain."""
    order = list(STAGES)
    assert order.index("audio_encoder") < order.index("tower_match") < order.index("text_lm_copy")
    assert max(order.index(name) for name in ("pre_alignment", "core_cocktail", "dpo")) < min(
        order.index("vocoder_hift"), order.index("vocoder_flow")
    )
