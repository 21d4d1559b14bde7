"""group / ungroup: extension == reference == plain eager PyTorch, autograd, argument errors, backends."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from funaudiochat.drsr import ops
from funaudiochat.drsr.ops import dispatch, reference
from hypothesis import given, settings
from hypothesis import strategies as st

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Forward: both sides compute the same fp32 value and round once, so at most one rounding step apart.
FORWARD_TOL = {torch.float32: (1e-6, 1e-6), torch.bfloat16: (2**-7, 1e-6), torch.float16: (2**-10, 1e-6)}


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    """The suite runs after tools/setup.sh built the extension: missing is a failure, not a skip."""
    if not ops.extension_available():
        pytest.fail(f"funaudiochat.drsr._C is not built ({ops.extension_error()}); run `bash tools/setup.sh`")


@st.composite
def group_case(draw) -> dict:
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    batch, groups, k = draw(st.integers(1, 3)), draw(st.integers(0, 5)), draw(st.integers(1, 6))
    vocab, dim = draw(st.integers(1, 40)), draw(st.integers(1, 24))
    dtype = draw(st.sampled_from(DTYPES))
    ids = torch.randint(0, vocab, (batch, groups * k), generator=gen)
    table = torch.randn(vocab, dim, generator=gen).to(dtype)
    text = torch.randn(batch, groups, dim, generator=gen).to(dtype) if draw(st.booleans()) else None
    return dict(ids=ids, table=table, k=k, text=text)


def assert_forward_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    rtol, atol = FORWARD_TOL[expected.dtype]
    torch.testing.assert_close(actual.float(), expected.float(), rtol=rtol, atol=atol)


def grads(fn, inputs: list[torch.Tensor], upstream: torch.Tensor) -> list[torch.Tensor]:
    leaves = [x.detach().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    return list(torch.autograd.grad(out, leaves, upstream))


# ------------------------------------------------------------------------------------------- group


@settings(max_examples=60, deadline=None)
@given(group_case())
def test_group_extension_matches_reference(case: dict) -> None:
    args = (case["ids"], case["table"], case["k"], case["text"])
    assert_forward_close(ops.group(*args, backend="extension"), ops.group(*args, backend="reference"))


@settings(max_examples=40, deadline=None)
@given(group_case())
def test_group_backward_matches_reference(case: dict) -> None:
    ids, k, text = case["ids"], case["k"], case["text"]
    table = case["table"].float()  # fp32: the reference's own autograd is the yardstick
    inputs = [table] + ([text.float()] if text is not None else [])
    upstream = torch.randn(ids.shape[0], ids.shape[1] // k, table.shape[1])

    def run(backend: str):
        return lambda tab, *txt: ops.group(ids, tab, k, txt[0] if txt else None, backend=backend)

    for got, want in zip(
        grads(run("extension"), inputs, upstream), grads(run("reference"), inputs, upstream), strict=True
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_group_backward_low_precision_accumulates_in_fp32(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 7, (2, 60), generator=gen)  # many repeats per id
    table = torch.randn(7, 16, generator=gen)
    upstream = torch.randn(2, 12, 16, generator=gen)
    (got,) = grads(
        lambda tab: ops.group(ids, tab, 5, backend="extension"), [table.to(dtype)], upstream.to(dtype)
    )
    (want,) = grads(lambda tab: reference.group(ids, tab, 5), [table], upstream.to(dtype).float())
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=2**-7, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(group_case())
def test_group_reference_matches_eager(case: dict) -> None:
    ids, table, k, text = case["ids"], case["table"].float(), case["k"], case["text"]
    batch, length = ids.shape
    eager = F.embedding(ids, table).view(batch, length // k, k, table.shape[1]).mean(2)
    if text is not None:
        eager = (text.float() + eager) / 2
    torch.testing.assert_close(reference.group(ids, table, k, None if text is None else text.float()), eager)


def test_group_runs_at_model_shapes() -> None:
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 6565, (2, 1500), generator=gen)
    table = torch.randn(6565, 256, generator=gen)
    text = torch.randn(2, 300, 256, generator=gen)
    assert_forward_close(
        ops.group(ids, table, 5, text, backend="extension"), reference.group(ids, table, 5, text)
    )


def test_group_accepts_non_contiguous_inputs() -> None:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 9, (10, 4), generator=gen).t()  # [4, 10]
    table = torch.randn(16, 9, generator=gen).t()  # [9, 16]
    text = torch.randn(4, 16, 2, generator=gen).transpose(1, 2)
    assert not (ids.is_contiguous() or table.is_contiguous() or text.is_contiguous())
    assert_forward_close(
        ops.group(ids, table, 5, text, backend="extension"), reference.group(ids, table, 5, text)
    )


# ----------------------------------------------------------------------------------------- ungroup


@st.composite
def ungroup_case(draw) -> dict:
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    batch, length, k = draw(st.integers(1, 3)), draw(st.integers(0, 5)), draw(st.integers(1, 6))
    vocab, dim = draw(st.integers(1, 40)), draw(st.integers(1, 24))
    dtype = draw(st.sampled_from(DTYPES))
    u = torch.randn(batch, length, k * dim, generator=gen).to(dtype)
    prev_ids = torch.randint(0, vocab, (batch, length * k), generator=gen)
    table = torch.randn(vocab, dim, generator=gen).to(dtype)
    return dict(u=u, prev_ids=prev_ids, table=table, k=k)


@settings(max_examples=60, deadline=None)
@given(ungroup_case())
def test_ungroup_extension_matches_reference(case: dict) -> None:
    args = (case["u"], case["prev_ids"], case["table"], case["k"])
    assert_forward_close(ops.ungroup(*args, backend="extension"), ops.ungroup(*args, backend="reference"))


@settings(max_examples=40, deadline=None)
@given(ungroup_case())
def test_ungroup_backward_matches_reference(case: dict) -> None:
    prev_ids, k = case["prev_ids"], case["k"]
    u, table = case["u"].float(), case["table"].float()
    upstream = torch.randn(u.shape[0], prev_ids.shape[1], table.shape[1])

    def run(backend: str):
        return lambda uu, tab: ops.ungroup(uu, prev_ids, tab, k, backend=backend)

    for got, want in zip(
        grads(run("extension"), [u, table], upstream),
        grads(run("reference"), [u, table], upstream),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(ungroup_case())
def test_ungroup_reference_matches_eager(case: dict) -> None:
    u, prev_ids, table, k = case["u"], case["prev_ids"], case["table"], case["k"]
    batch, length, width = u.shape
    eager = u.view(batch, length * k, width // k) + F.embedding(prev_ids, table)
    torch.testing.assert_close(reference.ungroup(u, prev_ids, table, k), eager, rtol=0, atol=0)


def test_ops_work_with_torch_library_opcheck() -> None:
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 11, (2, 10), generator=gen)
    table = torch.randn(11, 8, generator=gen, requires_grad=True)
    text = torch.randn(2, 2, 8, generator=gen, requires_grad=True)
    u = torch.randn(2, 2, 40, generator=gen, requires_grad=True)
    tests = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.funaudiochat.group.default, (ids, table, 5, text), test_utils=tests)
    torch.library.opcheck(torch.ops.funaudiochat.ungroup.default, (u, ids, table, 5), test_utils=tests)


# ------------------------------------------------------------------------------------------ errors

BACKEND_NAMES = ["extension", "reference"]


def group_args(**override) -> dict:
    args = dict(ids=torch.zeros(2, 10, dtype=torch.long), table=torch.zeros(7, 4), group_size=5, text=None)
    args.update(override)
    return args


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_group_rejects_length_not_multiple_of_group_size(backend: str) -> None:
    with pytest.raises(ValueError, match=r"T = 11\) must be a multiple of group_size \(k = 5\)"):
        ops.group(**group_args(ids=torch.zeros(2, 11, dtype=torch.long)), backend=backend)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("bad", [7, -1])
def test_group_rejects_ids_out_of_range(backend: str, bad: int) -> None:
    ids = torch.zeros(2, 10, dtype=torch.long)
    ids[1, 3] = bad
    with pytest.raises(ValueError, match=r"ids .*\[0, 7\)"):
        ops.group(**group_args(ids=ids), backend=backend)


def test_group_rejects_wrong_ids_dtype() -> None:
    with pytest.raises(ValueError, match=r"ids must have dtype in \(int64\), got int32"):
        ops.group(**group_args(ids=torch.zeros(2, 10, dtype=torch.int32)))


def test_group_rejects_wrong_ids_rank() -> None:
    with pytest.raises(ValueError, match=r"ids must have shape \[B, T\]"):
        ops.group(**group_args(ids=torch.zeros(20, dtype=torch.long)))


def test_group_rejects_wrong_table_dtype() -> None:
    with pytest.raises(
        ValueError, match=r"table must have dtype in \(float32, bfloat16, float16\), got float64"
    ):
        ops.group(**group_args(table=torch.zeros(7, 4, dtype=torch.float64)))


def test_group_rejects_wrong_text_shape() -> None:
    with pytest.raises(
        ValueError, match=r"text must have shape \[B, T/k, D\] = \[2, 2, 4\], got \(2, 3, 4\)"
    ):
        ops.group(**group_args(text=torch.zeros(2, 3, 4)))


def test_group_rejects_text_of_other_dtype() -> None:
    with pytest.raises(ValueError, match=r"text must have dtype in \(float32\), got bfloat16"):
        ops.group(**group_args(text=torch.zeros(2, 2, 4, dtype=torch.bfloat16)))


def test_group_rejects_bad_group_size() -> None:
    with pytest.raises(ValueError, match=r"group_size must be an int >= 1, got 0"):
        ops.group(**group_args(group_size=0))


def test_group_rejects_mixed_devices() -> None:
    with pytest.raises(ValueError, match=r"ids is on cpu but table is on meta"):
        ops.group(**group_args(table=torch.zeros(7, 4, device="meta")))


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_ungroup_rejects_prev_ids_out_of_range(backend: str) -> None:
    prev_ids = torch.zeros(1, 10, dtype=torch.long)
    prev_ids[0, 9] = 3
    with pytest.raises(ValueError, match=r"prev_ids .*\[0, 3\)"):
        ops.ungroup(torch.zeros(1, 2, 20), prev_ids, torch.zeros(3, 4), 5, backend=backend)


def test_ungroup_rejects_width_not_k_times_dim() -> None:
    with pytest.raises(ValueError, match=r"u.shape\[2\] must be group_size \* D = 5 \* 4 = 20, got 21"):
        ops.ungroup(torch.zeros(1, 2, 21), torch.zeros(1, 10, dtype=torch.long), torch.zeros(3, 4), 5)


def test_ungroup_rejects_wrong_prev_ids_shape() -> None:
    with pytest.raises(ValueError, match=r"prev_ids must have shape \[B, L\*k\] = \[1, 10\], got \(1, 9\)"):
        ops.ungroup(torch.zeros(1, 2, 20), torch.zeros(1, 9, dtype=torch.long), torch.zeros(3, 4), 5)


def test_ungroup_rejects_dtype_mismatch() -> None:
    with pytest.raises(ValueError, match=r"u must have dtype in \(bfloat16\), got float32"):
        ops.ungroup(
            torch.zeros(1, 2, 20),
            torch.zeros(1, 10, dtype=torch.long),
            torch.zeros(3, 4, dtype=torch.bfloat16),
            5,
        )


def test_ungroup_rejects_wrong_u_rank() -> None:
    with pytest.raises(ValueError, match=r"u must have shape \[B, L, k\*D\], got \(2, 20\)"):
        ops.ungroup(torch.zeros(2, 20), torch.zeros(1, 10, dtype=torch.long), torch.zeros(3, 4), 5)


# ---------------------------------------------------------------------------------------- backends


def test_env_variable_forces_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(reference, "group", lambda *args: calls.append(args) or torch.zeros(0))
    monkeypatch.setenv(ops.ENV_BACKEND, "reference")
    ops.group(**group_args())
    assert len(calls) == 1
    monkeypatch.setenv(ops.ENV_BACKEND, "auto")
    ops.group(**group_args())
    assert len(calls) == 1  # auto picks the extension on CPU


def test_bad_backend_names_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'extension', 'reference'\)"):
        ops.group(**group_args(), backend="fast")
    monkeypatch.setenv(ops.ENV_BACKEND, "gpu")
    with pytest.raises(ValueError, match=r"FUNAUDIOCHAT_DRSR_OPS must be one of"):
        ops.group(**group_args())


def test_extension_backend_refuses_devices_without_kernels() -> None:
    with pytest.raises(RuntimeError, match=r"no kernels for device meta"):
        ops.group(
            **group_args(
                ids=torch.zeros(2, 10, dtype=torch.long, device="meta"),
                table=torch.zeros(7, 4, device="meta"),
            ),
            backend="extension",
        )


@pytest.fixture
def cuda_kernels_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the extension had its CUDA kernels, with no backend chosen in the environment."""
    monkeypatch.setattr(dispatch, "extension_has_cuda", lambda: True)
    monkeypatch.delenv(ops.ENV_BACKEND, raising=False)


