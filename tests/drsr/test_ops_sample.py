"""sample: extension == reference (identical tokens), reference == an HF-style sort-based sampler, errors."""

from __future__ import annotations

import math

import pytest
import torch
from funaudiochat.drsr import ops
from funaudiochat.drsr.ops import reference
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    """The suite runs after tools/setup.sh built the extension: missing is a failure, not a skip."""
    if not ops.extension_available():
        pytest.fail(f"funaudiochat.drsr._C is not built ({ops.extension_error()}); run `bash tools/setup.sh`")


def make_logits(style: str, batch: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Random logits: continuous, integer-valued (many ties), or continuous with masked (-inf) entries."""
    logits = torch.randn(batch, vocab, generator=gen) * 3
    if style == "ties":
        logits = logits.round()
    elif style == "masked":
        logits[torch.rand(batch, vocab, generator=gen) < 0.5] = -torch.inf
        logits[:, 0] = 1.0  # at least one finite entry per row
    return logits


def make_history(batch: int, length: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Ids in [-1, V) (-1 = padding), with a bias towards a few ids so that repeats occur."""
    hot = torch.randint(0, vocab, (batch, 1), generator=gen)
    ids = torch.randint(-1, vocab, (batch, length), generator=gen)
    return torch.where(torch.rand(batch, length, generator=gen) < 0.4, hot, ids)


@st.composite
def sample_case(draw, styles=("plain", "ties", "masked")) -> dict:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    batch, vocab, length = draw(st.integers(1, 4)), draw(st.integers(1, 300)), draw(st.integers(0, 24))
    mode = draw(st.sampled_from(["greedy", "top_k", "top_p", "both", "none"]))
    top_k = draw(st.integers(1, vocab + 3)) if mode in ("top_k", "both") else 0
    top_p = draw(st.sampled_from([0.05, 0.3, 0.8, 0.95])) if mode in ("top_p", "both") else 1.0
    return dict(
        logits=make_logits(draw(st.sampled_from(styles)), batch, vocab, gen),
        history=make_history(batch, length, vocab, gen),
        uniforms=torch.rand(
            batch, 2, generator=gen, dtype=draw(st.sampled_from([torch.float32, torch.float64]))
        ),
        settings=dict(
            temperature=0.0 if mode == "greedy" else draw(st.sampled_from([0.3, 0.8, 1.0, 1.7])),
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=draw(st.sampled_from([1.0, 1.0, 1.3, 0.7])),
            ras_window=draw(st.sampled_from([0, 0, 3, 10])),
            ras_tau=draw(st.sampled_from([0.1, 0.5, 1.0])),
        ),
    )


@settings(max_examples=300, deadline=None)
@given(sample_case())
def test_sample_extension_matches_reference(case: dict) -> None:
    args = (case["logits"], case["history"], case["uniforms"])
    fused = ops.sample(*args, **case["settings"], backend="extension")
    expected = ops.sample(*args, **case["settings"], backend="reference")
    assert fused.dtype == torch.int64 and fused.tolist() == expected.tolist()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_sample_accepts_other_logit_dtypes(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 500, generator=gen).to(dtype)
    history = torch.randint(0, 500, (6, 12), generator=gen)
    uniforms = torch.rand(6, 2, generator=gen)
    for kwargs in (dict(top_p=0.9, repetition_penalty=1.2), dict(temperature=0.0), dict(top_k=5)):
        assert ops.sample(logits, history, uniforms, **kwargs, backend="extension").tolist() == (
            ops.sample(logits, history, uniforms, **kwargs, backend="reference").tolist()
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(temperature=0.8, top_p=0.9, repetition_penalty=1.2),  # Fun-Audio-Chat
        dict(top_k=25, top_p=0.8, ras_window=10, ras_tau=0.1),  # CosyVoice3 LM
        dict(temperature=0.0, repetition_penalty=1.2),
        dict(top_k=1000, temperature=1.3),
    ],
)
def test_sample_extension_matches_reference_at_speech_vocab(kwargs: dict) -> None:
    gen = torch.Generator().manual_seed(6)
    for _ in range(5):
        logits = torch.randn(8, 6565, generator=gen) * 4
        history = torch.randint(0, 6565, (8, 50), generator=gen)
        history[:, -10:] = history[:, -1:]  # one id repeated: RAS and the penalty have work to do
        uniforms = torch.rand(8, 2, generator=gen)
        assert ops.sample(logits, history, uniforms, **kwargs, backend="extension").tolist() == (
            ops.sample(logits, history, uniforms, **kwargs, backend="reference").tolist()
        )


