"""Pre-alignment's listening rows: every spoken question once, answered in text (and transcribed)."""

import numpy as np
import pytest
from funaudiochat.drsr.prompts import DEFAULT_S2M_PROMPT, DEFAULT_S2T_PROMPT
from funaudiochat.training.data import read_sharegpt, write_sharegpt
from funaudiochat.training.data.records import AUDIO_TEMPLATE, AssistantSpeech, Conversation, Turn, UserAudio
from funaudiochat.training.demo.model_stages import write_listening_rows


def _asked(path, reply, system, spoken=False):
    audios = [UserAudio(path, 25)]
    if spoken:
        audios.append(AssistantSpeech(reply, np.arange(20, dtype=np.int16)))
    content = AUDIO_TEMPLATE if spoken else reply
    return Conversation([Turn("user", AUDIO_TEMPLATE), Turn("assistant", content)], audios, system)


def test_text_and_spoken_replies_give_one_text_answered_row_per_question_audio(tmp_path):
    transcribe = Conversation(
        [Turn("user", "Please help me transcribe the audio." + AUDIO_TEMPLATE), Turn("assistant", "Hi.")],
        [UserAudio("/a/q3.wav", 25)],
        DEFAULT_S2T_PROMPT,
    )
    rows = [
        _asked("/a/q1.wav", "Two.", DEFAULT_S2T_PROMPT),
        _asked("/a/q1.wav", "Two.", DEFAULT_S2M_PROMPT, spoken=True),  # the same audio: taken once
        _asked("/b/q1.wav", "Two.", DEFAULT_S2M_PROMPT, spoken=True),  # another rendering
        _asked("/a/q2.wav", "Yes.", DEFAULT_S2T_PROMPT + "\n# Tools", spoken=False),  # tool prompt
        transcribe,
    ]
    write_sharegpt(tmp_path / "train.jsonl", rows)
    assert write_listening_rows(tmp_path / "train.jsonl", tmp_path / "rows.jsonl") == 2
    listening = read_sharegpt(tmp_path / "rows.jsonl", check_audio=False)
    assert [(c.user_audios[0].path, c.turns[1].content) for c in listening] == [
        ("/a/q1.wav", "Two."),
        ("/b/q1.wav", "Two."),
    ]
    assert all(c.system == DEFAULT_S2T_PROMPT and not c.assistant_speech for c in listening)
    write_sharegpt(tmp_path / "asr.jsonl", [transcribe])
    with pytest.raises(ValueError, match="no spoken question is answered in text"):
        write_listening_rows(tmp_path / "asr.jsonl", tmp_path / "none.jsonl")


def test_a_word_aligned_spoken_reply_is_answered_in_plain_text(tmp_path):
    """The ``<|sil|>`` of the word-aligned layout (``reply_alignment="words"``) are for the speech slots only:
    the listening rows teach the frozen text LLM's answer, which it writes whole."""
    from funaudiochat.training.demo.reply_alignment import SIL

    aligned = f"{SIL}Seven{SIL} plus three{SIL}{SIL} is ten."
    write_sharegpt(tmp_path / "train.jsonl", [_asked("/a/q.wav", aligned, DEFAULT_S2M_PROMPT, spoken=True)])
    assert write_listening_rows(tmp_path / "train.jsonl", tmp_path / "rows.jsonl") == 1
    (row,) = read_sharegpt(tmp_path / "rows.jsonl", check_audio=False)
    assert row.turns[1].content == "Seven plus three is ten."


def test_transcripts_add_the_transcription_rows_and_the_sentences_each_audio_once(tmp_path):
    """``transcripts=True``: the conversations' transcription rows join, and each given sentence becomes a
    transcription row of its audio (frames from the wav's length), so the listening path also learns to
    deliver what was said, whatever the phrasing."""
    import soundfile
    from funaudiochat.drsr.prompts import ASR_INSTRUCTION

    def transcribe(path, words):
        turns = [Turn("user", AUDIO_TEMPLATE + ASR_INSTRUCTION), Turn("assistant", words)]
        return Conversation(turns, [UserAudio(path, 25)], DEFAULT_S2T_PROMPT)

    rows = [
        _asked("/a/q1.wav", "Two.", DEFAULT_S2T_PROMPT),
        transcribe("/a/q1.wav", "What is one plus one?"),  # the same audio, another kind of row: kept
        transcribe("/a/q1.wav", "What is one plus one?"),  # the same row again: taken once
        transcribe("/a/s.wav", "I like red."),
    ]
    write_sharegpt(tmp_path / "train.jsonl", rows)
    wav = tmp_path / "spliced_0.wav"
    soundfile.write(wav, np.zeros(22050), 22050)  # one second: 25 frames
    sentences = [{"audio": str(wav), "text": "Red plus one."}]
    assert write_listening_rows(tmp_path / "train.jsonl", tmp_path / "plain.jsonl") == 1
    count = write_listening_rows(tmp_path / "train.jsonl", tmp_path / "rows.jsonl", True, sentences)
    assert count == 4
    listening = read_sharegpt(tmp_path / "rows.jsonl", check_audio=False)
    assert [(c.turns[0].content, c.turns[1].content) for c in listening] == [
        (AUDIO_TEMPLATE, "Two."),
        (AUDIO_TEMPLATE + ASR_INSTRUCTION, "What is one plus one?"),
        (AUDIO_TEMPLATE + ASR_INSTRUCTION, "I like red."),
        (AUDIO_TEMPLATE + ASR_INSTRUCTION, "Red plus one."),
    ]
    assert listening[-1].user_audios[0].num_frames == 25
    assert all(c.system == DEFAULT_S2T_PROMPT and not c.assistant_speech for c in listening)


def test_questions_in_more_voices_are_answered_in_text_but_tool_requests_are_left_out(tmp_path):
    """``questions`` (``voice_questions``: the training questions in more voices) join as S2T rows answered
    with the corpus answer; tool requests and transcriptions stay out as in the conversations' rows."""
    import soundfile

    write_sharegpt(tmp_path / "train.jsonl", [_asked("/a/q1.wav", "Two.", DEFAULT_S2T_PROMPT)])
    wav = tmp_path / "voice_0.wav"
    soundfile.write(wav, np.zeros(16000 * 2), 16000)  # two seconds: 50 frames
    questions = [
        {"audio": str(wav), "text": "What is one plus one?", "answer": "Two.", "task": "arithmetic"},
        {"audio": str(wav), "text": "Set a timer.", "answer": "Okay.", "task": "tool"},
        {"audio": str(wav), "text": "Write this down.", "answer": "Write this down.", "task": "asr"},
    ]
    count = write_listening_rows(tmp_path / "train.jsonl", tmp_path / "rows.jsonl", questions=questions)
    assert count == 2
    _, voiced = read_sharegpt(tmp_path / "rows.jsonl", check_audio=False)
    assert (voiced.turns[0].content, voiced.turns[1].content) == (AUDIO_TEMPLATE, "Two.")
    assert voiced.system == DEFAULT_S2T_PROMPT and voiced.user_audios[0].num_frames == 50
    assert voiced.user_audios[0].ref_text == "What is one plus one?"
