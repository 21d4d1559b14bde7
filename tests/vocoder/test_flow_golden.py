"""Flow matching against the official CosyVoice3 code: golden tensors made by running it at a tiny size
(tests/vocoder/golden/README.md says how).

The outputs are not bit-identical to the official ones: the same float32 computation, summed in another
order, differs in the last bits. Measured on CPU with 1, 2, 4 and 8 threads (the largest over the thread
counts): DiT output 6.0e-7 (7.2e-7 inside the loss), pre-look-ahead output 4.8e-7, mel after 10 Euler steps
1.4e-6 (values up to 5.1), the loss 1.9e-6 of 29.96 (one float32 step). Another CPU (2026-12-05, a Xeon
with AVX-512 and AMX, whose matrix kernels sum in yet another order): DiT output 1.2e-6 (1.0e-6 inside the
loss), the speaker projection 3.0e-8 of values up to 0.14 (bit-identical on the first). The tolerances
below sit just above those figures; a real deviation (a wrong mask, a missing term, a changed draw order)
is orders of magnitude larger. The loss's y is elementwise and equal bit for bit.
"""

import json
from pathlib import Path

import pytest
import torch
from funaudiochat.vocoder.cfm import t_schedule
from funaudiochat.vocoder.flow import CausalFlowMatching, FlowConfig

GOLDEN = Path(__file__).parent / "golden"
NAMES = ("flow_config.json", "flow.safetensors", "flow_io.safetensors", "flow_noise.safetensors")
# measured maxima (see the module docstring), with a margin of less than 2x
DIT_ATOL = 2e-6  # one DiT call (7.2e-7; 1.2e-6 on the second CPU), and the pre-look-ahead layer (4.8e-7)
SPEAKER_ATOL = 1e-7  # the speaker projection: one normalisation and one Linear (3.0e-8 on the second CPU)
MEL_ATOL = 2e-6  # a whole inference (10 Euler steps of the DiT)
LOSS_RTOL = 1e-7  # 1.9e-6 on 29.96 (6.4e-8)


def _golden_files(folder: Path = GOLDEN) -> None:
    missing = [n for n in NAMES if not (folder / n).is_file()]
    if missing:
        pytest.fail(
            f"golden files absent: {', '.join(missing)}; they are committed in {folder} (restore them "
            "from git: they cannot be remade here, see the README.md there)"
        )


def test_missing_goldens_fail(tmp_path):
    """A missing golden file fails the parity tests with a clear message, never skips."""
    with pytest.raises(BaseException) as outcome:  # BaseException: a skip would be caught too
        _golden_files(tmp_path)
    assert outcome.type is pytest.fail.Exception, f"{outcome.type.__name__}: {outcome.value}"
    assert "golden files absent: flow_config.json" in str(outcome.value)


@pytest.fixture(scope="module")
def golden():
    _golden_files()
    from safetensors.torch import load_file

    cfg = json.loads((GOLDEN / "flow_config.json").read_text())
    e = cfg["estimator"]["kwargs"]
    cfm = cfg["decoder"]["cfm_params"]
    top = cfg["kwargs"]
    config = FlowConfig(
        vocab_size=top["vocab_size"],
        input_size=top["input_size"],
        output_size=top["output_size"],
        spk_embed_dim=top["spk_embed_dim"],
        token_mel_ratio=top["token_mel_ratio"],
        pre_lookahead_len=top["pre_lookahead_len"],
        pre_lookahead_channels=cfg["pre_lookahead_layer"]["kwargs"]["channels"],
        dim=e["dim"],
        depth=e["depth"],
        heads=e["heads"],
        dim_head=e["dim_head"],
        ff_mult=e["ff_mult"],
        dropout=e["dropout"],
        static_chunk_size=e["static_chunk_size"],
        sigma_min=cfm["sigma_min"],
        t_scheduler=cfm["t_scheduler"],
        training_cfg_rate=cfm["training_cfg_rate"],
        inference_cfg_rate=cfm["inference_cfg_rate"],
        n_timesteps=cfg["inference_n_timesteps"],
    )
    model = CausalFlowMatching(config).load_official_state_dict(load_file(GOLDEN / "flow.safetensors"))
    io = load_file(GOLDEN / "flow_io.safetensors")
    noise = load_file(GOLDEN / "flow_noise.safetensors")["decoder.rand_noise"]
    return model.eval(), io, noise