def test_auto_uses_the_kernels_of_each_device_the_extension_serves(
    cuda_kernels_built: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for device in ("cpu", "cuda", "cuda:1"):
            assert ops.choose_implementation("auto", torch.device(device)) == "extension", device
            assert ops.choose_implementation(None, torch.device(device)) == "extension", device
        assert ops.choose_implementation("auto", torch.device("meta")) == "reference"
        assert ops.choose_implementation("reference", torch.device("cuda")) == "reference"
        monkeypatch.setenv(ops.ENV_BACKEND, "reference")
        assert ops.choose_implementation(None, torch.device("cuda")) == "reference"
    monkeypatch.setattr(dispatch, "extension_has_cuda", lambda: False)
    assert ops.choose_implementation("auto", torch.device("cuda")) == "reference"
    assert ops.choose_implementation("auto", torch.device("cpu")) == "extension"


def test_extension_on_a_device_without_kernels_is_refused(
    cuda_kernels_built: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = torch.device("cuda")
    assert ops.choose_implementation("extension", cuda) == "extension"
    monkeypatch.setattr(dispatch, "extension_has_cuda", lambda: False)
    with pytest.raises(RuntimeError, match=r"no kernels for device cuda"):
        ops.choose_implementation("extension", cuda)


def test_cpu_kernels_are_registered() -> None:
    for name in ("group", "group_backward", "ungroup", "sample"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"funaudiochat::{name}", "CPU"), name
