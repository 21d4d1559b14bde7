"""CUDA kernels: registered when built with CUDA; on a GPU, the properties checked on CPU (else skipped).

CI has no GPU, so the GPU tests below skip there; they passed on an NVIDIA H200 (`bash tools/gpu_check.sh`,
docs/kernels_on_gpu.md). Run them on any machine with a GPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from funaudiochat.drsr import ops
from funaudiochat.drsr.ops import reference
from hypothesis import given, settings
from hypothesis import strategies as st

OP_NAMES = ("group", "group_backward", "ungroup", "ungroup_", "sample")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def nvcc_present() -> bool:
    """tools/setup.sh builds the CUDA kernels whenever this holds (unless FUNAUDIOCHAT_DRSR_CUDA=0)."""
    if os.environ.get("FUNAUDIOCHAT_DRSR_CUDA") == "0":
        return False
    return (Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc").exists()


@pytest.fixture(scope="module", autouse=True)
def extension() -> None:
    if not ops.extension_available():
        pytest.fail(f"funaudiochat.drsr._C is not built ({ops.extension_error()}); run `bash tools/setup.sh`")


def test_extension_was_built_with_cuda_where_nvcc_exists() -> None:
    if nvcc_present():
        assert ops.extension_has_cuda(), (
            "nvcc is installed but the extension was built without its CUDA kernels"
        )


def test_cuda_kernels_are_registered_when_built_with_cuda() -> None:
    for name in OP_NAMES:
        registered = torch._C._dispatch_has_kernel_for_dispatch_key(f"funaudiochat::{name}", "CUDA")
        assert registered == ops.extension_has_cuda(), name


# --------------------------------------------------------------------------------- on a GPU only


@needs_gpu
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    with_text=st.booleans(),
    k=st.integers(1, 6),
)
def test_gpu_group_and_ungroup_match_reference(
    seed: int, dtype: torch.dtype, with_text: bool, k: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    batch, length, vocab, dim = 2, 3, 37, 300  # dim > one block of threads
    ids = torch.randint(0, vocab, (batch, length * k), generator=gen)
    table = torch.randn(vocab, dim, generator=gen).to(dtype)
    text = torch.randn(batch, length, dim, generator=gen).to(dtype) if with_text else None
    u = torch.randn(batch, length, k * dim, generator=gen).to(dtype)
    cuda = dict(device="cuda")
    got = ops.group(
        ids.to(**cuda), table.to(**cuda), k, None if text is None else text.to(**cuda), backend="extension"
    )
    want = reference.group(ids, table, k, text)
    torch.testing.assert_close(got.cpu().float(), want.float(), rtol=2**-7, atol=1e-6)
    got = ops.ungroup(u.to(**cuda), ids.to(**cuda), table.to(**cuda), k, backend="extension")
    torch.testing.assert_close(got.cpu(), reference.ungroup(u, ids, table, k), rtol=0, atol=0)


@needs_gpu
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), with_text=st.booleans())
def test_gpu_backward_matches_reference(seed: int, with_text: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 9, (2, 20), generator=gen)
    table = torch.randn(9, 70, generator=gen)
    text = torch.randn(2, 4, 70, generator=gen)
    upstream = torch.randn(2, 4, 70, generator=gen)

    def table_grad(device: str, backend: str) -> torch.Tensor:
        leaf = table.to(device).requires_grad_(True)
        out = ops.group(ids.to(device), leaf, 5, text.to(device) if with_text else None, backend=backend)
        (grad,) = torch.autograd.grad(out, leaf, upstream.to(device))
        return grad.cpu()

    torch.testing.assert_close(
        table_grad("cuda", "extension"), table_grad("cpu", "reference"), rtol=1e-5, atol=1e-6
    )
    u = torch.randn(2, 4, 5 * 70, generator=gen)
    grads = []
    for device, backend in (("cuda", "extension"), ("cpu", "reference")):
        leaves = [u.to(device).requires_grad_(True), table.to(device).requires_grad_(True)]
        out = ops.ungroup(leaves[0], ids.to(device), leaves[1], 5, backend=backend)
        grads.append([g.cpu() for g in torch.autograd.grad(out, leaves, torch.ones_like(out))])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@needs_gpu
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    k=st.integers(1, 6),
)
def test_gpu_ungroup_inplace_matches_reference_and_ungroup(seed: int, dtype: torch.dtype, k: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    batch, length, vocab, dim = 2, 3, 37, 300  # dim > one block of threads
    ids = torch.randint(0, vocab, (batch, length * k), generator=gen)
    table = torch.randn(vocab, dim, generator=gen).to(dtype)
    u = torch.randn(batch, length, k * dim, generator=gen).to(dtype)
    target = u.cuda()
    out = ops.ungroup_(target, ids.cuda(), table.cuda(), k, backend="extension")
    assert out.device.type == "cuda" and out.data_ptr() == target.data_ptr()
    assert torch.equal(out, ops.ungroup(u.cuda(), ids.cuda(), table.cuda(), k, backend="extension"))
    torch.testing.assert_close(out.cpu(), reference.ungroup(u, ids, table, k), rtol=0, atol=0)


@needs_gpu
@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_gpu_ungroup_inplace_backward_matches_reference(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 9, (2, 20), generator=gen)
    table = torch.randn(9, 70, generator=gen)
    u = torch.randn(2, 4, 5 * 70, generator=gen)
    upstream = torch.randn(2, 20, 70, generator=gen)
    grads = []
    for device, backend in (("cuda", "extension"), ("cpu", "reference")):
        leaves = [u.to(device).requires_grad_(True), table.to(device).requires_grad_(True)]
        out = ops.ungroup_(leaves[0] * 1, ids.to(device), leaves[1], 5, backend=backend)
        grads.append([g.cpu() for g in torch.autograd.grad(out, leaves, upstream.to(device))])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@needs_gpu
@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    vocab=st.sampled_from([1, 7, 300, 6565]),
    mode=st.sampled_from(["greedy", "top_k", "top_p", "both", "none"]),
    penalty=st.sampled_from([1.0, 1.3]),
    ras_window=st.sampled_from([0, 10]),
    ties=st.booleans(),
)
def test_gpu_sample_matches_reference(
    seed: int, vocab: int, mode: str, penalty: float, ras_window: int, ties: bool
) -> None:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, vocab, generator=gen) * 3
    if ties:
        logits = logits.round()
    history = torch.randint(-1, vocab, (4, 20), generator=gen)
    history[:, -5:] = history[:, -1:].clamp(min=0)
    uniforms = torch.rand(4, 2, generator=gen)
    kwargs = dict(
        temperature=0.0 if mode == "greedy" else 0.8,
        top_k=min(25, vocab) if mode in ("top_k", "both") else 0,
        top_p=0.8 if mode in ("top_p", "both") else 1.0,
        repetition_penalty=penalty,
        ras_window=ras_window,
        ras_tau=0.1,
    )
    got = ops.sample(logits.cuda(), history.cuda(), uniforms.cuda(), **kwargs, backend="extension")
    assert got.device.type == "cuda"
    assert got.cpu().tolist() == reference.sample(logits, history, uniforms, **kwargs).tolist()
