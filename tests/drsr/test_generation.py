"""Parallel decoding: batched == single, streaming == offline, seeded sampling, speech/text endings, S2T."""

import dataclasses

import pytest
import torch
from funaudiochat.drsr import (
    DecodingConfig,
    FunAudioChatConfig,
    FunAudioChatForConditionalGeneration,
    SamplingConfig,
    decode_step,
    generate,
    prefill,
    stream,
)

PAD = 316


def make_model(eos_text_scale: float = 1.0, eos_speech_scale: float = 1.0, seed: int = 0):
    """A tiny random model; scaling the <|im_end|> / speech-EOS output rows makes those tokens win early
    (deterministically), so sequences end at different steps."""
    torch.manual_seed(seed)
    model = FunAudioChatForConditionalGeneration(FunAudioChatConfig.tiny()).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0, 0.05)
        model.language_model.lm_head.weight[model.config.text_config.eos_token_id] *= eos_text_scale
        model.audio_tower.embed_tokens.weight[model.config.audio_config.eos_token_id] *= eos_speech_scale
    return model


def prompt(config, seconds: float, prefix: list[int], seed: int) -> dict:
    """One unpadded prompt: text prefix, a user audio turn (random log-mel), and the assistant header."""
    g = torch.Generator().manual_seed(seed)
    frames = int(seconds * 100)
    speech_frames = int(seconds * 25)
    slots = -(-speech_frames // 5)
    tc = config.text_config
    ids = prefix + [tc.audio_bos_index] + [config.audio_token_index] * slots + [tc.audio_eos_index, 5, 22, 10]
    return dict(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        input_features=torch.randn(1, 128, frames, generator=g),
        feature_attention_mask=torch.ones(1, frames, dtype=torch.long),
        speech_ids=torch.full((1, slots * 5), 6563),
        speech_attention_mask=(torch.arange(slots * 5) < speech_frames).long()[None],
        feature_exist_mask=torch.tensor([True]),
    )


def batch_of(prompts: list[dict]) -> dict:
    """Left-pad the text side; audio rows are concatenated (feature/speech widths padded)."""
    width = max(p["input_ids"].shape[1] for p in prompts)
    frames = max(p["input_features"].shape[-1] for p in prompts)
    speech = max(p["speech_ids"].shape[1] for p in prompts)

    def left(x, w, v):
        return torch.nn.functional.pad(x, (w - x.shape[1], 0), value=v)

    def right(x, w, v=0):
        return torch.nn.functional.pad(x, (0, w - x.shape[-1]), value=v)

    return dict(
        input_ids=torch.cat([left(p["input_ids"], width, PAD) for p in prompts]),
        attention_mask=torch.cat([left(p["attention_mask"], width, 0) for p in prompts]),
        input_features=torch.cat([right(p["input_features"], frames) for p in prompts]),
        feature_attention_mask=torch.cat([right(p["feature_attention_mask"], frames) for p in prompts]),
        speech_ids=torch.cat([right(p["speech_ids"], speech, 6563) for p in prompts]),
        speech_attention_mask=torch.cat([right(p["speech_attention_mask"], speech) for p in prompts]),
        feature_exist_mask=torch.cat([p["feature_exist_mask"] for p in prompts]),
    )


def generated(out, row: int, prompt_width: int) -> list[int]:
    ids = out.sequences[row, out.prompt_length :].tolist()
    while ids and ids[-1] == PAD:
        ids.pop()
    return ids


@pytest.fixture(scope="module")
def ending_model():
    return make_model(eos_text_scale=2.0, eos_speech_scale=2.0)


@pytest.fixture(scope="module")
def prompts():
    config = FunAudioChatConfig.tiny()
    return [
        prompt(config, 1.3, [317, 20, 10, 40, 41], seed=1),
        prompt(config, 2.6, [317, 20, 10, 42, 43, 44, 45, 46, 47, 48], seed=2),
        prompt(config, 0.5, [317], seed=3),
    ]


SAMPLED = DecodingConfig(
    max_new_tokens=30,
    text=SamplingConfig(do_sample=True, temperature=0.9, top_p=0.95),
    speech=SamplingConfig(),
    seed=[11, 12, 13],
)
GREEDY = DecodingConfig(max_new_tokens=30, speech=SamplingConfig(do_sample=False, repetition_penalty=1.2))


@pytest.mark.parametrize("config", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_batched_equals_each_prompt_alone(ending_model, prompts, config):
    together = generate(ending_model, batch_of(prompts), config)
    seeds = config.seed if isinstance(config.seed, list) else [config.seed] * len(prompts)
    lengths = set()
    for i, p in enumerate(prompts):
        single_config = DecodingConfig(**{**config.__dict__, "seed": seeds[i]})
        alone = generate(ending_model, p, single_config)
        assert generated(together, i, 0) == generated(alone, 0, 0)
        assert torch.equal(together.speech_ids[i], alone.speech_ids[0])
        lengths.add(len(generated(alone, 0, 0)))
    assert len(lengths) > 1, "the prompts should finish at different steps for this test to mean anything"


def test_text_and_speech_endings(ending_model, prompts):
    tc, ac = ending_model.config.text_config, ending_model.config.audio_config
    out = generate(ending_model, prompts[0], GREEDY)
    text = generated(out, 0, 0)
    speech = out.speech_ids[0]
    assert text[0] == tc.audio_bos_index
    assert speech.numel() % 5 == 0 and speech.numel() > 0
    groups = speech.view(-1, 5)
    eos_rows = (groups == ac.eos_token_id).all(-1).nonzero().flatten().tolist()
    assert eos_rows, "the scaled EOS row should end the speech"
    first_eos = eos_rows[0]
    # the text token of the step that ended speech is <|audio_eos|>; speech is only emitted while speaking
    assert text[first_eos + 1] == tc.audio_eos_index
    assert groups.shape[0] == first_eos + 1
    assert text[-1] == tc.eos_token_id or len(text) == GREEDY.max_new_tokens
    codes = out.speech_codes(0)
    assert ((codes >= 0) & (codes < 6561)).all() and codes.numel() == (speech < 6561).sum()


def test_streaming_equals_offline(ending_model, prompts):
    inputs = batch_of(prompts)
    offline = generate(ending_model, inputs, SAMPLED)
    steps = list(stream(ending_model, inputs, SAMPLED))
    texts = torch.stack([s.text_tokens for s in steps], dim=1)
    assert torch.equal(texts, offline.sequences[:, offline.prompt_length :])
    for i in range(len(prompts)):
        spoken = [s.speech_tokens[i] for s in steps if s.speech_valid[i]]
        streamed = torch.cat(spoken) if spoken else torch.zeros(0, dtype=torch.long)
        assert torch.equal(streamed, offline.speech_ids[i])
    assert steps[-1].finished.all()


def test_seeded_sampling_is_reproducible(prompts):
    model = make_model()
    config = DecodingConfig(max_new_tokens=12, text=SamplingConfig(do_sample=True), seed=5)
    a, b = generate(model, prompts[0], config), generate(model, prompts[0], config)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.speech_ids[0], b.speech_ids[0])
    c = generate(
        model, prompts[0], DecodingConfig(max_new_tokens=12, text=SamplingConfig(do_sample=True), seed=6)
    )
    assert not torch.equal(a.speech_ids[0], c.speech_ids[0])


def test_speech_to_text_mode_skips_the_srh(prompts, monkeypatch):
    model = make_model()

    def fail(*args, **kwargs):
        raise AssertionError("the SRH must not run in S2T mode")

    monkeypatch.setattr(model.audio_invert_tower, "step", fail)
    out = generate(
        model, prompts[1], DecodingConfig(max_new_tokens=10, disable_speech=True, force_text_abos=False)
    )
    assert out.speech_ids[0].numel() == 0
    assert out.sequences.shape[1] == prompts[1]["input_ids"].shape[1] + 10


def test_repetition_aware_sampling_and_top_k_run(prompts):
    model = make_model()
    config = DecodingConfig(
        max_new_tokens=8, speech=SamplingConfig(top_k=25, top_p=0.8, ras_window=10, ras_tau=0.1)
    )
    out = generate(model, prompts[0], config)
    assert out.speech_ids[0].numel() == 5 * 7


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda p: p.update(input_ids=p["input_ids"][:, :0], attention_mask=p["attention_mask"][:, :0]),
            "non-empty",
        ),
        (lambda p: p.update(attention_mask=torch.zeros_like(p["attention_mask"])), "empty prompt"),
        (lambda p: p["input_ids"].__setitem__((0, 1), 999), r"input_ids must lie in \[0, 320\)"),
    ],
    ids=["no-tokens", "all-masked", "out-of-vocab"],
)
def test_bad_prompts(prompts, mutate, message):
    model = make_model()
    p = {k: v.clone() for k, v in prompts[0].items()}
    mutate(p)
    with pytest.raises(ValueError, match=message):
        generate(model, p, DecodingConfig(max_new_tokens=2))