# ------------------------------------------------------------------ reference vs an HF-style sampler


def hf_style_sample(
    logits: torch.Tensor,
    history: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    repetition_penalty: float,
    ras_window: int,
    ras_tau: float,
) -> torch.Tensor:
    """Row by row, the way transformers' processors do it (gather/scatter penalty, topk mask, ascending
    sort + softmax cumsum for top-p), then an inverse-CDF draw of softmax probabilities; fp64 throughout."""
    tokens = []
    for row in range(logits.shape[0]):
        scores = logits[row : row + 1].double()
        past = history[row][history[row] >= 0][None]
        if past.numel():
            picked = torch.gather(scores, 1, past)
            picked = torch.where(picked < 0, picked * repetition_penalty, picked / repetition_penalty)
            scores = scores.scatter(1, past, picked)
        if temperature <= 0:
            tokens.append(int(scores.argmax()))
            continue
        scores = scores / temperature
        full = scores
        if 0 < top_k < scores.shape[1]:
            scores = scores.masked_fill(scores < torch.topk(scores, top_k)[0][..., -1, None], -math.inf)
        if top_p < 1.0:
            sorted_logits, sorted_indices = torch.sort(scores, descending=False)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= 1 - top_p
            remove[..., -1:] = False
            scores = scores.masked_fill(remove.scatter(1, sorted_indices, remove), -math.inf)

        def draw(s: torch.Tensor, u: float) -> int:
            cdf = s.softmax(dim=-1)[0].cumsum(0)
            return min(
                int(torch.searchsorted(cdf, u * cdf[-1], right=True)),
                int(torch.nonzero(cdf.diff(prepend=cdf.new_zeros(1)) > 0).max()),
            )

        token = draw(scores, float(uniforms[row, 0]))
        if ras_window > 0 and int((past[0, -ras_window:] == token).sum()) >= ras_window * ras_tau:
            token = draw(full, float(uniforms[row, 1]))
        tokens.append(token)
    return torch.tensor(tokens)


@settings(max_examples=150, deadline=None)
@given(sample_case(styles=("plain",)))
def test_sample_reference_matches_hf_style_sampler(case: dict) -> None:
    """Continuous logits (no ties, where the tie-inclusive nucleus and HF's may differ)."""
    args = (case["logits"], case["history"], case["uniforms"])
    s = case["settings"]
    expected = hf_style_sample(
        *args,
        s["temperature"],
        s["top_k"],
        s["top_p"],
        s["repetition_penalty"],
        s["ras_window"],
        s["ras_tau"],
    )
    assert reference.sample(*args, **s).tolist() == expected.tolist()


def test_sample_draw_follows_the_distribution() -> None:
    gen = torch.Generator().manual_seed(7)
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).expand(20000, 4)
    history = torch.empty(20000, 0, dtype=torch.long)
    uniforms = torch.rand(20000, 2, generator=gen)
    tokens = ops.sample(logits, history, uniforms, backend="extension")
    frequencies = torch.bincount(tokens, minlength=4).double() / 20000
    torch.testing.assert_close(frequencies, logits[0].double().softmax(0), atol=0.01, rtol=0)
    nucleus = ops.sample(logits, history, uniforms, top_p=0.7, backend="extension")  # p = .09 .24 .64 .03
    assert set(nucleus.tolist()) == {1, 2}


def test_greedy_breaks_ties_towards_the_smallest_index() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
    history = torch.tensor([[3, -1], [-1, -1]])
    for backend in ("extension", "reference"):
        tokens = ops.sample(logits, history, torch.zeros(2, 2), temperature=0.0, backend=backend)
        assert tokens.tolist() == [1, 0]


