"""Flow matching (tokens -> mel): CosyVoice3 state-dict layout, lengths, bad inputs, batching, chunk
causality, training loss, streaming (golden parity with the official code: test_flow_golden.py)."""

import pytest
import torch
from funaudiochat.vocoder.cfm import t_schedule
from funaudiochat.vocoder.flow import CausalFlowMatching, FlowConfig


@pytest.fixture(scope="module")
def flow():
    torch.manual_seed(0)
    return CausalFlowMatching(FlowConfig.tiny()).eval()


def official_layout(
    depth: int = 22,
    dim: int = 1024,
    ff_mult: int = 2,
    dim_head: int = 64,
    channels: int = 1024,
    groups: int = 16,
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of CosyVoice3's ``CausalMaskedDiffWithDiT`` state dict, as its code builds it
    (checked once against the official module built on the meta device: 330 keys)."""
    e = "decoder.estimator."
    layout = {
        "input_embedding.weight": (6561, 80),
        "spk_embed_affine_layer.weight": (80, 192),
        "spk_embed_affine_layer.bias": (80,),
        "pre_lookahead_layer.conv1.weight": (channels, 80, 4),
        "pre_lookahead_layer.conv1.bias": (channels,),
        "pre_lookahead_layer.conv2.weight": (80, channels, 3),
        "pre_lookahead_layer.conv2.bias": (80,),
        e + "time_embed.time_mlp.0.weight": (dim, 256),
        e + "time_embed.time_mlp.0.bias": (dim,),
        e + "time_embed.time_mlp.2.weight": (dim, dim),
        e + "time_embed.time_mlp.2.bias": (dim,),
        e + "input_embed.proj.weight": (dim, 320),
        e + "input_embed.proj.bias": (dim,),
        e + "input_embed.conv_pos_embed.conv1.0.weight": (dim, dim // groups, 31),
        e + "input_embed.conv_pos_embed.conv1.0.bias": (dim,),
        e + "input_embed.conv_pos_embed.conv2.0.weight": (dim, dim // groups, 31),
        e + "input_embed.conv_pos_embed.conv2.0.bias": (dim,),
        e + "rotary_embed.inv_freq": (dim_head // 2,),
        e + "norm_out.linear.weight": (2 * dim, dim),
        e + "norm_out.linear.bias": (2 * dim,),
        e + "proj_out.weight": (80, dim),
        e + "proj_out.bias": (80,),
    }
    for i in range(depth):
        b = f"{e}transformer_blocks.{i}."
        layout[b + "attn_norm.linear.weight"] = (6 * dim, dim)
        layout[b + "attn_norm.linear.bias"] = (6 * dim,)
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            layout[b + f"attn.{proj}.weight"] = (dim, dim)
            layout[b + f"attn.{proj}.bias"] = (dim,)
        layout[b + "ff.ff.0.0.weight"] = (ff_mult * dim, dim)
        layout[b + "ff.ff.0.0.bias"] = (ff_mult * dim,)
        layout[b + "ff.ff.2.weight"] = (dim, ff_mult * dim)
        layout[b + "ff.ff.2.bias"] = (dim,)
    return layout


def test_full_size_layout_is_cosyvoice3():
    with torch.device("meta"):
        model = CausalFlowMatching()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 330
    assert shapes == official_layout()


def test_state_dict_mismatch_is_listed(flow):
    state = dict(flow.state_dict())
    state.pop("decoder.estimator.proj_out.bias")
    state["decoder.estimator.extra"] = torch.zeros(1)
    state["spk_embed_affine_layer.weight"] = torch.zeros(80, 191)
    with pytest.raises(ValueError) as err:
        CausalFlowMatching(FlowConfig.tiny()).load_official_state_dict(state, "flow.pt")
    msg = str(err.value)
    assert "flow.pt" in msg and "missing keys: decoder.estimator.proj_out.bias" in msg
    assert "unexpected keys: decoder.estimator.extra" in msg
    assert "spk_embed_affine_layer.weight (checkpoint (80, 191), model (80, 192))" in msg


def test_reference_noise():
    """The default noise is CosyVoice3's: ``torch.manual_seed(0); torch.randn(1, 80, 15000)``."""
    torch.manual_seed(0)
    expected = torch.randn(1, 80, 15000)
    with torch.device("meta"):
        model = CausalFlowMatching()
    assert torch.equal(model.decoder.rand_noise, expected)


def test_lengths(flow):
    tokens = torch.randint(0, 6561, (2, 20))
    spk = torch.randn(2, 192)
    mel, mel_len = flow.inference(tokens, spk)
    assert mel.shape == (2, 80, 40) and mel_len.tolist() == [40, 40]
    mel, mel_len = flow.inference(tokens, spk, finalize=False)
    assert mel.shape == (2, 80, 34) and mel_len.tolist() == [34, 34]
    mel, mel_len = flow.inference(tokens, spk, token_len=torch.tensor([20, 11]))
    assert mel.shape == (2, 80, 40) and mel_len.tolist() == [40, 22]
    assert mel[1, :, 22:].abs().max() == 0
    prompt_token, prompt_feat = torch.randint(0, 6561, (2, 5)), torch.randn(2, 10, 80)
    mel, mel_len = flow.inference(tokens, spk, prompt_token=prompt_token, prompt_feat=prompt_feat)
    assert mel.shape == (2, 80, 40) and mel_len.tolist() == [40, 40]
    mel, _ = flow.inference(tokens, spk, prompt_token=prompt_token, prompt_feat=prompt_feat, finalize=False)
    assert mel.shape == (2, 80, 34)


def test_bad_inputs(flow):
    spk = torch.randn(1, 192)
    mel, mel_len = flow.inference(torch.zeros(1, 0, dtype=torch.long), spk)
    assert mel.shape == (1, 80, 0) and mel_len.tolist() == [0]
    mel, _ = flow.inference(torch.randint(0, 6561, (1, 3)), spk, finalize=False)  # all look-ahead
    assert mel.shape == (1, 80, 0)
    with pytest.raises(ValueError, match="id 6561"):
        flow.inference(torch.tensor([[1, 6561, 2]]), spk)
    with pytest.raises(ValueError, match="integer"):
        flow.inference(torch.rand(1, 5), spk)
    with pytest.raises(ValueError, match="NaN"):
        flow.inference(torch.tensor([[1, 2, 3]]), torch.full((1, 192), float("nan")))
    with pytest.raises(ValueError, match="speaker embedding must be"):
        flow.inference(torch.tensor([[1, 2, 3]]), torch.randn(1, 80))
    # negative ids (padding) are clamped to 0, as the official model does
    neg, _ = flow.inference(torch.tensor([[5, -1, 7]]), spk)
    zero, _ = flow.inference(torch.tensor([[5, 0, 7]]), spk)
    assert torch.equal(neg, zero)


def test_batch_equals_single_runs(flow):
    torch.manual_seed(1)
    tokens = torch.randint(0, 6561, (2, 16))
    spk = torch.randn(2, 192)
    lengths = torch.tensor([16, 9])
    for finalize in (True, False):
        for streaming in (False, True):
            mel, mel_len = flow.inference(
                tokens, spk, token_len=lengths, finalize=finalize, streaming=streaming
            )
            for i in range(2):
                one, _ = flow.inference(
                    tokens[i : i + 1, : lengths[i]], spk[i : i + 1], finalize=finalize, streaming=streaming
                )
                torch.testing.assert_close(mel[i : i + 1, :, : mel_len[i]], one, rtol=0, atol=1e-5)


def test_chunk_mask_makes_finished_chunks_final(flow):
    """With streaming=True (chunk-causal attention, chunk 8 frames here), frames of chunks whose tokens
    (and look-ahead) have all arrived do not change when more tokens come."""
    torch.manual_seed(2)
    tokens = torch.randint(0, 6561, (1, 24))
    spk = torch.randn(1, 192)
    full, _ = flow.inference(tokens, spk, streaming=True)
    part, _ = flow.inference(tokens[:, :15], spk, streaming=True, finalize=False)  # 24 frames = 3 chunks
    torch.testing.assert_close(part, full[:, :, :24], rtol=0, atol=1e-5)
    offline, _ = flow.inference(tokens, spk)
    assert (offline[:, :, :24] - full[:, :, :24]).abs().max() > 1e-3  # full attention looks ahead


def test_kept_projections_follow_weight_changes():
    """Inference keeps the stacked q/k/v projection and the time modulations; changing a weight in place
    (as an optimizer or a state-dict load does) must be seen by the next call."""
    torch.manual_seed(4)
    model = CausalFlowMatching(FlowConfig.tiny()).eval()
    tokens, spk = torch.randint(0, 6561, (1, 12)), torch.randn(1, 192)
    before, _ = model.inference(tokens, spk)
    again, _ = model.inference(tokens, spk)
    assert torch.equal(before, again)
    block = model.decoder.estimator.transformer_blocks[0]
    for weight in (block.attn.to_k.weight, block.attn_norm.linear.weight):
        with torch.no_grad():
            weight.mul_(1.5)
        after, _ = model.inference(tokens, spk)
        fresh = CausalFlowMatching(FlowConfig.tiny()).eval()
        fresh.load_state_dict(model.state_dict())
        expected, _ = fresh.inference(tokens, spk)
        assert not torch.allclose(after, before, atol=1e-3)
        torch.testing.assert_close(after, expected, rtol=0, atol=1e-6)
        before = after


def test_training_forward(flow):
    torch.manual_seed(3)
    model = CausalFlowMatching(FlowConfig.tiny()).train()
    batch = {
        "speech_token": torch.randint(0, 6561, (2, 12)),
        "speech_token_len": torch.tensor([12, 9]),
        "speech_feat": torch.randn(2, 24, 80),
        "speech_feat_len": torch.tensor([24, 18]),
        "embedding": torch.randn(2, 192),
    }
    loss = model(batch, generator=torch.Generator().manual_seed(0))["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.decoder.estimator.proj_out.weight.grad.abs().sum() > 0
    assert model.pre_lookahead_layer.conv1.weight.grad.abs().sum() > 0
    model.eval()
    a = model(batch, generator=torch.Generator().manual_seed(5))["loss"]
    b = model(batch, generator=torch.Generator().manual_seed(5))["loss"]
    assert torch.equal(a, b)


def test_t_schedule():
    t = torch.linspace(0, 1, 11)
    s = t_schedule(t, "cosine")
    assert s[0] == 0 and abs(float(s[-1]) - 1) < 1e-6 and bool((s[1:] > s[:-1]).all())
    with pytest.raises(ValueError):
        t_schedule(t, "exp")


# ---- streaming: CausalFlowMatching.init_state / step (pre-look-ahead context, DiT key/value caches) ----


def test_growing_chunks():
    from funaudiochat.vocoder.chunks import ChunkPolicy

    policy = ChunkPolicy(2, start=1, growth=2, max_size=8)  # pos 0-1, 2-5, 6-13, 14-21, ...
    expected = [0, 0, 0, 1, 1, 1, 1] + [2] * 8 + [3] * 5
    assert policy.chunk_ids(20).tolist() == expected
    assert ChunkPolicy(3, start=2).chunk_ids(9).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="below the first chunk"):
        ChunkPolicy(8, max_size=4)
    with pytest.raises(ValueError, match="growth must be >= 1"):
        ChunkPolicy(8, growth=0)


@pytest.mark.parametrize("with_prompt", [False, True])
@pytest.mark.parametrize(
    "chunk, context, growth, longest, hops",
    [
        (8, None, 1, None, [41]),
        (8, None, 1, None, [5, 5, 5, 26]),
        (6, 2, 1, None, [1, 2, 3, 15, 20]),
        (10, 0, 1, None, [4] * 10 + [1]),
        (4, None, 2, 16, [41]),
        (4, 1, 2, 12, [3, 5, 9, 24]),
        (6, 2, 3, 30, [1, 2, 3, 15, 20]),
    ],
)
def test_stream_equals_chunk_causal_offline(with_prompt, chunk, context, growth, longest, hops):
    """The stream solves each chunk once against cached keys/values; joined, it is the offline run with the
    same chunk-causal mask (chunks counted from the end of the prompt, `context` chunks of history, each
    chunk `growth` times the one before up to `longest`)."""
    from funaudiochat.vocoder.chunks import ChunkPolicy

    torch.manual_seed(0)
    flow = CausalFlowMatching(FlowConfig.tiny()).eval()
    g = torch.Generator().manual_seed(1)
    tokens, spk = torch.randint(0, 6561, (2, 41), generator=g), torch.randn(2, 192, generator=g)
    prompt_token = torch.randint(0, 6561, (2, 7), generator=g) if with_prompt else None
    prompt_feat = torch.randn(2, 13, 80, generator=g) if with_prompt else None
    n_prompt = 13 if with_prompt else 0
    full, _ = flow.inference(
        tokens,
        spk,
        prompt_token=prompt_token,
        prompt_feat=prompt_feat,
        streaming=True,
        chunks=ChunkPolicy(chunk, n_prompt, context, growth, longest),
    )
    state = flow.init_state(
        spk, chunk, context, prompt_token, prompt_feat, chunk_growth=growth, max_chunk_size=longest
    )
    outs, pos = [], 0
    for i, hop in enumerate(hops):
        mel = flow.step(tokens[:, pos : pos + hop], state, finalize=i == len(hops) - 1)
        outs.append(torch.stack(mel))
        pos += hop
        if i < len(hops) - 1:  # only whole chunks come out before the end
            assert sum(o.shape[2] for o in outs) % chunk == 0
    torch.testing.assert_close(torch.cat(outs, dim=2), full, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="finalized"):
        flow.step(tokens[:, :2], state)


def test_context_window_bounds_the_cache():
    torch.manual_seed(0)
    flow = CausalFlowMatching(FlowConfig.tiny()).eval()
    state = flow.init_state(torch.randn(192), chunk_size=4, context_chunks=3)
    for _ in range(10):
        flow.step(torch.randint(0, 6561, (1, 2)), state)
    assert all(len(kv) <= 4 * 4 for cache in state.caches for kv in cache.kv)
    with pytest.raises(ValueError, match="context_chunks must be >= 0"):
        flow.init_state(torch.randn(192), context_chunks=-1)
    with pytest.raises(ValueError, match=r"tokens must be \[B=1, n\]"):
        flow.step(torch.zeros(2, 3, dtype=torch.long), state)


def test_streams_at_different_positions_join_and_reset_as_cohorts():
    """Row 0 streams 12 tokens alone; row 1 joins at its start; pushes of different sizes split them;
    row 0 is then reset to a new session: every row equals its own chunk-causal offline run."""
    from funaudiochat.base import Cohorts, StateMismatch, StreamState
    from funaudiochat.vocoder.chunks import ChunkPolicy

    torch.manual_seed(0)
    flow = CausalFlowMatching(FlowConfig.tiny()).eval()
    g = torch.Generator().manual_seed(3)
    tokens, spk = torch.randint(0, 6561, (3, 30), generator=g), torch.randn(3, 192, generator=g)

    def offline(row, n):
        mel, _ = flow.inference(tokens[row : row + 1, :n], spk[row], streaming=True, chunks=ChunkPolicy(8))
        return mel[0]

    first = flow.init_state(spk[0], chunk_size=8)
    got = {0: flow.step(tokens[:1, :12], first), 1: [], 2: []}
    with pytest.raises(StateMismatch, match="cannot be one batch.*Cohorts"):
        StreamState.cat([first, flow.init_state(spk[1], chunk_size=8)])  # lockstep states cannot
    state = StreamState.cat([Cohorts.of(first), Cohorts.of(flow.init_state(spk[1], chunk_size=8))])
    out = flow.step([tokens[0, 12:20], tokens[1, :8]], state)  # same amounts, other positions
    got[0] += out[:1]
    got[1] += out[1:]
    out = flow.step([tokens[0, 20:30], tokens[1, 8:11]], state, finalize=False)  # different amounts
    got[0] += out[:1]
    got[1] += out[1:]
    assert len(state.groups) == 2
    ended = state.select([0])
    got[0] += flow.step([tokens[0, :0]], ended, finalize=True)
    state.reset(torch.tensor([True, False]), Cohorts.of(flow.init_state(spk[2], chunk_size=8)))
    out = flow.step([tokens[2, :17], tokens[1, 11:28]], state, finalize=True)
    got[2] += out[:1]
    got[1] += out[1:]
    for row, n in ((0, 30), (1, 28), (2, 17)):
        torch.testing.assert_close(torch.cat(got[row], dim=1), offline(row, n), rtol=0, atol=1e-5)


def test_dit_step_many_equals_each_group_alone():
    """Two groups of rows at different positions (their caches hold 7 and 12 frames) step together with 3
    and 5 new frames: each group's velocity and cache are those of its own ``step``."""
    import copy

    torch.manual_seed(0)
    dit = CausalFlowMatching(FlowConfig.tiny()).eval().decoder.estimator
    spk = dit.input_embed.proj.in_features - 3 * 80

    def frames(rows, n):
        return [torch.randn(rows, 80, n) for _ in range(3)] + [torch.randn(rows, spk)]

    caches = []
    for rows, past in ((2, 7), (4, 12)):
        cache = dit.init_cache(rows)  # rows: conditional and unconditional
        x, mu, cond, s = frames(rows, past)
        with torch.no_grad():
            dit.step(x, mu, torch.full((rows,), 0.3), s, cond, cache)
        caches.append(cache)
    alone_caches = copy.deepcopy(caches)
    new = [frames(2, 3), frames(4, 5)]
    with torch.no_grad():
        alone = [
            dit.step(x, mu, torch.full((x.shape[0],), 0.6), s, cond, cache)
            for (x, mu, cond, s), cache in zip(new, alone_caches, strict=True)
        ]
        padded = [[torch.nn.functional.pad(z, (0, 5 - z.shape[2])) for z in group[:3]] for group in new]
        x, mu, cond = (torch.cat([group[i] for group in padded]) for i in range(3))
        s = torch.cat([group[3] for group in new])
        together = dit.step_many(x, mu, torch.full((6,), 0.6), s, cond, caches, [3, 5])
    torch.testing.assert_close(together[:2, :, :3], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(together[2:, :, :5], alone[1], rtol=0, atol=1e-5)
    for got, want in zip(caches, alone_caches, strict=True):
        assert got.position == want.position
        for a, b in zip(got.conv, want.conv, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        for a, b in zip(got.kv, want.kv, strict=True):
            torch.testing.assert_close(a.live()[0], b.live()[0], rtol=0, atol=1e-5)