def test_pad_prefill_group_in_one_pass_equals_sub_steps(prompts, monkeypatch):
    """With the pad prompt token and nobody speaking, the prefill's speech group runs in the prompt's
    pass (``fill``) instead of k sub-steps whose picks are all pad: the same replies, greedy, batched and
    with the fast decoding path or without."""
    import funaudiochat.drsr.generation as generation

    model = make_model(eos_text_scale=2.0, eos_speech_scale=2.0)
    model.config.audio_config.srh_prompt_token = "pad"
    for fast in (True, False):
        config = dataclasses.replace(GREEDY, fast_decode=fast)
        folded = generate(model, batch_of(prompts), config)
        monkeypatch.setattr(generation, "_prefill_group_is_pad", lambda ac, state: False)
        stepped = generate(model, batch_of(prompts), config)
        monkeypatch.undo()
        assert torch.equal(folded.sequences, stepped.sequences)
        for a, b in zip(folded.speech_ids, stepped.speech_ids, strict=True):
            assert torch.equal(a, b)


def test_bad_generation_config():
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        DecodingConfig(max_new_tokens=0)


def test_pad_prompt_token_decodes_as_trained(prompts, tmp_path):
    """``srh_prompt_token="pad"``: the prefill shows the SRH the pad id at every prompt position and ends
    with pad as the previous token (what the training forward feeds there); batches still decode as each
    prompt alone, and the choice changes what the head says."""
    from funaudiochat.drsr.generation import prefill

    model = make_model(eos_text_scale=2.0, eos_speech_scale=2.0)
    official = generate(model, batch_of(prompts), GREEDY)
    model.config.audio_config.srh_prompt_token = "pad"
    pad = model.config.audio_config.pad_token_id
    calls = []
    fill = model.audio_invert_tower.fill

    def spy(*args, **kwargs):
        calls.append(kwargs["prefix_token"])
        return fill(*args, **kwargs)

    model.audio_invert_tower.fill = spy
    state, first = prefill(model, prompts[0], GREEDY)
    assert calls == [pad] and (first.speech_tokens == pad).all()
    assert (state.srh.prev_token == pad).all()
    del model.audio_invert_tower.fill
    together = generate(model, batch_of(prompts), GREEDY)
    for i, p in enumerate(prompts):
        assert torch.equal(together.speech_ids[i], generate(model, p, GREEDY).speech_ids[0])
    assert not all(torch.equal(a, b) for a, b in zip(together.speech_ids, official.speech_ids, strict=True))
    model.config.save_pretrained(tmp_path)
    assert FunAudioChatConfig.from_pretrained(tmp_path).audio_config.srh_prompt_token == "pad"
    with pytest.raises(ValueError, match="srh_prompt_token"):
        FunAudioChatConfig.tiny(srh_prompt_token="eos")