def test_repetition_penalty_applies_once_per_distinct_id() -> None:
    logits = torch.tensor([[2.0, 1.9, -1.0]])
    history = torch.tensor([[0, 0, 0, -1]])  # penalty 1.1 once: 2/1.1 = 1.82 < 1.9; thrice would also lose
    assert (
        ops.sample(logits, history, torch.zeros(1, 2), 0.0, repetition_penalty=1.1, backend="extension") == 1
    )
    logits = torch.tensor([[2.0, 1.7, -1.0]])  # once: 1.82 > 1.7 (thrice: 1.50 < 1.7)
    for backend in ("extension", "reference"):
        assert (
            ops.sample(logits, history, torch.zeros(1, 2), 0.0, repetition_penalty=1.1, backend=backend) == 0
        )


def test_ras_redraws_a_repeated_token_from_the_full_distribution() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0]])  # top-k 1 always picks 0
    history = torch.tensor([[-1, 0, 2, 0, -1]])
    uniforms = torch.tensor(
        [[0.5, 0.99]]
    )  # the full-distribution redraw with u = .99 lands on the last token
    for backend in ("extension", "reference"):
        plain = ops.sample(logits, history, uniforms, top_k=1, backend=backend)
        # window 3 holds {0, 2, 0}: 2 repeats >= 3 * 0.5 -> redraw; with tau 1.0 (needs 3) -> keep.
        redrawn = ops.sample(logits, history, uniforms, top_k=1, ras_window=3, ras_tau=0.5, backend=backend)
        kept = ops.sample(logits, history, uniforms, top_k=1, ras_window=3, ras_tau=1.0, backend=backend)
        assert (plain.item(), redrawn.item(), kept.item()) == (0, 3, 0)


# ------------------------------------------------------------------------------------------ errors

BACKEND_NAMES = ["extension", "reference"]


def sample_args(**override) -> dict:
    args = dict(
        logits=torch.zeros(2, 5), history=torch.zeros(2, 3, dtype=torch.long), uniforms=torch.zeros(2, 2)
    )
    args.update(override)
    return args


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("temperature", math.nan, r"temperature must be a number"),
        ("top_p", 0.0, r"top_p must be in \(0, 1\]"),
        ("top_p", 1.5, r"top_p must be in \(0, 1\]"),
        ("top_k", -1, r"top_k must be an int >= 0"),
        ("repetition_penalty", 0.0, r"repetition_penalty must be a finite number > 0"),
        ("repetition_penalty", -1.2, r"repetition_penalty must be a finite number > 0"),
        ("ras_window", -1, r"ras_window must be an int >= 0"),
        ("ras_tau", math.nan, r"ras_tau must be a finite number >= 0"),
    ],
)
def test_sample_rejects_bad_settings(setting: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ops.sample(**sample_args(), **{setting: value})


def test_sample_rejects_logits_of_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"logits must have shape \[B, V\], got \(5,\)"):
        ops.sample(**sample_args(logits=torch.zeros(5)))


def test_sample_rejects_history_of_other_batch() -> None:
    with pytest.raises(ValueError, match=r"history must have shape \[B, H\] with B = 2, got \(3, 3\)"):
        ops.sample(**sample_args(history=torch.zeros(3, 3, dtype=torch.long)))


def test_sample_rejects_history_of_wrong_dtype() -> None:
    with pytest.raises(ValueError, match=r"history must have dtype in \(int64\), got int32"):
        ops.sample(**sample_args(history=torch.zeros(2, 3, dtype=torch.int32)))


def test_sample_rejects_uniforms_of_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"uniforms must have shape \[B, 2\] = \[2, 2\], got \(2, 1\)"):
        ops.sample(**sample_args(uniforms=torch.zeros(2, 1)))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_sample_rejects_uniforms_outside_unit_interval(backend: str) -> None:
    with pytest.raises(ValueError, match=r"uniforms must lie in \[0, 1\)"):
        ops.sample(**sample_args(uniforms=torch.tensor([[0.5, 0.5], [1.0, 0.0]])), backend=backend)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_sample_rejects_history_ids_beyond_vocab(backend: str) -> None:
    with pytest.raises(ValueError, match=r"history must hold ids < .*5 \(negative entries are padding\)"):
        ops.sample(**sample_args(history=torch.tensor([[0, 1, 2], [-1, 5, 0]])), backend=backend)


def test_sample_rejects_empty_vocab() -> None:
    with pytest.raises(ValueError, match=r"at least one column"):
        ops.sample(**sample_args(logits=torch.zeros(2, 0)))
