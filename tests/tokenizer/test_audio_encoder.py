"""The continuous audio encoder: official names/shapes, parity with transformers' WhisperEncoder inside
one chunk, batching with masks, output lengths, and streaming == offline."""

import pytest
import torch
import torch.nn.functional as F
from funaudiochat.base import StreamState
from funaudiochat.tokenizer import AudioEncoderConfig, ContinuousAudioEncoder, WhisperFrontend, output_length
from funaudiochat.tokenizer.audio_encoder import conv_output_length


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return ContinuousAudioEncoder(AudioEncoderConfig.tiny()).eval()


@pytest.fixture(scope="module")
def mels(speech_16k):
    return WhisperFrontend().batch(speech_16k)


def test_official_names_and_shapes_at_full_size():
    """Reference §2.4: the official continuous_audio_tower layout (d 1280, 32 layers, D 4096)."""
    with torch.device("meta"):
        enc = ContinuousAudioEncoder(AudioEncoderConfig(output_dim=4096))
    shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    expected = {
        "conv1.weight": (1280, 128, 3),
        "conv1.bias": (1280,),
        "conv2.weight": (1280, 1280, 3),
        "conv2.bias": (1280,),
        "ln_post.weight": (1280,),
        "ln_post.bias": (1280,),
        "proj.weight": (4096, 1280),
        "proj.bias": (4096,),
        "audio_bos_eos_token.weight": (2, 4096),
    }
    layer = {
        "self_attn.q_proj.weight": (1280, 1280),
        "self_attn.q_proj.bias": (1280,),
        "self_attn.k_proj.weight": (1280, 1280),
        "self_attn.v_proj.weight": (1280, 1280),
        "self_attn.v_proj.bias": (1280,),
        "self_attn.out_proj.weight": (1280, 1280),
        "self_attn.out_proj.bias": (1280,),
        "self_attn_layer_norm.weight": (1280,),
        "self_attn_layer_norm.bias": (1280,),
        "fc1.weight": (5120, 1280),
        "fc1.bias": (5120,),
        "fc2.weight": (1280, 5120),
        "fc2.bias": (1280,),
        "final_layer_norm.weight": (1280,),
        "final_layer_norm.bias": (1280,),
    }
    for i in range(32):
        expected.update({f"layers.{i}.{k}": v for k, v in layer.items()})
    assert shapes == expected  # the sinusoidal table is a non-persistent buffer, as officially


def test_output_lengths():
    for frames, l2 in [
        (0, 0),
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 1),
        (6, 1),
        (7, 2),
        (200, 50),
        (201, 50),
        (3000, 750),
    ]:
        l1 = (frames - 1) // 2 + 1 if frames else 0
        assert conv_output_length(frames) == l1
        assert output_length(frames) == l2, frames
    lengths = torch.tensor([0, 1, 7, 200, 3000])
    assert output_length(lengths).tolist() == [output_length(int(n)) for n in lengths]


def test_equals_whisper_encoder_within_one_chunk(encoder, mels):
    """Within one 2 s chunk the encoder is transformers' WhisperEncoder (same weights; the position table
    copied in) up to its final layer norm, followed by avg-pool(2), ln_post and proj."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = encoder.config
    wcfg = WhisperConfig(
        num_mel_bins=cfg.num_mel_bins,
        d_model=cfg.d_model,
        encoder_layers=cfg.encoder_layers,
        encoder_attention_heads=cfg.encoder_attention_heads,
        encoder_ffn_dim=cfg.encoder_ffn_dim,
        max_source_positions=cfg.n_window,
        activation_function="gelu",
        dropout=0.0,
    )
    wcfg._attn_implementation = "eager"
    whisper = WhisperEncoder(wcfg).eval()
    state = {k: v for k, v in encoder.state_dict().items() if k.startswith(("conv", "layers."))}
    state["embed_positions.weight"] = encoder.positional_embedding[: cfg.n_window]
    missing, unexpected = whisper.load_state_dict(state, strict=False)
    assert set(missing) == {"layer_norm.weight", "layer_norm.bias"} and not unexpected

    captured = {}
    whisper.layer_norm.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    mel, lengths = mels
    chunk = mel[1:2, :, : cfg.chunk_frames]
    assert int(lengths[1]) >= cfg.chunk_frames
    with torch.no_grad():
        whisper(chunk)
        ref = encoder.pool_and_project(captured["x"][0])
        ours, out_len = encoder(chunk, torch.tensor([cfg.chunk_frames]))
    assert int(out_len[0]) == 50
    torch.testing.assert_close(ours[0], ref, rtol=1e-5, atol=1e-5)


def test_batch_equals_items_alone(encoder, mels):
    mel, lengths = mels
    with torch.no_grad():
        batched, out_lengths = encoder(mel, lengths)
        assert out_lengths.tolist() == output_length(lengths).tolist()
        for i in range(mel.shape[0]):
            n = int(lengths[i])
            alone, alone_len = encoder(mel[i : i + 1, :, :n], torch.tensor([n]))
            m = int(alone_len[0])
            torch.testing.assert_close(batched[i, :m], alone[0], rtol=1e-5, atol=1e-5)
            assert batched[i, m:].abs().max().item() == 0 if m < batched.shape[1] else True


def test_chunks_do_not_see_each_other(encoder, mels):
    """Changing audio after the first chunk leaves the first chunk's outputs unchanged."""
    mel, lengths = mels
    n = int(lengths[1])
    x = mel[1:2, :, :n].clone()
    y = x.clone()
    y[:, :, 200:] = torch.randn_like(y[:, :, 200:])
    with torch.no_grad():
        a, _ = encoder(x, torch.tensor([n]))
        b, _ = encoder(y, torch.tensor([n]))
    torch.testing.assert_close(a[0, :50], b[0, :50])
    assert (a[0, 50:] - b[0, 50:]).abs().max() > 1e-3


