"""``check_own_rank_split``: several ranks with Lightning's distributed sampler on are refused (our samplers
split the data themselves; both on would train each rank on a fraction of its share)."""

from types import SimpleNamespace

import pytest
from funaudiochat.training.data.ranks import check_own_rank_split
from funaudiochat.training.errors import UserInputError


def trainer(world_size: int, use_distributed_sampler: bool) -> SimpleNamespace:
    connector = SimpleNamespace(use_distributed_sampler=use_distributed_sampler)
    return SimpleNamespace(world_size=world_size, _accelerator_connector=connector)


def test_several_ranks_need_the_distributed_sampler_off():
    with pytest.raises(UserInputError, match="trainer.use_distributed_sampler must be false on 2 ranks"):
        check_own_rank_split(trainer(2, True))
    check_own_rank_split(trainer(2, False))
    check_own_rank_split(trainer(1, True))
    check_own_rank_split(None)


def test_lightning_still_keeps_the_flag_where_the_check_reads_it():
    import lightning as L

    live = L.Trainer(accelerator="cpu", devices=1, use_distributed_sampler=False, logger=False)
    assert live._accelerator_connector.use_distributed_sampler is False
