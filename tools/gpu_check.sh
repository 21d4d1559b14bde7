#!/usr/bin/env bash
# On a CUDA machine: build the DRSR extension with its CUDA kernels, run the drsr tests (the GPU ones run
# there, skipped elsewhere) and the CUDA benchmark. Results go to $OUT (default gpu-check/).
#
#   bash tools/gpu_check.sh            # wheels in .whl/ (soundfile and its needs) are installed first if present
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
nvidia-smi -L
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
PYTHONPATH=$(ls -d "$PWD"/packages/*/src | tr '\n' ':')${PYTHONPATH:-}
export PYTHONPATH PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
start=$(date +%s)
if ! (cd packages/drsr && TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=16 python3 setup.py build_ext --inplace) > "$OUT/build.log" 2>&1; then
    tail -60 "$OUT/build.log"
    exit 1
fi
echo "built in $(( $(date +%s) - start )) s"
python3 -c "from funaudiochat.drsr import ops; print('extension has CUDA:', ops.extension_has_cuda(), ops.extension_error())"
timeout 300 python3 -m pytest tests/drsr -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/pytest_drsr.log" | tail -40
timeout 150 python3 tools/bench/fused_ops_cuda.py --json "$OUT/fused_ops_cuda.json" 2>&1 | tee "$OUT/bench.log"