@pytest.mark.parametrize("piece", [37, 200, 333])
def test_streaming_equals_offline(encoder, mels, piece):
    mel, lengths = mels
    with torch.no_grad():
        offline, off_len = encoder(mel, lengths)
        state = encoder.init_state(mel.shape[0])
        outputs = [[] for _ in range(mel.shape[0])]
        for start in range(0, mel.shape[-1], piece):
            part = mel[:, :, start : start + piece]
            part_len = (lengths - start).clamp(0, part.shape[-1])
            out = encoder.step(part, state, lengths=part_len)
            for i, o in enumerate(out):
                outputs[i].append(o)
        out = encoder.step(mel[:, :, :0], state, finalize=True)
        for i, o in enumerate(out):
            outputs[i].append(o)
    for i in range(mel.shape[0]):
        streamed = torch.cat(outputs[i])
        assert streamed.shape[0] == int(off_len[i])
        torch.testing.assert_close(streamed, offline[i, : int(off_len[i])], rtol=1e-5, atol=1e-5)
    assert int(state.pending_lengths.max()) == 0


def test_streaming_odd_tail_matches_offline(encoder):
    """A final partial chunk of 1-2 frames yields one 50 Hz frame, dropped by pooling as offline."""
    torch.manual_seed(1)
    mel = torch.randn(1, 128, 201)
    with torch.no_grad():
        offline, off_len = encoder(mel, torch.tensor([201]))
        state = encoder.init_state(1)
        first = encoder.step(mel[:, :, :200], state)
        last = encoder.step(mel[:, :, 200:], state, finalize=True)
    assert int(off_len[0]) == 50 and first[0].shape[0] == 50 and last[0].shape[0] == 0
    torch.testing.assert_close(first[0], offline[0])


def test_streams_joining_a_batch_at_different_positions_get_what_they_get_alone(encoder):
    """Row 1 joins after row 0 has streamed 250 frames; row 0 is reset later: every row equals its own
    offline encoding."""
    torch.manual_seed(2)
    a, b, c = torch.randn(1, 128, 530), torch.randn(1, 128, 410), torch.randn(1, 128, 260)
    with torch.no_grad():
        offline = [encoder(x, torch.tensor([x.shape[-1]]))[0][0] for x in (a, b, c)]
        first = encoder.init_state(1)
        got_a = encoder.step(a[:, :, :250], first)[0:1]
        state = StreamState.cat([first, encoder.init_state(1)])
        got_b: list[torch.Tensor] = []
        for start in range(250, 530, 70):  # a from frame 250, b from its start, 70 frames a step
            piece = torch.cat(
                [a[:, :, start : start + 70], F.pad(b, (0, 200))[:, :, start - 250 : start - 180]]
            )
            lengths = torch.tensor([piece.shape[-1], max(0, min(70, 410 - (start - 250)))])
            out = encoder.step(piece, state, lengths=lengths)
            got_a.append(out[0])
            got_b.append(out[1])
        tail = encoder.step(b[:, :, 280:], state.select([1]), finalize=True)  # a copy of b's row ends
        got_a += encoder.step(torch.zeros(1, 128, 0), state.select([0]), finalize=True)
        # row 0 (a, at its end) is reset and becomes c, beside a fresh copy of b's stream
        state.reset(torch.tensor([True, False]), encoder.init_state(1))
        got_c = encoder.step(torch.cat([c, torch.zeros(1, 128, 260)]), state, lengths=torch.tensor([260, 0]))
        got_c += encoder.step(torch.zeros(2, 128, 0), state, finalize=True)[:1]
    torch.testing.assert_close(torch.cat(got_a), offline[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(got_b + tail), offline[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([got_c[0], got_c[-1]]), offline[2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="finalized"):
        encoder.step(torch.zeros(2, 128, 1), state)


def test_rejects_bad_input(encoder):
    with pytest.raises(ValueError, match=r"input_features must be \[batch, 128, frames\]"):
        encoder(torch.zeros(1, 80, 10), torch.tensor([10]))
    with pytest.raises(ValueError, match="feature_lengths must lie in"):
        encoder(torch.zeros(1, 128, 10), torch.tensor([11]))
    with pytest.raises(ValueError, match="must be divisible"):
        AudioEncoderConfig(d_model=30, encoder_attention_heads=4)