def test_srh_text_scale_weights_the_text_embedding_in_training_and_decoding(prompts, tmp_path):
    """``srh_text_scale`` s: the SRH reads ``h + s * E_text`` in the training forward and in decoding
    alike (1.0, the official sum, by default); batches still decode as each prompt alone."""
    model = make_model(eos_text_scale=2.0, eos_speech_scale=2.0)
    official = generate(model, batch_of(prompts), GREEDY)
    model.config.audio_config.srh_text_scale = 20.0
    seen = []
    conditioning = model.srh_conditioning

    def spy(hidden, text_embeds):
        out = conditioning(hidden, text_embeds)
        seen.append((hidden, text_embeds, out))
        return out

    model.srh_conditioning = spy
    scaled = generate(model, batch_of(prompts), GREEDY)
    batch = dict(prompts[0], labels=prompts[0]["input_ids"].clone())
    model(**batch)
    assert len(seen) > 2  # the prefill, the steps and the forward
    for hidden, text_embeds, out in seen:
        torch.testing.assert_close(out, hidden + 20.0 * text_embeds)
    del model.srh_conditioning
    for i, p in enumerate(prompts):
        assert torch.equal(scaled.speech_ids[i], generate(model, p, GREEDY).speech_ids[0])
    assert not all(torch.equal(a, b) for a, b in zip(scaled.speech_ids, official.speech_ids, strict=True))
    model.config.save_pretrained(tmp_path)
    assert FunAudioChatConfig.from_pretrained(tmp_path).audio_config.srh_text_scale == 20.0
    assert FunAudioChatConfig.tiny().audio_config.srh_text_scale == 1.0
    for bad in (-1.0, float("inf"), "big"):
        with pytest.raises(ValueError, match="srh_text_scale must be a finite number >= 0"):
            FunAudioChatConfig.tiny(srh_text_scale=bad)


