"""``training.threads``: a fit takes the thread count its scheduler writes while it runs."""

import pytest
import torch
from funaudiochat.training.threads import ThreadsFromFile, read_threads, threads_callback, write_threads


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_callback_sets_the_count_the_file_holds(tmp_path, torch_threads):
    path = tmp_path / "fit.threads"
    write_threads(path, 3)
    callback = ThreadsFromFile(path, every=0)
    callback.on_train_batch_start(None, None, None, 0)
    assert torch.get_num_threads() == 3
    write_threads(path, 1)
    callback.on_train_batch_start(None, None, None, 1)
    assert torch.get_num_threads() == 1


def test_the_file_is_read_at_most_every_few_seconds(tmp_path, torch_threads):
    path = tmp_path / "fit.threads"
    torch.set_num_threads(1)
    write_threads(path, 1)
    callback = ThreadsFromFile(path, every=3600)
    callback.on_train_batch_start(None, None, None, 0)
    write_threads(path, 2)
    callback.on_train_batch_start(None, None, None, 1)
    assert torch.get_num_threads() == 1, "read again before its time"


def test_a_missing_or_odd_file_changes_nothing(tmp_path, torch_threads):
    torch.set_num_threads(1)
    path = tmp_path / "fit.threads"
    ThreadsFromFile(path, every=0).apply()
    for text in ("", "0", "two", "-3"):
        path.write_text(text)
        assert read_threads(path) is None
        ThreadsFromFile(path, every=0).apply()
        assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        write_threads(path, 0)
    with pytest.raises(ValueError, match="every must be >= 0 seconds"):
        ThreadsFromFile(path, every=-1)


def test_fits_get_the_callback_only_under_a_scheduler(tmp_path, monkeypatch):
    from funaudiochat.training.cli import trainer_objects

    monkeypatch.delenv("FUNAUDIOCHAT_THREADS_FILE", raising=False)
    assert threads_callback() is None
    assert "callbacks" not in trainer_objects({"max_steps": 1})
    monkeypatch.setenv("FUNAUDIOCHAT_THREADS_FILE", str(tmp_path / "fit.threads"))
    made = trainer_objects({"max_steps": 1, "callbacks": ["lr_monitor"]})["callbacks"]
    assert [type(c).__name__ for c in made] == ["LearningRateMonitor", "ThreadsFromFile"]
    assert made[1].path == tmp_path / "fit.threads"
