"""The demo evaluation's scoring: word error rate over lower-case words, accuracy per task and split."""

from funaudiochat.chat.demo_eval import HeldOutItem, _score, word_error_rate


def test_word_error_rate_counts_edits_over_reference_words():
    assert word_error_rate(["She wore a black hat."], ["she wore a black hat"]) == 0.0
    # one substitution and one deletion over 5 + 2 reference words
    assert word_error_rate(["she wore a red hat", "hello"], ["She wore a black hat.", "Hello there"]) == 2 / 7


def test_scores_are_split_by_task_and_split():
    def item(task, split):
        return HeldOutItem("x", task, split, "q.wav", "q", "a", ("a",))

    items = [
        item("arithmetic", "heldout_phrasing"),
        item("arithmetic", "heldout_content"),
        item("fact", "heldout_phrasing"),
    ]
    score = _score(items, [True, False, True])
    assert score["accuracy"] == 2 / 3 and score["n"] == 3
    assert score["per_task"] == {"arithmetic": 0.5, "fact": 1.0}
    assert score["per_split"] == {"heldout_content": 0.0, "heldout_phrasing": 1.0}
