"""The decoding state on the one streaming contract: sessions join a running batch at other positions, one
row is reset, and streaming matches an independent step-by-step reference that recomputes everything."""

import pytest
import torch
from funaudiochat.base import StreamState
from funaudiochat.drsr import DecodingConfig, SamplingConfig, decode_step, generate, prefill, stream

from .test_generation import PAD, make_model, prompt

# Greedy: rows of a batch agree with the same session alone to float rounding (~1e-6; matrix products of
# other batch shapes round differently), which an argmax does not see but a sampled draw can, when its
# uniform falls within rounding of a boundary of the cumulative distribution.
GREEDY = DecodingConfig(max_new_tokens=24, speech=SamplingConfig(do_sample=False, repetition_penalty=1.2))


@pytest.fixture(scope="module")
def model():
    return make_model(eos_text_scale=2.0, eos_speech_scale=2.0)


@pytest.fixture(scope="module")
def sessions(model):
    config = model.config
    return [
        prompt(config, 1.3, [317, 20, 10, 40, 41], seed=1),
        prompt(config, 2.6, [317, 20, 10, 42, 43, 44, 45, 46, 47, 48], seed=2),
        prompt(config, 0.5, [317], seed=3),
    ]


def text_of(ids: list[int]) -> list[int]:
    while ids and ids[-1] == PAD:
        ids.pop()
    return ids


def alone(model, inputs, seed):
    out = generate(model, inputs, DecodingConfig(**{**GREEDY.__dict__, "seed": seed}))
    return text_of(out.sequences[0, out.prompt_length :].tolist()), out.speech_ids[0]


def test_a_session_joining_later_and_a_reset_row_decode_what_they_decode_alone(model, sessions):
    a, b, c = sessions
    seeds = (12, 13, 14)
    expected = [alone(model, p, seed) for p, seed in zip(sessions, seeds, strict=True)]

    state, _ = prefill(model, a, DecodingConfig(**{**GREEDY.__dict__, "seed": seeds[0]}))
    for _ in range(4):
        decode_step(model, state)
    later, _ = prefill(model, b, DecodingConfig(**{**GREEDY.__dict__, "seed": seeds[1]}))
    state = StreamState.cat([state, later])  # a is 5 steps in, b 1 step: different positions and widths
    assert state.attention_mask.shape[1] == later.attention_mask.shape[1]
    for _ in range(2):
        decode_step(model, state)
    a_text = state.generated_text(0).tolist()
    assert a_text == expected[0][0][: len(a_text)] and len(a_text) == 7

    fresh, _ = prefill(model, c, DecodingConfig(**{**GREEDY.__dict__, "seed": seeds[2]}))
    state.reset(torch.tensor([True, False]), fresh)  # row 0 (a) becomes a new session c; b goes on
    steps = 0
    while not bool(state.finished.all()):
        decode_step(model, state)
        steps += 1
        if steps == 21:  # b has taken its 24 steps; c, 2 steps behind, goes on beside the finished row
            assert state.finished.tolist() == [False, True]
    for row, (text, speech) in zip((0, 1), (expected[2], expected[1]), strict=True):
        assert text_of(state.generated_text(row).tolist()) == text
        assert torch.equal(state.speech[row], speech)


def test_select_drops_a_finished_row_and_the_rest_goes_on(model, sessions):
    inputs = sessions[1]
    expected = alone(model, inputs, 12)
    first, _ = prefill(model, sessions[2], DecodingConfig(**{**GREEDY.__dict__, "seed": 13}))
    second, _ = prefill(model, inputs, DecodingConfig(**{**GREEDY.__dict__, "seed": 12}))
    state = StreamState.cat([first, second])
    decode_step(model, state)
    state = state.select([1])
    while not bool(state.finished.all()):
        decode_step(model, state)
    assert text_of(state.generated_text(0).tolist()) == expected[0]
    assert torch.equal(state.speech[0], expected[1])


