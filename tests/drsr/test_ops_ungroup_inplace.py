"""ungroup_ (in place): same values and gradients as ungroup, writes into u, autograd safety, errors."""

from __future__ import annotations

import pytest
import torch
from funaudiochat.drsr import ops
from funaudiochat.drsr.ops import reference
from hypothesis import given, settings
from hypothesis import strategies as st

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
BACKEND_NAMES = ["extension", "reference"]
# Both sides compute the same fp32 sum and round once, so at most one rounding step apart.
FORWARD_TOL = {torch.float32: (1e-6, 1e-6), torch.bfloat16: (2**-7, 1e-6), torch.float16: (2**-10, 1e-6)}


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    if not ops.extension_available():
        pytest.fail(f"funaudiochat.drsr._C is not built ({ops.extension_error()}); run `bash tools/setup.sh`")


@st.composite
def ungroup_case(draw) -> dict:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    batch, length, k = draw(st.integers(1, 3)), draw(st.integers(0, 5)), draw(st.integers(1, 6))
    vocab, dim = draw(st.integers(1, 40)), draw(st.integers(1, 24))
    dtype = draw(st.sampled_from(DTYPES))
    return dict(
        u=torch.randn(batch, length, k * dim, generator=gen).to(dtype),
        prev_ids=torch.randint(0, vocab, (batch, length * k), generator=gen),
        table=torch.randn(vocab, dim, generator=gen).to(dtype),
        k=k,
    )


def shares_storage(out: torch.Tensor, u: torch.Tensor) -> bool:
    same_storage = out.untyped_storage().data_ptr() == u.untyped_storage().data_ptr()
    return same_storage and out.data_ptr() == u.data_ptr()


@settings(max_examples=60, deadline=None)
@given(ungroup_case(), st.sampled_from(BACKEND_NAMES))
def test_ungroup_inplace_matches_ungroup_and_writes_into_u(case: dict, backend: str) -> None:
    u, prev_ids, table, k = case["u"], case["prev_ids"], case["table"], case["k"]
    expected = ops.ungroup(u, prev_ids, table, k, backend=backend)
    want_reference = reference.ungroup(u, prev_ids, table, k)
    target = u.clone()
    version = target._version
    out = ops.ungroup_(target, prev_ids, table, k, backend=backend)
    assert out.shape == expected.shape and out.dtype == u.dtype and out.is_contiguous()
    assert shares_storage(out, target)
    assert target._version > version  # autograd sees the mutation
    assert torch.equal(out, expected)  # the same rounding as the out-of-place op of the same backend
    assert torch.equal(target.view_as(out), out)
    rtol, atol = FORWARD_TOL[u.dtype]
    torch.testing.assert_close(out.float(), want_reference.float(), rtol=rtol, atol=atol)


