"""The demo build's products kept in the repository (``artifacts/demo_build``) are whole and restorable."""

import json
from pathlib import Path

import pytest
from funaudiochat.training.demo.build import STAGES, DemoBuild
from funaudiochat.training.demo.products import product_paths, restore_products

SAVED = Path(__file__).resolve().parents[3] / "artifacts" / "demo_build"
pytestmark = pytest.mark.skipif(not SAVED.is_dir(), reason=f"no saved products in {SAVED}")


def test_every_saved_stage_has_its_record_and_products():
    from safetensors import safe_open

    stages = sorted(path.parent.name for path in SAVED.glob("*/stage.json"))
    assert stages and set(stages) <= set(STAGES)
    for name in stages:
        record = json.loads((SAVED / name / "stage.json").read_text())
        assert record["stage"] == name and set(record["settings_read"]) <= set(record["settings"])
        products = product_paths(SAVED / name, STAGES[name].products)
        assert bool(products) == bool(STAGES[name].products), name
        for weights in [p for path in products for p in ([path] if path.is_file() else path.rglob("*"))]:
            if weights.suffix == ".safetensors":
                with safe_open(weights, "pt") as handle:  # the header names real tensors
                    assert list(handle.keys()), weights


def test_the_saved_products_restore_into_a_new_run(tmp_path):
    build = DemoBuild(tmp_path / "run", log=lambda _: None)
    outcome = restore_products(build, SAVED)
    restored = [name for name, said in outcome.items() if said == "restored"]
    assert restored, outcome
    for name in restored:
        for path in product_paths(SAVED / name, STAGES[name].products):
            assert (tmp_path / "run" / name / path.relative_to(SAVED / name)).exists()