def test_states_with_different_settings_are_refused(model, sessions):
    a, _ = prefill(model, sessions[0], GREEDY)
    b, _ = prefill(model, sessions[1], DecodingConfig(max_new_tokens=3))
    with pytest.raises(ValueError, match="DecodingState.config differs between the states"):
        StreamState.cat([a, b])


# -- an independent reference: no caches, everything recomputed at every step, greedy ----------------------


def reference_decode(model, inputs, steps: int):
    """Greedy decoding written from the decoding rules alone (reference §4.3), with no key/value cache:
    at every 5 Hz step the LLM runs over the whole sequence so far, and at every sub-step the SRH runs over
    every sub-frame so far. Returns the text tokens and the speech groups of each step."""
    tc, ac, k = model.config.text_config, model.config.audio_config, model.group_size
    head = model.audio_invert_tower
    merged = model.merge_inputs(
        inputs["input_ids"],
        inputs["speech_ids"],
        inputs["speech_attention_mask"],
        inputs["input_features"],
        inputs["feature_attention_mask"],
        inputs["feature_exist_mask"],
    )
    embeds, text_embeds = merged.inputs_embeds[0], merged.text_embeds[0]  # [S, D]
    srh_prev: list[int] = [ac.bos_token_id] * (embeds.shape[0] * k)  # previous-token id of every sub-frame
    texts, groups = [], []
    speaking = inputs["input_ids"][0, -1].item() == tc.audio_bos_index
    has_speech, last_group, done = False, None, False
    for step in range(steps):
        hidden = model.language_model.model(inputs_embeds=embeds[None]).last_hidden_state[0]
        text = tc.audio_bos_index if step == 0 else int(model.language_model.lm_head(hidden[-1]).argmax())
        conditioning = head.pre_matching(hidden + text_embeds).view(-1, head.hidden_size)  # [S * k, D]
        group = []
        for j in range(k):
            n = conditioning.shape[0] - k + j + 1  # sub-frames up to this one
            prev = torch.tensor(srh_prev[:n])
            logits, _ = head._decode((conditioning[:n] + head.embed(prev))[None], None, None)
            token = int(logits[0, -1].argmax())
            group.append(token)
            if j + 1 < k:
                srh_prev[n] = token
        raw_last = group[-1]  # the next position's first sub-frame is fed this, EOS or not
        emitting = speaking and not done
        if text == tc.eos_token_id:
            done = True
        if emitting and ac.eos_token_id in group:
            group, text, speaking = [ac.eos_token_id] * k, tc.audio_eos_index, False
        texts.append(text)
        groups.append(group if emitting else None)
        if done:
            break
        if emitting:
            has_speech, last_group = True, group
        speaking = speaking or text == tc.audio_bos_index
        # the next input: the text token, averaged with the last speech group while speaking
        e_text = model.get_input_embeddings()(torch.tensor([text]))[0]
        e_in = e_text
        if speaking and has_speech:
            e_in = (e_text + model.audio_tower.group_speech(torch.tensor([last_group]))[0, 0]) / 2
        embeds = torch.cat([embeds, e_in[None]])
        text_embeds = torch.cat([text_embeds, e_text[None]])
        srh_prev += [raw_last] + [ac.bos_token_id] * (k - 1)
    return texts, groups


def test_stream_equals_an_independent_reference_without_caches(sessions):
    model = make_model(eos_text_scale=1.5)  # text ends within the steps; speech goes on until then
    greedy = DecodingConfig(max_new_tokens=14, speech=SamplingConfig(do_sample=False, repetition_penalty=1.0))
    for inputs in sessions[:2]:
        steps = list(stream(model, inputs, greedy))
        with torch.no_grad():
            texts, groups = reference_decode(model, inputs, len(steps))
        assert [int(s.text_tokens[0]) for s in steps] == texts
        streamed = [s.speech_tokens[0].tolist() if bool(s.speech_valid[0]) else None for s in steps]
        assert streamed == groups
        assert sum(g is not None for g in groups) >= 3, "the reference should have spoken a few groups"
