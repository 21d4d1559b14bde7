"""Builds ``funaudiochat.drsr._C``, the fused kernels of ``csrc/`` (metadata lives in pyproject.toml).

CPU kernels (C++/OpenMP) are always built. The CUDA kernels are added when nvcc is found (``CUDA_HOME``, else
torch's detection) unless ``FUNAUDIOCHAT_DRSR_CUDA=0``. Install without build isolation, so that the build
uses the torch already in the environment:

    pip install --no-build-isolation -e packages/drsr
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from torch.utils import cpp_extension

HERE = Path(__file__).resolve().parent
CSRC = Path(os.path.relpath(HERE.parents[1] / "csrc", HERE))  # setuptools wants paths relative to setup.py


def cuda_wanted() -> bool:
    if os.environ.get("FUNAUDIOCHAT_DRSR_CUDA", "1") == "0" or cpp_extension.CUDA_HOME is None:
        return False
    return (Path(cpp_extension.CUDA_HOME) / "bin" / "nvcc").exists()


def extension() -> cpp_extension.CppExtension:
    sources = [str(CSRC / name) for name in ("drsr_ops.cpp", "drsr_sample.cpp", "drsr_decode.cpp")]
    compile_args: dict[str, list[str]] = {"cxx": ["-O3", "-fopenmp"]}
    if not cuda_wanted():
        return cpp_extension.CppExtension(
            "funaudiochat.drsr._C", sources, extra_compile_args=compile_args, extra_link_args=["-fopenmp"]
        )
    compile_args["nvcc"] = ["-O3", "-lineinfo"]
    return cpp_extension.CUDAExtension(
        "funaudiochat.drsr._C",
        sources + [str(CSRC / "drsr_ops_cuda.cu")],
        define_macros=[("FUNAUDIOCHAT_WITH_CUDA", "1")],
        extra_compile_args=compile_args,
        extra_link_args=["-fopenmp"],
    )


class BuildExtension(cpp_extension.BuildExtension):
    """Compiles from absolute source paths, so that ``../../csrc`` objects stay inside the build folder."""

    def build_extension(self, ext) -> None:
        relative = ext.sources
        ext.sources = [str((HERE / source).resolve()) for source in relative]
        try:
            super().build_extension(ext)
        finally:
            ext.sources = relative  # egg_info lists them later and rejects absolute paths


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