def test_golden_noise(golden):
    model, _, noise = golden
    assert torch.equal(model.decoder.rand_noise[:, :, : noise.shape[2]], noise)


def test_golden_dit(golden):
    model, io, _ = golden
    args = (io["dit_x"], io["dit_mask"], io["dit_mu"], io["dit_t"], io["dit_spks"], io["dit_cond"])
    with torch.no_grad():
        for streaming, key in ((False, "dit_out_full"), (True, "dit_out_chunk")):
            out = model.decoder.estimator(*args, streaming=streaming)
            torch.testing.assert_close(out, io[key], rtol=0, atol=DIT_ATOL)


def test_golden_first_euler_step(golden):
    """The DiT at the first Euler step of the offline call: rows [cond, uncond], t = 0, the noise as x;
    the unconditional row has mu, speaker and cond zeroed."""
    model, io, noise = golden
    frames = io["offline_mu"].shape[2]
    mu, spk = io["offline_mu"], io["offline_spk_proj"]
    with torch.no_grad():
        out = model.decoder.estimator(
            noise[:, :, :frames].expand(2, -1, -1),
            torch.ones(2, 1, frames),
            torch.cat((mu, torch.zeros_like(mu))),
            torch.zeros(2),
            torch.cat((spk, torch.zeros_like(spk))),
            torch.zeros(2, mu.shape[1], frames),
        )
    torch.testing.assert_close(out, io["offline_estimator_step0_out"], rtol=0, atol=DIT_ATOL)


@pytest.mark.parametrize(
    "key, kwargs",
    [
        ("mel_offline", {}),
        ("mel_offline_nofinal", {"finalize": False}),
        ("mel_stream_final", {"streaming": True}),
        ("mel_stream_nofinal", {"streaming": True, "finalize": False}),
        ("mel_prompt", {"prompt": True}),
    ],
)
def test_golden_inference(golden, key, kwargs):
    model, io, noise = golden
    if kwargs.pop("prompt", False):
        kwargs.update(prompt_token=io["prompt_token"], prompt_feat=io["prompt_feat"])
    mel, mel_len = model.inference(io["token"], io["embedding"], noise=noise, **kwargs)
    assert mel.shape == io[key].shape and mel_len.tolist() == [io[key].shape[2]]
    torch.testing.assert_close(mel, io[key], rtol=0, atol=MEL_ATOL)


def test_golden_intermediates(golden):
    model, io, _ = golden
    with torch.no_grad():
        spk = model._speaker(io["embedding"], 1)
        mu, _ = model.encode_tokens(io["token"].long(), torch.tensor([io["token"].shape[1]]))
    torch.testing.assert_close(spk, io["offline_spk_proj"], rtol=0, atol=SPEAKER_ATOL)
    torch.testing.assert_close(mu, io["offline_mu"], rtol=0, atol=DIT_ATOL)


