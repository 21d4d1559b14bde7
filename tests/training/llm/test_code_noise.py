"""FSQ-neighbour noise on the speaking head's previous codes: one digit one step, only real codes, at the
rate asked; the model applies it in training and not in evaluation."""

import pytest
import torch
from funaudiochat.base.constants import SPEECH_BOS, SPEECH_CODES, SPEECH_PAD
from funaudiochat.training.llm.code_noise import NeighbourNoise, fsq_neighbour


def digits(code: int) -> list[int]:
    return [(code // 3**i) % 3 for i in range(8)]


def test_a_neighbour_is_one_digit_one_step_away():
    codes = torch.randint(0, SPEECH_CODES, (2000,), generator=torch.Generator().manual_seed(0))
    digit = torch.randint(0, 8, (2000,), generator=torch.Generator().manual_seed(1))
    up = torch.rand(2000, generator=torch.Generator().manual_seed(2)) < 0.5
    moved = fsq_neighbour(codes, digit, up)
    for a, b, d in zip(codes.tolist(), moved.tolist(), digit.tolist(), strict=True):
        assert 0 <= b < SPEECH_CODES
        changed = [i for i, (x, y) in enumerate(zip(digits(a), digits(b), strict=True)) if x != y]
        assert changed == [d] and abs(digits(a)[d] - digits(b)[d]) == 1


def test_only_real_codes_change_at_the_rate_asked():
    ids = torch.randint(0, SPEECH_CODES, (4, 5000), generator=torch.Generator().manual_seed(0))
    ids[:, :10] = SPEECH_BOS
    ids[:, -10:] = SPEECH_PAD
    noisy = NeighbourNoise(0.3, seed=0)(ids)
    assert torch.equal(noisy[:, :10], ids[:, :10]) and torch.equal(noisy[:, -10:], ids[:, -10:])
    assert abs((noisy != ids).float().mean().item() - 0.3) < 0.02
    assert torch.equal(NeighbourNoise(0.0)(ids), ids)
    with pytest.raises(ValueError, match=r"prev_code_noise must lie in \[0, 1\]"):
        NeighbourNoise(1.5)


def test_the_module_applies_it_in_training_only():
    from funaudiochat.training.llm.module import SpeechLLMModule

    module = SpeechLLMModule(model={"config": {"preset": "tiny"}}, prev_code_noise=0.25)
    assert isinstance(module.model.prev_code_transform, NeighbourNoise)
    assert SpeechLLMModule(model={"config": {"preset": "tiny"}}).model.prev_code_transform is None
