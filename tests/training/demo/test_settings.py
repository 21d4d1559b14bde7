"""The demo recipe's settings: each bound to a field from the command line and checked."""

import pytest
from funaudiochat.training.demo.build import DemoSettings


def test_settings_can_be_changed_from_the_command_line():
    from funaudiochat.training.demo.build import settings_with

    changed = settings_with(DemoSettings(), ["cocktail_alpha=1.0", "dpo_steps=7", "pairs_per_file=3"])
    assert (changed.cocktail_alpha, changed.dpo_steps, changed.pairs_per_file) == (1.0, 7, 3)
    assert settings_with(DemoSettings(), ["pairs_per_file=none"]).pairs_per_file is None
    with pytest.raises(ValueError, match="NAME one of"):
        settings_with(DemoSettings(), ["nope=1"])
    with pytest.raises(ValueError, match="is not a int"):
        settings_with(DemoSettings(), ["dpo_steps=many"])
    assert settings_with(DemoSettings(), ["reply_alignment=words"]).reply_alignment == "words"
    with pytest.raises(ValueError, match=r"reply_alignment must be one of \['official', 'words'\]"):
        settings_with(DemoSettings(), ["reply_alignment=moshi"])
    assert settings_with(DemoSettings(), ["tower_precision=32-true"]).tower_precision == "32-true"
    with pytest.raises(ValueError, match=r"llm_precision must be one of \['32-true', 'bf16-mixed'\]"):
        settings_with(DemoSettings(), ["llm_precision=16-mixed"])
    assert settings_with(DemoSettings(), ["group_size=1"]).group_size == 1
    with pytest.raises(ValueError, match=r"group_size must be one of \[1, 5\]"):
        settings_with(DemoSettings(), ["group_size=2"])
    assert settings_with(DemoSettings(), ["srh_width=256", "srh_layers=4"]).srh_width == 256
    with pytest.raises(ValueError, match="srh_width must be a positive multiple of 64, got 96"):
        settings_with(DemoSettings(), ["srh_width=96"])
    with pytest.raises(ValueError, match="srh_layers must be at least 1, got 0"):
        settings_with(DemoSettings(), ["srh_layers=0"])