def test_golden_loss(golden):
    model, io, _ = golden
    with torch.no_grad():
        mu, mel_len = model.encode_tokens(io["loss_token"].long(), io["loss_token_len"].long())
        valid = io["loss_mask"]
        torch.testing.assert_close(mu * valid, io["loss_mu"] * valid, rtol=0, atol=DIT_ATOL)
        assert mel_len.tolist() == valid.sum((1, 2)).long().tolist()
        spk = model._speaker(io["loss_embedding"], 2)
        torch.testing.assert_close(spk, io["loss_spks"], rtol=0, atol=SPEAKER_ATOL)
        t = t_schedule(io["loss_t_uniform"].reshape(-1), model.decoder.t_scheduler)
        keep = io["loss_cfg_uniform"] > model.decoder.training_cfg_rate
        x1 = io["loss_feat"].transpose(1, 2)
        inputs = (x1, io["loss_mask"], io["loss_mu"], io["loss_spks"], io["loss_cond"])
        loss, y = model.decoder.compute_loss(*inputs, t=t, z=io["loss_z"], cfg_keep=keep)
    assert torch.equal(y, io["loss_y"])  # elementwise: the same bits
    torch.testing.assert_close(loss.reshape(1), io["loss"], rtol=LOSS_RTOL, atol=0)


def test_golden_loss_prediction(golden):
    """The estimator's output inside the loss (``loss_pred``): full attention over the padded batch, with
    mu, speaker and cond of the items whose cfg draw dropped them zeroed (here none was dropped)."""
    model, io, _ = golden
    t = t_schedule(io["loss_t_uniform"].reshape(-1), model.decoder.t_scheduler)
    keep = (io["loss_cfg_uniform"] > model.decoder.training_cfg_rate).float()
    assert keep.tolist() == [1.0, 1.0]
    mask = io["loss_mask"]
    with torch.no_grad():
        pred = model.decoder.estimator(
            io["loss_y"],
            mask,
            io["loss_mu"] * keep[:, None, None],
            t,
            io["loss_spks"] * keep[:, None],
            io["loss_cond"] * keep[:, None, None],
        )
    torch.testing.assert_close(pred * mask, io["loss_pred"] * mask, rtol=0, atol=DIT_ATOL)


def test_golden_loss_draw_order(golden):
    """With no t / z / cfg_keep given, the draws come from the generator in the official order
    (rand t, randn z, rand cfg): replaying the golden draws from the same seed gives the same loss."""
    model, io, _ = golden
    x1 = io["loss_feat"].transpose(1, 2)
    args = (x1, io["loss_mask"], io["loss_mu"], io["loss_spks"], io["loss_cond"])
    with torch.no_grad():
        drawn, _ = model.decoder.compute_loss(*args, generator=torch.Generator().manual_seed(7))
        g = torch.Generator().manual_seed(7)
        t = t_schedule(torch.rand(2, generator=g), "cosine")
        z = torch.randn(x1.shape, generator=g)
        keep = torch.rand(2, generator=g) > 0.2
        given, _ = model.decoder.compute_loss(*args, t=t, z=z, cfg_keep=keep)
    assert torch.equal(drawn, given)


def test_golden_official_stream_mel(golden):
    """The mel of the official streaming protocol (``CosyVoice3Model.token2wav`` at the pinned commit, in
    ``hift_io.safetensors``): each call runs the flow on all tokens sent so far (finalize=False until the
    last), keeps the frames from ``2 * token_offset`` and appends them to the mel cached before; the
    earlier frames are not replaced."""
    from safetensors.torch import load_file

    model, io, noise = golden
    stream = load_file(GOLDEN / "hift_io.safetensors")
    parts = []
    for i, (n_tokens, token_offset, finalize) in enumerate(stream["stream_tokens_calls"].tolist()):
        mel, _ = model.inference(
            io["token"][:, :n_tokens], io["embedding"], finalize=bool(finalize), noise=noise
        )
        parts.append(mel[:, :, 2 * token_offset :])
        torch.testing.assert_close(
            torch.cat(parts, dim=2), stream[f"stream{i}_cache_mel"], rtol=0, atol=MEL_ATOL
        )
    # the last call's new frames are the offline ones; the cached frames before them are not
    assert torch.equal(stream["stream2_cache_mel"][:, :, 60:], io["mel_offline"][:, :, 60:])
    assert (stream["stream2_cache_mel"] - io["mel_offline"]).abs().max() > 1e-3