def inplace_grads(
    backend: str, u: torch.Tensor, prev_ids: torch.Tensor, table: torch.Tensor, k: int, upstream: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Gradients w.r.t. a leaf u (ungroup_ runs on a non-leaf copy, as on a Linear's output) and table."""
    leaves = [u.detach().requires_grad_(True), table.detach().requires_grad_(True)]
    out = ops.ungroup_(leaves[0] * 1, prev_ids, leaves[1], k, backend=backend)
    return torch.autograd.grad(out, leaves, upstream)


@settings(max_examples=40, deadline=None)
@given(ungroup_case(), st.sampled_from(BACKEND_NAMES))
def test_ungroup_inplace_gradients_equal_ungroup(case: dict, backend: str) -> None:
    u, prev_ids, table, k = case["u"], case["prev_ids"], case["table"], case["k"]
    upstream = torch.randn(u.shape[0], prev_ids.shape[1], table.shape[1]).to(u.dtype)
    leaves = [u.detach().requires_grad_(True), table.detach().requires_grad_(True)]
    out = ops.ungroup(leaves[0], prev_ids, leaves[1], k, backend=backend)
    want = torch.autograd.grad(out, leaves, upstream)
    got = inplace_grads(backend, u, prev_ids, table, k, upstream)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ungroup_inplace_gradients_agree_across_backends(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(5)
    u = torch.randn(2, 4, 5 * 6, generator=gen).to(dtype)
    prev_ids = torch.randint(0, 3, (2, 20), generator=gen)  # many repeats per id
    table = torch.randn(3, 6, generator=gen).to(dtype)
    upstream = torch.randn(2, 20, 6, generator=gen).to(dtype)
    got = inplace_grads("extension", u, prev_ids, table, 5, upstream)
    want = inplace_grads("reference", u.float(), prev_ids, table.float(), 5, upstream.float())
    assert got[0].dtype == got[1].dtype == dtype
    torch.testing.assert_close(got[0].float(), want[0], rtol=0, atol=0)
    torch.testing.assert_close(got[1].float(), want[1], rtol=2**-7, atol=1e-3)


def test_ungroup_inplace_through_a_linear_trains_like_ungroup() -> None:
    gen = torch.Generator().manual_seed(6)
    linear = torch.nn.Linear(8, 5 * 8)
    table = torch.randn(11, 8, generator=gen, requires_grad=True)
    conditioning = torch.randn(2, 3, 8, generator=gen)
    prev_ids = torch.randint(0, 11, (2, 15), generator=gen)
    grads = []
    for fn in (ops.ungroup, ops.ungroup_):
        out = fn(linear(conditioning), prev_ids, table, 5)  # a 3-D Linear output is a view of its 2-D result
        loss = (out.tanh() * torch.arange(out.numel()).view_as(out)).sum()
        grads.append(torch.autograd.grad(loss, [linear.weight, linear.bias, table]))
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_ungroup_inplace_refuses_to_overwrite_a_saved_tensor(backend: str) -> None:
    leaf = torch.randn(1, 2, 10, requires_grad=True)
    u = leaf.exp()  # exp's backward needs its output
    out = ops.ungroup_(u, torch.zeros(1, 4, dtype=torch.long), torch.randn(3, 5), 2, backend=backend)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_ungroup_inplace_on_a_leaf_without_grad_mode(backend: str) -> None:
    u = torch.randn(1, 2, 10, requires_grad=True)
    want = ops.ungroup(u.detach(), torch.ones(1, 4, dtype=torch.long), torch.ones(3, 5), 2)
    with torch.no_grad():
        out = ops.ungroup_(u, torch.ones(1, 4, dtype=torch.long), torch.ones(3, 5), 2, backend=backend)
    assert torch.equal(out, want) and shares_storage(out, u)


def test_ungroup_inplace_works_with_torch_library_opcheck() -> None:
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 11, (2, 10), generator=gen)
    table = torch.randn(11, 8, generator=gen, requires_grad=True)
    u = torch.randn(2, 2, 40, generator=gen)  # opcheck clones inputs into leaves: only table requires grad
    tests = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(torch.ops.funaudiochat.ungroup_.default, (u, ids, table, 5), test_utils=tests)


def test_ungroup_inplace_kernels_are_registered() -> None:
    for key in ("CPU", "Autograd"):  # Autograd: the C++ autograd.Function of the mutation
        assert torch._C._dispatch_has_kernel_for_dispatch_key("funaudiochat::ungroup_", key), key


# ------------------------------------------------------------------------------------------ errors


def inplace_args(**override) -> dict:
    ids = torch.zeros(1, 10, dtype=torch.long)
    args = dict(u=torch.zeros(1, 2, 20), prev_ids=ids, table=torch.ones(3, 4), group_size=5)
    args.update(override)
    return args


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("bad", [3, -1])
def test_ungroup_inplace_rejects_ids_out_of_range_before_writing(backend: str, bad: int) -> None:
    args = inplace_args()
    args["prev_ids"][0, 9] = bad
    with pytest.raises(ValueError, match=r"prev_ids .*\[0, 3\)"):
        ops.ungroup_(**args, backend=backend)
    assert torch.equal(args["u"], torch.zeros(1, 2, 20))  # untouched


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_ungroup_inplace_rejects_non_contiguous_u(backend: str) -> None:
    u = torch.zeros(20, 2, 1).permute(2, 1, 0)
    with pytest.raises(ValueError, match=r"u must be contiguous \(ungroup_ writes into its storage\)"):
        ops.ungroup_(**inplace_args(u=u), backend=backend)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_ungroup_inplace_rejects_a_leaf_that_requires_grad(backend: str) -> None:
    u = torch.zeros(1, 2, 20, requires_grad=True)
    with pytest.raises(ValueError, match=r"u is a leaf tensor that requires grad"):
        ops.ungroup_(**inplace_args(u=u), backend=backend)


def test_ungroup_inplace_rejects_width_not_k_times_dim() -> None:
    with pytest.raises(ValueError, match=r"u.shape\[2\] must be group_size \* D = 5 \* 4 = 20, got 21"):
        ops.ungroup_(**inplace_args(u=torch.zeros(1, 2, 21)))


def test_ungroup_inplace_rejects_wrong_prev_ids_shape() -> None:
    with pytest.raises(ValueError, match=r"prev_ids must have shape \[B, L\*k\] = \[1, 10\], got \(1, 9\)"):
        ops.ungroup_(**inplace_args(prev_ids=torch.zeros(1, 9, dtype=torch.long)))


def test_ungroup_inplace_rejects_dtype_mismatch() -> None:
    with pytest.raises(ValueError, match=r"u must have dtype in \(bfloat16\), got float32"):
        ops.ungroup_(**inplace_args(table=torch.zeros(3, 4, dtype=torch.bfloat16)))


def test_ungroup_inplace_rejects_bad_group_size() -> None:
    with pytest.raises(ValueError, match=r"group_size must be an int >= 1, got 0"):
        ops.ungroup_(**inplace_args(group_size=0))


def test_ungroup_inplace_kernel_checks_its_arguments_too() -> None:
    """Called directly (no Python checks), the CPU kernel raises ValueError, not a crash."""
    with pytest.raises(ValueError, match=r"u must be contiguous"):
        u = torch.zeros(20, 2, 1).permute(2, 1, 0)
        torch.ops.funaudiochat.ungroup_(u, torch.zeros(1, 10, dtype=torch.long), torch.ones(3, 4), 5)
    prev_ids = torch.full((1, 10), 7, dtype=torch.long)
    with pytest.raises(ValueError, match=r"prev_ids contains 7, outside \[0, 3\)"):
        torch.ops.funaudiochat.ungroup_(torch.zeros(1, 2, 20), prev_ids, torch.ones(3, 4), 5)
