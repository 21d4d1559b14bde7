"""``GrowingLayer`` holds what transformers' ``DynamicLayer`` holds, through appends, growth, crops and row
selection; ``KVCache`` keeps its kind through batch operations."""

import torch
from funaudiochat.drsr.configuration import FunAudioChatConfig
from funaudiochat.drsr.kv_cache import MIN_ROOM, GrowingLayer, KVCache, growing_cache
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def pair(seed: int, b: int = 2, length: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, length, 8, generator=g), torch.randn(b, 2, length, 8, generator=g)


def same(growing: GrowingLayer, dynamic: DynamicLayer) -> None:
    assert growing.get_seq_length() == dynamic.get_seq_length()
    assert torch.equal(growing.keys, dynamic.keys) and torch.equal(growing.values, dynamic.values)


def test_appends_and_growth_keep_the_contents_and_earlier_views():
    growing, dynamic = GrowingLayer(), DynamicLayer()
    views = []
    for step, length in enumerate([5] + [1] * (2 * MIN_ROOM) + [70]):
        k, v = pair(step, length=length)
        got = growing.update(k, v)
        want = dynamic.update(k, v)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        views.append((got[0], want[0].clone()))
    same(growing, dynamic)
    assert growing._rooms[0].shape[2] >= growing.get_seq_length()
    # a view returned earlier still holds what it held (later positions were written past its end)
    assert all(torch.equal(view, kept) for view, kept in views)


def test_crop_and_row_selection_are_taken_over():
    growing, dynamic = GrowingLayer(), DynamicLayer()
    for layer in (growing, dynamic):
        layer.update(*pair(0, b=3, length=6))
        layer.crop(-2)
    same(growing, dynamic)
    for layer in (growing, dynamic):
        layer.update(*pair(1, b=3))
    same(growing, dynamic)
    index = torch.tensor([2, 0])
    for layer in (growing, dynamic):
        layer.batch_select_indices(index)
        layer.update(*pair(2, b=2))
    same(growing, dynamic)
    growing.reset()
    assert growing.get_seq_length() == 0
    growing.update(*pair(3))
    assert growing.get_seq_length() == 1


def test_reserve_then_commit_is_an_append():
    growing, dynamic = GrowingLayer(), DynamicLayer()
    for layer in (growing, dynamic):
        layer.update(*pair(0, length=MIN_ROOM))
    k, v = pair(1)
    keys, values = growing.reserve(MIN_ROOM + 1)
    assert keys.shape[2] > MIN_ROOM
    keys[:, :, MIN_ROOM : MIN_ROOM + 1].copy_(k)
    values[:, :, MIN_ROOM : MIN_ROOM + 1].copy_(v)
    growing.commit(MIN_ROOM + 1)
    dynamic.update(k, v)
    same(growing, dynamic)


def test_kv_cache_keeps_its_kind():
    config = FunAudioChatConfig.tiny().text_config
    for growing in (True, False):
        cache = KVCache.empty(config, 2, growing=growing)
        kind = GrowingLayer if growing else DynamicLayer
        assert all(type(layer) is kind for layer in cache.cache.layers)
        for index in range(len(cache.cache.layers)):
            cache.cache.update(*pair(index), index)
        for other in (cache.select([1]), KVCache.cat([cache, cache.select([0])]), cache.select([])):
            assert other.growing is growing
            assert all(type(layer) is kind for layer in other.cache.layers)
    assert isinstance(growing_cache(config), DynamicCache)
