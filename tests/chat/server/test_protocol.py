"""The official protocol's frame parser: any bytes give a message or a ``ProtocolError`` (never another
exception), and every frame the encoders make parses back to what was encoded."""

from funaudiochat.chat.server.protocol import (
    PING,
    Control,
    Kind,
    ProtocolError,
    encode_audio,
    encode_control,
    encode_error,
    encode_metadata,
    encode_text,
    parse,
)
from hypothesis import given
from hypothesis import strategies as st


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_are_refused_with_a_reason(frame):
    try:
        message = parse(frame)
    except ProtocolError as err:
        assert str(err)
    else:
        assert message.kind == Kind(frame[0])


@given(st.text(max_size=40), st.binary(min_size=1, max_size=40), st.sampled_from(list(Control)))
def test_encoded_frames_parse_back(text, pages, control):
    assert parse(encode_text(text)).value == text
    assert parse(encode_error(text)).value == text
    assert parse(encode_audio(pages)).value == pages
    assert parse(encode_control(control)).value is control
    assert parse(encode_metadata({"system_prompt": text})).value == {"system_prompt": text}
    assert parse(PING).kind == Kind.PING


@given(st.integers(min_value=1, max_value=300))
def test_frames_over_the_limit_are_refused(extra):
    frame = encode_audio(bytes(100 + extra))
    try:
        parse(frame, max_bytes=100)
    except ProtocolError as err:
        assert "over the limit of 100 bytes" in str(err)
    else:
        raise AssertionError("an oversized frame was accepted")
