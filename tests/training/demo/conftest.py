"""The demo recipe's tiny build, made once for the tests of this folder: each fixture runs more of the
recipe in the same run folder (corpus and text tokenizer; speech; text LLM; towers; the finishing stages
and the package), at settings small enough that the whole chain takes about a minute. ``tiny`` and
``tiny_finish`` give the settings (a fresh dict each) to tests that run a stage again at other settings."""

import pytest
from funaudiochat.training.demo.build import DemoBuild, DemoSettings


@pytest.fixture(scope="package")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    lines = []
    took = DemoBuild(root, DemoSettings(text_vocab_size=400), log=lines.append).run(
        ["corpus", "text_tokenizer"]
    )
    return root, took, lines


@pytest.fixture(scope="package")
def spoken(built):
    root, _, _ = built
    settings = DemoSettings(text_vocab_size=400, pairs_per_file=2, tokenizer_steps=2)
    DemoBuild(root, settings, log=lambda _: None).run(
        ["speech", "practice_speech", "speech_tokenizer", "conversations"]
    )
    return root


TINY = dict(
    text_vocab_size=400,
    pairs_per_file=3,
    tokenizer_steps=2,
    text_lm_steps=4,
    text_lm_size="tiny",
    text_lm_copy_steps=2,
    text_lm_copies=20,
    audio_encoder_steps=2,
    audio_encoder_spliced=3,
    audio_encoder_width=128,
    srh_width=128,
    srh_layers=3,
    tower_match_steps=2,
    listening_steps=2,
    pre_alignment_steps=2,
    compile_llm=False,  # compiling costs a minute a fit; the compiled fit is tested in test_text_lm.py
)


@pytest.fixture(scope="package")
def with_text_lm(built):
    root, _, _ = built
    DemoBuild(root, DemoSettings(**TINY), log=lambda _: None).run(["text_lm"])
    return root


@pytest.fixture(scope="package")
def with_audio_encoder(with_text_lm, spoken):
    stages = ["text_lm_copy", "audio_encoder", "tower_match"]
    DemoBuild(with_text_lm, DemoSettings(**TINY), log=lambda _: None).run(stages)
    return with_text_lm


TINY_FINISH = dict(
    TINY,
    cocktail_stage1_steps=1,
    cocktail_stage2_steps=1,
    cocktail_text_pairs=4,
    dpo_pairs=6,
    dpo_steps=1,
    speech_polish_steps=0,
    hift_steps=1,
    flow_steps=1,
    vocoder_size="tiny",
)


@pytest.fixture(scope="package")
def packaged(with_audio_encoder):
    root = with_audio_encoder
    names = ["pre_alignment", "core_cocktail", "dpo", "vocoder_hift", "vocoder_flow", "package"]
    DemoBuild(root, DemoSettings(**TINY_FINISH), log=lambda _: None).run(names)
    return root


@pytest.fixture
def tiny() -> dict:
    """``TINY``: the build's settings up to pre-alignment."""
    return dict(TINY)


@pytest.fixture
def tiny_finish() -> dict:
    """``TINY_FINISH``: the build's settings of the finishing stages."""
    return dict(TINY_FINISH)
