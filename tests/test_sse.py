"""Tests for the incremental SSE parser and encoder (mcp_plugin_mw.mapping.sse)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_plugin_mw.mapping.sse import (
    DEFAULT_MAX_EVENT_BYTES,
    SSEEvent,
    SSEEventTooLarge,
    SSEParser,
    encode_event,
    reencode,
)

BOM = b"\xef\xbb\xbf"
LINE_END = re.compile(rb"\r\n|\r|\n")


def parse_chunks(chunks: list[bytes], **kwargs: int) -> list[SSEEvent]:
    parser = SSEParser(**kwargs)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.flush()


def parse(stream: bytes) -> list[SSEEvent]:
    return parse_chunks([stream])


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def fields(e: SSEEvent) -> tuple[object, ...]:
    return (e.event, e.data, e.id, e.retry, e.has_data, e.is_comment_only, e.complete)


# --------------------------------------------------------------------------
# A deliberately naive reference: the WHATWG algorithm applied line by line
# to the whole stream at once, used as the oracle for the property tests.


@dataclass
class RefBlock:
    raw: bytes
    event: str | None
    data: str
    id: str | None
    retry: int | None
    has_data: bool
    is_comment_only: bool


def reference(stream: bytes) -> tuple[list[RefBlock], bytes]:
    """Blocks of a complete stream, and the unterminated rest."""
    pos = 3 if stream.startswith(BOM) else 0
    block_start = 0
    lines: list[str] = []
    blocks: list[RefBlock] = []
    for m in LINE_END.finditer(stream, pos):
        start, end, pos = pos, m.start(), m.end()
        if start != end:
            lines.append(stream[start:end].decode("utf-8", "replace"))
            continue
        event = ident = None
        retry = None
        data_buf = ""
        has_data = False
        for line in lines:
            if line.startswith(":"):
                continue
            name, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if name == "data":
                data_buf += value + "\n"
                has_data = True
            elif name == "event":
                event = value
            elif name == "id":
                if "\0" not in value:
                    ident = value
            elif name == "retry" and value and all(c in "0123456789" for c in value):
                retry = int(value)
        blocks.append(
            RefBlock(
                raw=stream[block_start:pos],
                event=event,
                data=data_buf[:-1] if data_buf else "",
                id=ident,
                retry=retry,
                has_data=has_data,
                is_comment_only=bool(lines) and all(x.startswith(":") for x in lines),
            )
        )
        block_start = pos
        lines = []
    return blocks, stream[block_start:]


# --------------------------------------------------------------------------
# Examples


def test_mcp_event_shape() -> None:
    payload = {"jsonrpc": "2.0", "id": 0, "result": {"content": [{"type": "text", "text": "hi"}]}}
    raw = b"event: message\r\ndata: " + json.dumps(payload).encode() + b"\r\n\r\n"
    [event] = SSEParser().feed(raw)
    assert event.raw is raw  # one whole event per chunk: no copy at all
    assert event.event == "message"
    assert json.loads(event.data) == payload
    assert event.has_data
    assert event.complete
    assert not event.is_comment_only
    assert event.id is None
    assert event.retry is None


def test_mcp_stream_progress_then_result_with_pings() -> None:
    progress = b'event: message\r\ndata: {"method":"notifications/progress"}\r\n\r\n'
    ping = b": ping\r\n\r\n"
    result = b'event: message\r\ndata: {"id":1,"result":{}}\r\n\r\n'
    stream = progress + ping + result
    events = parse(stream)
    assert [e.raw for e in events] == [progress, ping, result]
    assert [e.is_comment_only for e in events] == [False, True, False]
    assert not events[1].has_data
    assert parse_chunks(bytewise(stream)) == events


def test_events_returned_as_soon_as_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.pending_bytes == 8
    [event] = parser.feed(b"\ndata: b")
    assert event.raw == b"data: a\n\n"
    assert parser.pending_bytes == 7
    assert parser.feed(b"\n") == []
    [event] = parser.feed(b"\n")
    assert event.data == "b"
    assert parser.flush() == []


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"])
def test_line_ends(eol: bytes) -> None:
    stream = b"event: e" + eol + b"data: 1" + eol + b"data: 2" + eol + eol + b"data: 3" + eol + eol
    events = parse(stream)
    assert [(e.event, e.data) for e in events] == [("e", "1\n2"), (None, "3")]
    assert b"".join(e.raw for e in events) == stream
    assert parse_chunks(bytewise(stream)) == events


def test_mixed_line_ends() -> None:
    stream = b"data: a\r\ndata: b\ndata: c\r\r\ndata: d\n\r\n: x\r\r"
    events = parse(stream)
    assert [e.raw for e in events] == [b"data: a\r\ndata: b\ndata: c\r\r\n", b"data: d\n\r\n", b": x\r\r"]
    assert events[0].data == "a\nb\nc"
    assert events[2].is_comment_only


def test_cr_at_chunk_end_followed_by_lf_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # "\r\n" is one line end, not two
    assert parser.feed(b"\r") == []  # blank line, but it may still be "\r\n"
    [event] = parser.feed(b"\ndata: b\r")
    assert event.raw == b"data: a\r\n\r\n"
    assert event.data == "a"
    # Here the CR was a line end of its own: the next byte says so.
    assert parser.feed(b"\r") == []
    [event] = parser.feed(b"x")
    assert event.raw == b"data: b\r\r"
    [rest] = parser.flush()
    assert rest.raw == b"x"
    assert not rest.complete


def test_trailing_cr_resolved_by_flush() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r\r") == []
    [event] = parser.flush()
    assert event.complete
    assert event.data == "a"
    assert event.raw == b"data: a\r\r"


def test_comments() -> None:
    [ping, colon, mixed] = parse(b": ping\n\n:\n\n: note\ndata: x\n\n")
    assert ping.is_comment_only
    assert not ping.has_data
    assert ping.data == ""
    assert colon.is_comment_only
    assert not mixed.is_comment_only
    assert mixed.data == "x"


def test_blank_lines_between_events_are_empty_blocks() -> None:
    stream = b"\r\n\ndata: a\n\n\n"
    events = parse(stream)
    assert [e.raw for e in events] == [b"\r\n", b"\n", b"data: a\n\n", b"\n"]
    assert [e.has_data for e in events] == [False, False, True, False]
    assert not any(e.is_comment_only for e in events)


def test_id_and_retry() -> None:
    [event] = parse(b"id: 42\nretry: 1500\ndata: x\n\n")
    assert event.id == "42"
    assert event.retry == 1500
    [event] = parse(b"id\nretry: 15x\nretry: -1\nretry:\nretry: 1.5\nretry: \xd9\xa3\ndata: x\n\n")
    assert event.id == ""
    assert event.retry is None
    [event] = parse(b"retry: 7\nretry: nope\nid: a\nid: b\x00c\ndata\n\n")
    assert event.retry == 7
    assert event.id == "a"
    assert event.has_data
    assert event.data == ""


def test_event_names_and_value_spaces() -> None:
    [event] = parse(b"event:update\ndata:  two spaces\ndata:\tx\n\n")
    assert event.event == "update"
    assert event.data == " two spaces\n\tx"  # only one leading space is stripped
    [event] = parse(b"event: first\nevent: second\ndata: x\n\n")
    assert event.event == "second"
    [event] = parse(b"event:\ndata: x\n\n")
    assert event.event == ""


def test_field_without_colon_and_unknown_fields() -> None:
    [event] = parse(b"data\ndata\n\n")
    assert event.has_data
    assert event.data == "\n"
    [event] = parse(b"event\nfoo: bar\nDATA: no\ndata : no\n\n")
    assert event.event == ""
    assert not event.has_data
    assert not event.is_comment_only


def test_data_with_colons_and_unicode() -> None:
    [event] = parse('data: {"k": "é ✓ 😀", "u": "a:b"}\n\n'.encode())
    assert json.loads(event.data) == {"k": "é ✓ 😀", "u": "a:b"}


def test_invalid_utf8_is_replaced() -> None:
    [event] = parse(b"data: a\xffb\n\n")
    assert event.data == "a\ufffdb"


def test_bom_at_stream_start() -> None:
    stream = BOM + b"data: a\r\n\r\n" + BOM + b"data: b\r\n\r\n"
    events = parse(stream)
    assert b"".join(e.raw for e in events) == stream
    assert events[0].raw == BOM + b"data: a\r\n\r\n"
    assert events[0].data == "a"
    # Only the first BOM of a stream is special: later it is part of a name.
    assert not events[1].has_data
    assert parse_chunks(bytewise(stream)) == events


def test_bom_before_comment_and_blank_line() -> None:
    [event] = parse(BOM + b": hi\n\n")
    assert event.is_comment_only
    [event, rest] = parse(BOM + b"\ndata: x")
    assert event.raw == BOM + b"\n"
    assert not event.has_data
    assert rest.raw == b"data: x"
    assert not rest.complete


def test_partial_bom_then_flush() -> None:
    parser = SSEParser()
    assert parser.feed(b"\xef\xbb") == []
    [rest] = parser.flush()
    assert rest.raw == b"\xef\xbb"
    assert not rest.complete


def test_flush_returns_trailing_partial_raw() -> None:
    parser = SSEParser()
    [first] = parser.feed(b"data: 1\n\nevent: x\ndata: 2\n")
    assert first.data == "1"
    [rest] = parser.flush()
    assert rest.raw == b"event: x\ndata: 2\n"
    assert not rest.complete
    assert not rest.has_data
    assert rest.event is None
    assert parser.flush() == []


def test_parser_reusable_after_flush() -> None:
    parser = SSEParser()
    parser.feed(b"data: 1\n")
    parser.flush()
    [event] = parser.feed(BOM + b"data: 2\n\n")
    assert event.data == "2"  # a new stream: its BOM is recognised again


def test_empty_feed() -> None:
    parser = SSEParser()
    assert parser.feed(b"") == []
    assert parser.flush() == []


def test_too_large_pending_block() -> None:
    parser = SSEParser(max_event_bytes=32)
    parser.feed(b"data: " + b"x" * 20)
    with pytest.raises(SSEEventTooLarge) as info:
        parser.feed(b"x" * 20)
    assert isinstance(info.value, ValueError)
    assert info.value.limit == 32
    assert info.value.size > 32
    assert "32" in str(info.value)


def test_too_large_complete_block_in_one_chunk() -> None:
    with pytest.raises(SSEEventTooLarge):
        SSEParser(max_event_bytes=16).feed(b"data: " + b"x" * 16 + b"\n\n")


def test_limit_is_per_block() -> None:
    stream = b"data: 0123456789\n\n" * 10
    assert len(parse_chunks([stream], max_event_bytes=18)) == 10
    assert DEFAULT_MAX_EVENT_BYTES == 16 * 1024 * 1024
    with pytest.raises(ValueError, match="positive"):
        SSEParser(max_event_bytes=0)


def test_large_event_in_small_chunks() -> None:
    payload = json.dumps({"text": "lorem ipsum " * 20000}).encode()
    raw = b"event: message\r\ndata: " + payload + b"\r\n\r\n"
    chunks = [raw[i : i + 1000] for i in range(0, len(raw), 1000)]
    [event] = parse_chunks(chunks)
    assert event.raw == raw
    assert event.data.encode() == payload


def test_many_events_in_one_chunk() -> None:
    stream = b"".join(b"id: %d\r\ndata: %d\r\n\r\n" % (i, i) for i in range(1000))
    events = SSEParser().feed(stream)
    assert [e.id for e in events] == [str(i) for i in range(1000)]


def test_event_equality_and_repr() -> None:
    a = parse(b"data: x\n\n")[0]
    b = parse(b"data: x\n\n")[0]
    assert a == b
    assert a != parse(b"data: y\n\n")[0]
    assert a != "data: x"
    assert "data='x'" in repr(a)
    with pytest.raises(TypeError):
        hash(a)


# --------------------------------------------------------------------------
# Encoding


def test_encode_event_shapes() -> None:
    assert encode_event(data='{"a":1}', event="message") == b'event: message\r\ndata: {"a":1}\r\n\r\n'
    assert encode_event(data="a\nb", id="7", retry=100, line_end=b"\n") == (b"id: 7\ndata: a\ndata: b\nretry: 100\n\n")
    assert encode_event(data="") == b"data: \r\n\r\n"


def test_encode_event_rejects_injection() -> None:
    with pytest.raises(ValueError, match="line_end"):
        encode_event(data="x", line_end=b"\n\n")
    with pytest.raises(ValueError, match="event"):
        encode_event(data="x", event="a\nid: 1")
    with pytest.raises(ValueError, match="id"):
        encode_event(data="x", id="a\rb")
    with pytest.raises(ValueError, match="id"):
        encode_event(data="x", id="a\0b")
    with pytest.raises(ValueError, match="retry"):
        encode_event(data="x", retry=-1)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"])
def test_encode_round_trip(eol: bytes) -> None:
    raw = encode_event(data="line 1\r\nline 2\rline 3", event="e", id="i", retry=3, line_end=eol)
    [event] = parse(raw)
    assert (event.data, event.event, event.id, event.retry) == ("line 1\nline 2\nline 3", "e", "i", 3)
    assert event.raw == raw


def test_reencode_keeps_everything_but_data() -> None:
    raw = b"id: 1\r\n: note\r\nevent: message\r\ndata: old 1\r\nfoo: bar\r\ndata: old 2\r\nretry: 5\r\n\r\n"
    [event] = parse(raw)
    out = reencode(event, '{"new": true}\nsecond')
    assert out == (
        b'id: 1\r\n: note\r\nevent: message\r\nfoo: bar\r\ndata: {"new": true}\r\ndata: second\r\nretry: 5\r\n\r\n'
    )
    [again] = parse(out)
    assert (again.id, again.event, again.retry, again.data) == ("1", "message", 5, '{"new": true}\nsecond')


def test_reencode_mcp_event() -> None:
    [event] = parse(b'event: message\r\ndata: {"result": 1}\r\n\r\n')
    assert reencode(event, '{"result": 2}') == b'event: message\r\ndata: {"result": 2}\r\n\r\n'


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"])
def test_reencode_keeps_line_end_style(eol: bytes) -> None:
    [event] = parse(b"event: x" + eol + b"data: a" + eol + eol)
    assert reencode(event, "b\nc") == b"event: x" + eol + b"data: b" + eol + b"data: c" + eol + eol


@pytest.mark.parametrize(
    "raw",
    [
        b"data: a\rdata: b\n\n",  # first data line ends in a bare CR
        b"event: e\rdata: b\r\n\n",  # a kept line ends in a bare CR
        b"data: a\n\xef\xbb\xbfx\rdata: b\n\n",  # and the block could start with a BOM
    ],
)
def test_reencode_does_not_merge_cr_with_following_lf(raw: bytes) -> None:
    # A bare CR directly in front of the LF blank line would read as one
    # CRLF line end, and the block would not end where it did.
    [event] = parse(raw)
    out = reencode(event, "x")
    [again] = parse(out)
    assert again.complete
    assert again.data == "x"


def test_reencode_block_without_data_and_with_bom() -> None:
    [event] = parse(b"event: e\n\n")
    assert reencode(event, "x") == b"event: e\ndata: x\n\n"
    [event] = parse(BOM + b"data: a\r\n\r\n")
    out = reencode(event, "b")
    assert out == BOM + b"data: b\r\n\r\n"
    assert parse(out)[0].data == "b"


def test_reencode_never_starts_block_with_bom() -> None:
    # As the first block of a stream, a block starting with BOM bytes would
    # lose them to the parser and its next line could become a data line.
    [event] = parse(b"data: a\n\xef\xbb\xbfdata: b\ndata: c\n\n")
    out = reencode(event, "x")
    assert not out.startswith(BOM)
    assert parse(out)[0].data == "x"


def test_reencode_rejects_partial() -> None:
    [rest] = parse(b"data: x")
    with pytest.raises(ValueError, match="unterminated"):
        reencode(rest, "y")


# --------------------------------------------------------------------------
# Properties

LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r"])
LINES = st.one_of(
    st.sampled_from(
        [
            b"",
            b"",
            b"data: x",
            b"data:y",
            b"data",
            b"data:",
            b"data:  two",
            b"event: message",
            b"event:",
            b"id: 12",
            b"id",
            b"id: a\x00b",
            b"retry: 1000",
            b"retry: 10x",
            b": ping",
            b":",
            b"foo: bar",
            b"data: \xff\xfe",
            b"\xef\xbb\xbfdata: bom",
            'data: {"é": "✓"}'.encode(),
        ]
    ),
    st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=12).map(lambda t: ("data: " + t).encode("utf-8", "surrogatepass")),
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    parts = [BOM] if draw(st.booleans()) else []
    for line in draw(st.lists(LINES, max_size=25)):
        parts += [line.replace(b"\r", b"").replace(b"\n", b""), draw(LINE_ENDS)]
    if draw(st.booleans()):
        parts.append(draw(LINES).replace(b"\r", b"").replace(b"\n", b""))
    return b"".join(parts)


@st.composite
def stream_and_splits(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = draw(streams())
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(stream_and_splits())
def test_property_any_split_same_events_and_exact_bytes(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    whole = parse(stream)
    split = parse_chunks(chunks)
    assert b"".join(e.raw for e in split) == stream
    assert split == whole
    assert parse_chunks(bytewise(stream)) == whole
    assert all(e.complete for e in whole[:-1])


@settings(max_examples=400, deadline=None)
@given(streams())
def test_property_matches_reference(stream: bytes) -> None:
    events = parse(stream)
    blocks, rest = reference(stream)
    complete = [e for e in events if e.complete]
    assert len(complete) == len(blocks)
    for event, ref in zip(complete, blocks, strict=True):
        assert event.raw == ref.raw
        assert fields(event)[:-1] == (
            ref.event,
            ref.data,
            ref.id,
            ref.retry,
            ref.has_data,
            ref.is_comment_only,
        )
    partial = [e.raw for e in events if not e.complete]
    assert partial == ([rest] if rest else [])


@settings(max_examples=300, deadline=None)
@given(
    data=st.text(st.characters(codec="utf-8")),
    event=st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\r\n")),
    ident=st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0")),
    retry=st.none() | st.integers(0, 10**12),
    eol=LINE_ENDS,
)
def test_property_encode_round_trip(
    data: str, event: str | None, ident: str | None, retry: int | None, eol: bytes
) -> None:
    raw = encode_event(data=data, event=event, id=ident, retry=retry, line_end=eol)
    [parsed] = parse(raw)
    assert parsed.raw == raw
    assert parsed.data == data.replace("\r\n", "\n").replace("\r", "\n")
    assert (parsed.event, parsed.id, parsed.retry) == (event, ident, retry)


@settings(max_examples=300, deadline=None)
@given(streams(), st.text(st.characters(codec="utf-8")), st.data())
def test_property_reencode_in_stream(stream: bytes, new_data: str, pick: st.DataObject) -> None:
    events = parse(stream)
    candidates = [i for i, e in enumerate(events) if e.complete]
    if not candidates:
        return
    index = pick.draw(st.sampled_from(candidates))
    replaced = reencode(events[index], new_data)
    new_stream = b"".join(replaced if i == index else e.raw for i, e in enumerate(events))
    after = parse(new_stream)
    assert len(after) == len(events)
    for i, (old, new) in enumerate(zip(events, after, strict=True)):
        if i != index:
            assert new == old
            continue
        assert new.raw == replaced
        assert new.has_data
        assert new.data == new_data.replace("\r\n", "\n").replace("\r", "\n")
        assert (new.event, new.id, new.retry) == (old.event, old.id, old.retry)
        assert new.raw.startswith(BOM) == old.raw.startswith(BOM)
