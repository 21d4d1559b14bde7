"""funaudiochat.training.demo.practice and the text LLM's knowledge pairs: practice phrasings fill with
their family's contents and keep the answer's key, never hold a held-out phrasing, and only add pairs."""

from __future__ import annotations

import json

import pytest
from funaudiochat.training.demo import all_families, build_corpus, contains_key, held_out
from funaudiochat.training.demo.corpus import knowledge_pairs
from funaudiochat.training.demo.practice import EXTRA, WRAPS, practice_templates
from funaudiochat.training.demo.text_stages import QA_TASKS

FAMILIES = {family.name: family for family in all_families()}


def test_every_extra_family_is_a_question_answering_family():
    assert set(EXTRA) <= set(FAMILIES)
    assert {FAMILIES[name].task for name in EXTRA} == {"compare", "fact", "instruction"}


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_practice_templates_fill_with_every_content_and_keep_its_key(name):
    family = FAMILIES[name]
    extras, wrapped = practice_templates(family, frozenset())
    assert len(extras) == len(EXTRA[name])
    assert len(wrapped) == len(WRAPS) * (len(family.templates) + len(extras))
    for template in [*extras, *wrapped]:
        for content in family.contents:
            question, answer = template.fill(content)
            assert "{" not in question and "{" not in answer
            assert contains_key(answer, content.key or answer.lower().split()), (template.name, content.id)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_practice_question_is_a_held_out_question(seed):
    for name in EXTRA:
        family = FAMILIES[name]
        phrasings_out, _ = held_out(family, seed)
        held = {t.question.lower() for t in family.templates if family.phrasing_id(t) in phrasings_out}
        extras, wrapped = practice_templates(family, phrasings_out)
        for template in [*extras, *wrapped]:
            assert not any(h in template.question.lower() for h in held if len(h.split()) >= 3)
            assert template.question.lower() not in held


def test_a_practice_question_holding_a_held_out_one_is_left_out():
    family = FAMILIES["day_before"]
    held = next(t for t in family.templates if t.name == "comes_before")
    extras, wrapped = practice_templates(family, frozenset({family.phrasing_id(held)}))
    # "do you know what day comes before {day}?" holds the held-out "what day comes before {day}?"
    assert "do_you_know" not in {t.name for t in extras}
    assert all("what day comes before" not in t.question for t in wrapped)


def test_a_wrap_that_ends_a_sentence_starts_the_question_with_a_capital():
    family = FAMILIES["colour"]
    _, wrapped = practice_templates(family, frozenset())
    question, _ = next(t for t in wrapped if t.question.startswith("I have a question.")).fill(
        family.contents[0]
    )
    assert question.startswith("I have a question. What colour")


def test_knowledge_pairs_with_practice_add_pairs_and_change_none():
    plain = knowledge_pairs(0, QA_TASKS, per_content=3)
    practised = knowledge_pairs(0, QA_TASKS, per_content=3, practice=2)
    keys = {json.dumps(record, sort_keys=True) for record in practised}
    assert all(json.dumps(record, sort_keys=True) in keys for record in plain)
    practice_items = sum(len(FAMILIES[name].contents) for name in EXTRA)
    assert len(practised) - len(plain) == 4 * practice_items  # two extras and two wrapped each


@pytest.mark.parametrize("practice", [0, 2])
def test_knowledge_pairs_never_ask_a_held_out_phrasing(practice):
    held = {p.question for p in build_corpus(0) if p.split == "heldout_phrasing"}
    records = knowledge_pairs(0, QA_TASKS, per_content=3, practice=practice)
    assert not held & {record["question"] for record in records}
