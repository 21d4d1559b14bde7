"""Transcripts -> CTC targets: the character rules, IPA splitting, espeak-ng phonemes, vocabularies."""

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from funaudiochat.training.tokenizer import (
    BLANK,
    CHARACTERS,
    TranscriptTargets,
    Vocabulary,
    char_units,
    ctc_min_frames,
    edit_distance,
    greedy_decode,
    normalize_text,
    phoneme_units,
    split_ipa,
)
from hypothesis import given, settings
from hypothesis import strategies as st

needs_espeak = pytest.mark.usefixtures("espeak_installed")  # fails without espeak-ng (conftest.py)
ESPEAK_TESTS = [
    "tests/training/tokenizer/test_ctc_targets.py::test_espeak_phonemes",
    "tests/training/tokenizer/test_ctc_targets.py::test_phoneme_targets_vocabulary_from_data",
    "tests/training/tokenizer/test_data.py::test_phoneme_datamodule",
]


def test_character_vocabulary_layout():
    vocab = Vocabulary.characters()
    assert BLANK == 0 and len(vocab) == 39 and vocab.symbols == CHARACTERS
    assert vocab.encode([" ", "'", "a", "z", "0", "9"]) == [1, 2, 3, 28, 29, 38]
    assert vocab.decode([0, 3, 0, 4, 99]) == ["a", "b"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("What is two plus three?", "what is two plus three"),
        ("The capital of France is Paris, a city.", "the capital of france is paris a city"),
        ("  Well-known\tfacts\n", "well known facts"),
        ("It\u2019s CAF\u00c9 na\u00efve", "it's cafe naive"),
        ("\ufb01ve (5) \u201cquotes\u201d", "five 5 quotes"),
        ("?!...", ""),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected
    assert char_units(text) == list(expected)


def test_unknown_characters():
    with pytest.raises(ValueError, match=r"'\$' \(U\+0024\).*unknown='drop'"):
        normalize_text("it costs 5 $")
    with pytest.raises(ValueError, match="U\\+4F60"):
        normalize_text("\u4f60\u597d")
    assert normalize_text("it costs 5 $ now", unknown="drop") == "it costs 5 now"
    with pytest.raises(ValueError, match="unknown must be one of"):
        normalize_text("a", unknown="ignore")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_normalized_text_is_in_the_vocabulary(text):
    clean = normalize_text(text, unknown="drop")
    assert set(clean) <= set(CHARACTERS)
    assert clean == clean.strip() and "  " not in clean
    assert normalize_text(clean) == clean


def test_split_ipa_rules():
    assert split_ipa("wˌʌt ɪz tˈuː") == ["w", "ʌ", "t", " ", "ɪ", "z", " ", "t", "uː"]
    assert split_ipa("wˌʌt", keep_stress=True) == ["w", "ˌ", "ʌ", "t"]
    # language tags and espeak-ng's markers dropped, nasal diacritic kept, clause breaks become spaces
    assert split_ipa("(en)bɔ̃ʒˈuʁ lə-\nmˈɔ̃d(fr)") == [
        "b",
        "ɔ̃",
        "ʒ",
        "u",
        "ʁ",
        " ",
        "l",
        "ə",
        " ",
        "m",
        "ɔ̃",
        "d",
    ]
    assert split_ipa("t͡ʃæ tʰɪn") == ["t͡ʃ", "æ", " ", "tʰ", "ɪ", "n"]
    assert split_ipa("ni5 hao3") == ["n", "i", "5", " ", "h", "a", "o", "3"]
    assert split_ipa("  \n ") == []


@needs_espeak
def test_espeak_phonemes():
    units = phoneme_units("What is two plus three?")
    assert units == [
        "w",
        "ʌ",
        "t",
        " ",
        "ɪ",
        "z",
        " ",
        "t",
        "uː",
        " ",
        "p",
        "l",
        "ʌ",
        "s",
        " ",
        "θ",
        "ɹ",
        "iː",
    ]
    # a transcript that looks like an option is text, not a flag (it goes to espeak-ng on stdin)
    assert phoneme_units("-v hi")[-2:] == ["a", "ɪ"]
    with pytest.raises(ValueError, match="espeak-ng -v xx-nope failed"):
        phoneme_units("hello", voice="xx-nope")


@needs_espeak
def test_phoneme_targets_vocabulary_from_data():
    targets = TranscriptTargets("phonemes")
    with pytest.raises(ValueError, match="call fit"):
        targets("hello")
    vocab = targets.fit(["two plus three", "three plus two"])
    assert vocab.symbols[0] == " " and list(vocab.symbols[1:]) == sorted(vocab.symbols[1:])
    assert "θ" in vocab and "uː" in vocab
    ids = targets("two plus three")
    assert vocab.decode(ids) == phoneme_units("two plus three")
    with pytest.raises(ValueError, match="not in the CTC vocabulary"):
        targets("fish", source="utt9.wav")
    dropped = TranscriptTargets("phonemes", unknown="drop", vocabulary=vocab.symbols)
    assert vocab.decode(dropped("plus fish")) == [u for u in phoneme_units("plus fish") if u in vocab]
    with pytest.raises(ValueError, match="has no units left"):
        dropped("fish")


def test_char_targets():
    targets = TranscriptTargets()
    ids = targets("Two plus three.")
    assert Vocabulary.characters().decode(ids) == list("two plus three")
    with pytest.raises(ValueError, match=r"utt3\.wav: transcript '\.\.\.' has no units left \(units='chars'"):
        targets("...", source="utt3.wav")
    with pytest.raises(ValueError, match="units must be one of"):
        TranscriptTargets("words")


def test_vocabulary_errors():
    with pytest.raises(ValueError, match="repeat"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="non-empty strings"):
        Vocabulary(["a", "<blank>"])
    with pytest.raises(ValueError, match="at least one symbol"):
        Vocabulary([])
    with pytest.raises(ValueError, match="no units"):
        Vocabulary.from_units([[], []])
    assert Vocabulary.from_units([["b", " ", "a"]]).symbols == (" ", "a", "b")


def test_ctc_helpers():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8
    assert ctc_min_frames([]) == 0
    assert greedy_decode([0, 3, 3, 0, 3, 4, 4, 0, 0]) == [3, 3, 4]
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2], [1, 2]) == 0


def test_espeak_tests_fail_without_espeak(tmp_path):
    """Where espeak-ng is missing (a broken setup: tools/setup.sh installs it), the tests that need it fail
    with a message saying so; they are never skipped."""
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH without espeak-ng
    junit = tmp_path / "report.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        *ESPEAK_TESTS,
    ]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 1, report
    # The JUnit report, not the terminal text (whose summary lines depend on the terminal's width), says how
    # each test ended: every one errors in its fixture with the message, none passes or is skipped.
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    outcomes = {}
    for case in cases:
        ended = [child for child in case if child.tag in ("error", "failure", "skipped")]
        name = f"{case.get('classname')}.{case.get('name')}"
        outcomes[name] = [
            (child.tag, "espeak-ng is not installed" in (child.get("message") or "")) for child in ended
        ]
    assert len(outcomes) == len(ESPEAK_TESTS), report
    assert all(ended == [("error", True)] for ended in outcomes.values()), (outcomes, report)
