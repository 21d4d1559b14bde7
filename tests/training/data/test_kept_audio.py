import torch
from funaudiochat.training.data.kept_audio import KeptAudio


def _counting_reader():
    reads: list[int] = []

    def read(index: int) -> torch.Tensor:
        reads.append(index)
        return torch.full((3,), float(index))

    return read, reads


def test_kept_audio_reads_each_index_once():
    read, reads = _counting_reader()
    audio = KeptAudio(read, keep=True)
    first = audio(2)
    assert audio(2) is first and torch.equal(first, torch.full((3,), 2.0))
    audio(5)
    assert reads == [2, 5] and len(audio) == 2


def test_kept_audio_off_reads_every_time():
    read, reads = _counting_reader()
    audio = KeptAudio(read, keep=False)
    audio(1)
    audio(1)
    assert reads == [1, 1] and len(audio) == 0