def test_repetition_window_limits_the_penalty_to_the_last_tokens():
    """Token 3 leads by a little; it was said long ago (outside a window of 2) but not lately."""
    from funaudiochat.drsr.generation import pick_tokens

    logits = torch.tensor([[0.0, 0.0, 1.0, 1.2]])
    history = torch.tensor([[3, 1, 0, -1]])
    generators = [torch.Generator().manual_seed(0)]
    penalised = SamplingConfig(do_sample=False, repetition_penalty=2.0)
    windowed = SamplingConfig(do_sample=False, repetition_penalty=2.0, repetition_window=2)
    assert int(pick_tokens(logits, history, penalised, generators)) == 2  # 3 was said: 1.2 / 2 < 1.0
    assert int(pick_tokens(logits, history, windowed, generators)) == 3  # only 1 and 0 were said lately
    with pytest.raises(ValueError, match="repetition_window must be >= 0"):
        SamplingConfig(repetition_window=-1)


def test_sil_scale_multiplies_the_silence_token_probability(prompts):
    model = make_model()
    sil = model.config.text_config.sil_index

    def text(scale):
        config = DecodingConfig(max_new_tokens=8, sil_scale=scale)
        return generate(model, prompts[0], config).sequences[0, prompts[0]["input_ids"].shape[1] + 1 :]

    assert (text(1e12) == sil).all()  # after the forced <|audio_bos|>, nothing but silence
    assert not (text(1e-12) == sil).any()
    assert not torch.equal(text(1e12), text(1.0))
    with pytest.raises(ValueError, match="sil_scale must be > 0"):
        DecodingConfig(sil_scale=0.0)


