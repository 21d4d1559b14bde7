"""Training stages of the speech LLM: pre-alignment / SFT (``SpeechLLMModule``) and Core-Cocktail."""

from .module import SpeechLLMModule, build_model, save_checkpoint_atomic

__all__ = ["SpeechLLMModule", "build_model", "save_checkpoint_atomic"]