def test_a_plan_holds_the_spoken_text_to_its_tokens_in_order(prompts):
    """While speaking, a planned row writes only ``<|sil|>`` or the plan's next token, every plan token
    once and in order, then ``<|sil|>``; the model still picks where each goes (a row whose ``<|sil|>`` is
    made likelier waits longer) and an unplanned row of the same batch decodes as it does alone."""
    model = make_model()
    tc = model.config.text_config
    sil = tc.sil_index
    plan = torch.tensor([40, 41, 42, 43])
    config = DecodingConfig(max_new_tokens=14)

    def planned_text(cfg):
        state, _ = prefill(model, prompts[0], cfg, plan=[plan])
        while not bool(state.finished.all()):
            decode_step(model, state)
        return state.generated_text(0).tolist()

    text = planned_text(config)
    assert text[0] == tc.audio_bos_index
    spoken = [t for t in text[1:] if t not in (tc.audio_eos_index, tc.eos_token_id, PAD)]
    assert set(spoken) <= {sil, *plan.tolist()}
    assert [t for t in spoken if t != sil] == plan.tolist()
    free = generate(model, prompts[0], config).sequences[0, prompts[0]["input_ids"].shape[1] :].tolist()
    assert free != text  # the random model does not say the plan by itself
    sooner = planned_text(dataclasses.replace(config, sil_scale=1e-3))
    assert [t for t in sooner if t != sil][:5] == [tc.audio_bos_index, *plan.tolist()]
    assert sooner.index(40) < text.index(40)  # the silence weight moved the words, not the plan

    both = batch_of([prompts[0], prompts[1]])
    state, _ = prefill(model, both, dataclasses.replace(config, seed=[0, 0]), plan=[plan, None])
    while not bool(state.finished.all()):
        decode_step(model, state)
    alone = generate(model, prompts[1], config)
    assert state.generated_text(0).tolist() == text
    assert [t for t in state.generated_text(1).tolist() if t != PAD] == generated(alone, 0, 0)


def test_a_plan_is_written_however_long_the_model_would_wait_and_speech_ends_after_it(prompts):
    """After ``plan_max_silence`` ``<|sil|>`` in a row the plan's next token is forced (0: never), and the
    speech EOS, which this model says early, waits until the plan is written."""
    model = make_model()
    with torch.no_grad():  # the speech EOS wins from the first groups on
        model.audio_invert_tower.lm_head.weight[model.config.audio_config.eos_token_id] *= -30
    tc = model.config.text_config
    sil, plan = tc.sil_index, torch.tensor([40, 41, 42])

    def planned(plan, **settings):
        config = DecodingConfig(max_new_tokens=30, sil_scale=1e12, **settings)
        state, _ = prefill(model, prompts[0], config, plan=plan)
        while not bool(state.finished.all()):
            decode_step(model, state)
        return state.generated_text(0).tolist()

    free = planned(None)
    assert free[:5] == [tc.audio_bos_index, sil, sil, sil, tc.audio_eos_index]  # the speech ends early
    text = planned([plan])
    assert text[:13] == [tc.audio_bos_index, sil, sil, sil, 40, sil, sil, sil, 41, sil, sil, sil, 42]
    assert text.index(tc.audio_eos_index) == 13  # the speech ends as soon as the plan is written
    assert planned([plan], plan_max_silence=2)[:7] == [tc.audio_bos_index, sil, sil, 40, sil, sil, 41]
    assert set(planned([plan], plan_max_silence=0)[1:]) == {sil}  # no limit: the model waits for ever
    with pytest.raises(ValueError, match="plan_max_silence must be >= 0"):
        DecodingConfig(plan_max_silence=-1)


def test_an_exact_plan_is_written_token_by_token_whatever_the_model_would_do(prompts):
    """``plan_exact``: a laid-out plan (its own ``<|sil|>`` included) is the spoken text slot by slot, even
    where the model would rather wait (a huge silence weight) or rather speak (a tiny one)."""
    model = make_model()
    tc = model.config.text_config
    sil = tc.sil_index
    plan = torch.tensor([sil, 40, 41, sil, sil, 42])
    for scale in (1e12, 1e-12):
        config = DecodingConfig(max_new_tokens=12, sil_scale=scale, plan_exact=True)
        state, _ = prefill(model, prompts[0], config, plan=[plan])
        while not bool(state.finished.all()):
            decode_step(model, state)
        text = state.generated_text(0).tolist()
        assert text[: 1 + len(plan)] == [tc.audio_bos_index, *plan.tolist()], scale


@pytest.mark.parametrize(
    "plan, message",
    [
        ([torch.tensor([1, 2])] * 2, "one entry per sequence"),
        ([torch.tensor([[1]])], "1-D list of text ids"),
        ([torch.tensor([10**6])], "1-D list of text ids"),
    ],
)
def test_bad_plans(prompts, plan, message):
    with pytest.raises(ValueError, match=message):
        prefill(make_model(), prompts[0], DecodingConfig(max_new_tokens=2), plan=plan)
