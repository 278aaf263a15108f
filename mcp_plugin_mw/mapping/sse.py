"""
Incremental Server-Sent Events parsing and encoding
===================================================

The ASGI and WSGI middlewares transform ``text/event-stream`` responses one
event at a time while they stream (DESIGN §7). This module is the framework-free
part of that: :class:`SSEParser` cuts a byte stream into blocks (the lines up to
and including a blank line) and parses each block the way the WHATWG HTML
"server-sent events" section says a browser would, and :func:`encode_event` /
:func:`reencode` write events back.

Every block keeps its exact original bytes in :attr:`SSEEvent.raw`, so the
concatenation of all ``raw`` values equals the input: events and comments that
no plugin touches go out byte for byte, and nothing is buffered beyond the
block being assembled. A block's fields are parsed only when first read, and
:meth:`SSEParser.skip_blocks` takes a chunk of whole blocks without even
cutting it up, for a caller that can tell from its bytes that it needs none.

Scanning uses only single-byte ``find`` calls (``memchr`` in CPython), which
are more than an order of magnitude faster than searching for the two-byte
blank-line patterns, and remembers what it has already searched so that a large
event arriving in many small chunks is scanned once, not once per chunk.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "SSEEvent",
    "SSEEventTooLarge",
    "SSEParser",
    "encode_event",
    "reencode",
]

#: Default limit for one block (16 MiB): well above any sane MCP result.
DEFAULT_MAX_EVENT_BYTES: Final = 16 * 1024 * 1024

_BOM: Final = b"\xef\xbb\xbf"
_LF: Final = 0x0A
_COLON: Final = 0x3A
_LINE_ENDS: Final = (b"\r\n", b"\n", b"\r")
# How a chunk that ends a block ends: a line end after an LF or a lone CR.
_BLOCK_ENDS: Final = (b"\n\n", b"\n\r\n", b"\r\r\n")

# BOM detection states: the BOM is only meaningful at the very start of a
# stream, and its three bytes may arrive in separate chunks.
_BOM_UNDECIDED: Final = 0
_BOM_DONE: Final = 1


class SSEEventTooLarge(ValueError):
    """A single SSE block grew beyond the parser's ``max_event_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"SSE event of at least {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class SSEEvent:
    """One block of an event stream: its exact bytes and its parsed fields.

    ``event``, ``id`` and ``retry`` are ``None`` when the block does not set
    them (a browser would then use ``"message"``, the previous id and the
    previous retry). ``data`` is the data lines joined with ``"\\n"``.
    ``complete`` is false only for a trailing unterminated block returned by
    :meth:`SSEParser.flush`; such a block is not parsed (a browser discards
    it) and must be passed through as is.

    The parser only finds where a block ends; its fields are parsed the first
    time one is read, so a block that is passed on by its bytes alone (the
    usual fate of a progress notification) is never parsed.
    """

    __slots__ = (
        "_body_start",
        "_comment_only",
        "_data",
        "_data_raw",
        "_event",
        "_has_data",
        "_id",
        "_lines",
        "_parsed",
        "_retry",
        "complete",
        "raw",
    )

    def __init__(
        self,
        raw: bytes,
        *,
        event: str | None = None,
        data: str = "",
        id: str | None = None,
        retry: int | None = None,
        is_comment_only: bool = False,
        has_data: bool = False,
        complete: bool = True,
        body_start: int = 0,
    ) -> None:
        self.raw = raw
        self.complete = complete
        # 3 when ``raw`` begins with the stream's byte order mark, which is
        # not part of the first line; reencode() needs to know.
        self._body_start = body_start
        self._parsed = True
        self._event = event
        self._data: str | None = data
        # The data lines' own bytes joined with LF, when known (see data_bytes).
        self._data_raw: bytes | None = None
        self._id = id
        self._retry = retry
        self._comment_only = is_comment_only
        self._has_data = has_data
        # (start, end, next) of every line, the blank one last, once scanned.
        self._lines: list[tuple[int, int, int]] | None = None

    def _parse(self) -> None:
        """Parse the fields of a complete block (see :func:`_block`)."""
        raw = self.raw
        lines = self._lines
        if lines is None:
            lines = self._lines = _line_spans(raw, self._body_start)
        event: str | None = None
        ident: str | None = None
        retry: int | None = None
        data: list[tuple[int, int]] = []
        comment_only = len(lines) > 1
        # The last line is the blank one that ends the block.
        for start, end, _ in lines[:-1]:
            colon = raw.find(b":", start, end)
            if colon == start:
                continue  # a comment
            comment_only = False
            if colon < 0:
                # A line without a colon is a field name with an empty value.
                name = raw[start:end]
                vstart = end
            else:
                name = raw[start:colon]
                vstart = colon + 1
                if vstart < end and raw[vstart] == 0x20:  # one space is optional
                    vstart += 1
            if name == b"data":
                data.append((vstart, end))
            elif name == b"event":
                event = _decode(raw, vstart, end)
            elif name == b"id":
                value = _decode(raw, vstart, end)
                if "\0" not in value:
                    ident = value
            elif name == b"retry":
                digits = raw[vstart:end]
                # bytes.isdigit() is ASCII-only, which is what the spec asks for.
                if digits.isdigit():
                    retry = int(digits)
            # Any other field is ignored, as the spec says.
        self._event = event
        self._id = ident
        self._retry = retry
        self._comment_only = comment_only
        self._has_data = bool(data)
        if len(data) == 1:
            self._data_raw = raw[data[0][0] : data[0][1]]
        else:
            self._data_raw = b"\n".join([raw[start:end] for start, end in data])
        self._data = None
        self._parsed = True

    @property
    def event(self) -> str | None:
        """The ``event`` field (the event type), or None."""
        if not self._parsed:
            self._parse()
        return self._event

    @property
    def data(self) -> str:
        """The data lines joined with ``"\\n"``, decoded as UTF-8 with replacement."""
        if not self._parsed:
            self._parse()
        text = self._data
        if text is None:
            assert self._data_raw is not None
            # The spec decodes the stream as UTF-8 with replacement. Lines
            # split on ASCII bytes, and an invalid sequence never takes in an
            # ASCII byte, so decoding the joined values gives the same text as
            # decoding each alone.
            text = self._data = self._data_raw.decode("utf-8", "replace")
        return text

    @property
    def data_bytes(self) -> bytes:
        """``data`` encoded as UTF-8: ``data.encode()``, but without decoding
        and encoding again values whose bytes are valid UTF-8 already."""
        if not self._parsed:
            self._parse()
        value = self._data_raw
        if value is None:
            return self.data.encode()
        if not value.isascii():
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                # Replacement characters stand for the invalid bytes.
                return self.data.encode()
            self._data = text
        return value

    @property
    def id(self) -> str | None:
        """The ``id`` field, or None (also when it contains NUL)."""
        if not self._parsed:
            self._parse()
        return self._id

    @property
    def retry(self) -> int | None:
        """The ``retry`` field when it is all ASCII digits, or None."""
        if not self._parsed:
            self._parse()
        return self._retry

    @property
    def is_comment_only(self) -> bool:
        """True if the block has lines and every one is a comment."""
        if not self._parsed:
            self._parse()
        return self._comment_only

    @property
    def has_data(self) -> bool:
        """True if the block has at least one ``data`` field.

        Only such blocks are dispatched as events by a browser; ``data`` may
        still be empty (a bare ``data:`` line).
        """
        if not self._parsed:
            self._parse()
        return self._has_data

    def _key(self) -> tuple[object, ...]:
        return (
            self.raw,
            self.event,
            self.data,
            self.id,
            self.retry,
            self.is_comment_only,
            self.complete,
            self.has_data,
            self._body_start,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SSEEvent):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass

    def __repr__(self) -> str:
        return (
            f"SSEEvent(raw={self.raw!r}, event={self.event!r}, data={self.data!r}, "
            f"id={self.id!r}, retry={self.retry!r}, "
            f"is_comment_only={self.is_comment_only!r}, has_data={self.has_data!r}, complete={self.complete!r})"
        )


_new = object.__new__


def _block(raw: bytes, body_start: int) -> SSEEvent:
    """The event for a complete block, its fields parsed when first read."""
    event: SSEEvent = _new(SSEEvent)
    event.raw = raw
    event.complete = True
    event._body_start = body_start
    event._parsed = False
    event._lines = None
    return event


def _decode(raw: bytes, start: int, end: int) -> str:
    # The spec decodes the stream as UTF-8 with replacement. Blocks and lines
    # split on ASCII bytes, so decoding each value alone gives the same text.
    if end - start < 4096:
        return raw[start:end].decode("utf-8", "replace")
    # A memoryview spares copying a large value before decoding it; for
    # small ones creating the view costs more than the copy.
    return str(memoryview(raw)[start:end], "utf-8", "replace")


class SSEParser:
    """Incremental parser: feed bytes as they arrive, get complete events.

    Not thread-safe; use one parser per response stream. After
    :meth:`flush` the parser is ready for a new stream. After it raised
    :class:`SSEEventTooLarge` its state is undefined: discard it.
    """

    __slots__ = ("_bom", "_buf", "_cr", "_lf", "_limit", "_pos", "_skip")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        if max_event_bytes <= 0:
            raise ValueError("max_event_bytes must be positive")
        self._limit = max_event_bytes
        self._reset()

    def _reset(self) -> None:
        # Bytes of the block being assembled (always starts at a block start).
        self._buf = bytearray()
        # Start of the current, not yet terminated line in ``_buf``.
        self._pos = 0
        # Next LF / CR index at or after ``_pos``, or -1 if there is none in
        # ``_buf``; kept between calls so no byte is searched twice.
        self._lf = -1
        self._cr = -1
        self._bom = _BOM_UNDECIDED
        # Length of the byte order mark that opens the next block: 3 for the
        # first block of a stream that starts with one, else 0.
        self._skip = 0

    @property
    def pending_bytes(self) -> int:
        """Number of bytes held for the block being assembled."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add ``chunk`` and return the events it completes, in order."""
        if not chunk:
            return []
        if self._buf or self._bom != _BOM_DONE or chunk.find(b"\r") >= 0:
            return self._scan(chunk, final=False)
        # The usual chunk: it starts a block (nothing is held, so the saved
        # line-end positions are unset and no BOM is pending) and its lines
        # all end in LF, so a blank line is an LF right at a line start.
        events: list[SSEEvent] = []
        limit = self._limit
        block = pos = 0
        lf = chunk.find(b"\n")
        while lf >= 0:
            if lf == pos:
                nxt = lf + 1
                if nxt - block > limit:
                    raise SSEEventTooLarge(nxt - block, limit)
                events.append(_block(chunk if block == 0 and nxt == len(chunk) else chunk[block:nxt], 0))
                block = nxt
            pos = lf + 1
            lf = chunk.find(b"\n", pos)
        n = len(chunk)
        if block < n:
            if n - block > limit:
                raise SSEEventTooLarge(n - block, limit)
            self._buf = bytearray(memoryview(chunk)[block:])
            self._pos = pos - block
        return events

    def flush(self) -> list[SSEEvent]:
        """End the stream: return remaining events, then any unterminated rest.

        The rest, if any, comes last as an event with ``complete=False`` whose
        ``raw`` holds the bytes, so that nothing fed is ever lost.
        """
        events = self._scan(b"", final=True)
        if self._buf:
            events.append(SSEEvent(bytes(self._buf), complete=False))
        self._reset()
        return events

    def skip_blocks(self, chunk: bytes) -> bool:
        """Take ``chunk`` unparsed if it is whole blocks; True if it was taken.

        That is the case when the parser holds nothing (so ``chunk`` starts a
        block) and ``chunk`` ends with a blank line (so it ends one), and is
        how a caller that can tell from the bytes alone that no event in the
        chunk concerns it sends the chunk on as it came. Otherwise nothing is
        taken: :meth:`feed` the chunk instead.
        """
        # The last byte must be an LF: a CR there may be the first half of a
        # CRLF whose LF comes in the next chunk. Before that line end (LF or
        # CRLF), an LF or a CR (which, followed by a CR or an LF, is a line
        # end of its own) means the line it ends is blank; so does the start
        # of the chunk, a block start. A blank line ends a block. The limit
        # applies per block, so a chunk within it has no block beyond it.
        return (
            not self._buf
            and self._bom == _BOM_DONE
            and (chunk.endswith(_BLOCK_ENDS) or chunk == b"\n" or chunk == b"\r\n")
            and len(chunk) <= self._limit
        )

    def _scan(self, chunk: bytes, final: bool) -> list[SSEEvent]:
        buf: bytes | bytearray
        pending = self._buf
        if pending:
            old_len = len(pending)
            pending += chunk
            buf = pending
        else:
            # Fast path, the usual case of one whole event per chunk: work on
            # the caller's bytes, so a block that is the whole chunk is
            # returned as that very object, without a copy.
            old_len = 0
            buf = chunk
        n = len(buf)
        pos = self._pos

        if self._bom == _BOM_UNDECIDED:
            head = bytes(buf[:3])
            if head == _BOM:
                pos = self._skip = 3
            elif _BOM.startswith(head) and not final:
                # Too few bytes to tell; at most two are held.
                self._keep(buf, 0, pos)
                return []
            self._bom = _BOM_DONE

        # Refresh "none found" answers for the bytes that just arrived only.
        lf = self._lf if self._lf >= 0 else buf.find(b"\n", old_len)
        cr = self._cr if self._cr >= 0 else buf.find(b"\r", old_len)
        limit = self._limit
        events: list[SSEEvent] = []
        block = 0
        while True:
            if 0 <= lf < pos:
                lf = buf.find(b"\n", pos)
            if 0 <= cr < pos:
                cr = buf.find(b"\r", pos)
            if cr >= 0 and (lf < 0 or cr < lf):
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1] == _LF else cr + 1
                elif final:
                    nxt = cr + 1
                else:
                    # A CR as the last byte may be the first half of CRLF:
                    # wait for the next byte rather than guess.
                    break
            elif lf >= 0:
                end = lf
                nxt = lf + 1
            else:
                break
            if end == pos:
                # Blank line: the block is complete.
                if nxt - block > limit:
                    raise SSEEventTooLarge(nxt - block, limit)
                if isinstance(buf, bytes):
                    raw = buf if block == 0 and nxt == n else buf[block:nxt]
                else:
                    # Through a memoryview: bytes(bytearray[a:b]) makes an
                    # extra copy and is many times slower on large blocks.
                    with memoryview(buf) as view:
                        raw = bytes(view[block:nxt])
                events.append(_block(raw, self._skip))
                self._skip = 0
                block = nxt
            pos = nxt

        if n - block > limit:
            raise SSEEventTooLarge(n - block, limit)
        self._lf = lf - block if lf >= 0 else -1
        self._cr = cr - block if cr >= 0 else -1
        self._keep(buf, block, pos)
        return events

    def _keep(self, buf: bytes | bytearray, block: int, pos: int) -> None:
        """Hold ``buf[block:]`` as the pending block; ``pos`` is absolute."""
        if buf is self._buf:
            # bytearray drops a prefix without moving the rest each time.
            del self._buf[:block]
        elif block < len(buf):
            self._buf = bytearray(memoryview(buf)[block:])
        # else: the caller's chunk was used up and ``_buf`` is still empty.
        self._pos = pos - block


def _split_data(data: str | bytes) -> list[bytes]:
    # A data line cannot hold CR or LF, so any of the three line ends in the
    # value starts a new data line (the parser gives them back as "\n").
    encoded = data if isinstance(data, bytes) else data.encode("utf-8")
    if b"\r" in encoded:
        encoded = encoded.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return encoded.split(b"\n")


def _data_lines(data: str | bytes, line_end: bytes) -> bytes:
    return b"".join(b"data: " + line + line_end for line in _split_data(data))


def encode_event(
    *,
    data: str,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    line_end: bytes = b"\r\n",
) -> bytes:
    """Encode one event, ending with the blank line that dispatches it.

    Multi-line ``data`` becomes several ``data:`` lines. Raises
    :class:`ValueError` for a line end other than CRLF, LF or CR, for an
    ``event`` or ``id`` containing a line break (it would inject fields), for
    an ``id`` containing NUL (browsers ignore it) or for a negative ``retry``.
    """
    if line_end not in _LINE_ENDS:
        raise ValueError(f"line_end must be one of {_LINE_ENDS!r}, not {line_end!r}")
    out: list[bytes] = []
    if id is not None:
        if "\r" in id or "\n" in id or "\0" in id:
            raise ValueError("an SSE id must not contain CR, LF or NUL")
        out.append(b"id: " + id.encode("utf-8") + line_end)
    if event is not None:
        if "\r" in event or "\n" in event:
            raise ValueError("an SSE event name must not contain CR or LF")
        out.append(b"event: " + event.encode("utf-8") + line_end)
    out.append(_data_lines(data, line_end))
    if retry is not None:
        if retry < 0:
            raise ValueError("retry must not be negative")
        out.append(b"retry: %d" % retry + line_end)
    out.append(line_end)
    return b"".join(out)


def _line_spans(raw: bytes, pos: int) -> list[tuple[int, int, int]]:
    """(start, end, next) of each line of a complete block, blank line last."""
    spans: list[tuple[int, int, int]] = []
    n = len(raw)
    lf = raw.find(b"\n", pos)
    cr = raw.find(b"\r", pos)
    while pos < n:
        if 0 <= lf < pos:
            lf = raw.find(b"\n", pos)
        if 0 <= cr < pos:
            cr = raw.find(b"\r", pos)
        if cr >= 0 and (lf < 0 or cr < lf):
            nxt = cr + 2 if cr + 1 < n and raw[cr + 1] == _LF else cr + 1
            spans.append((pos, cr, nxt))
        elif lf >= 0:
            nxt = lf + 1
            spans.append((pos, lf, nxt))
        else:  # pragma: no cover - complete blocks end with a line end
            spans.append((pos, n, n))
            nxt = n
        pos = nxt
    return spans


def _is_data_line(raw: bytes, start: int, end: int) -> bool:
    if not raw.startswith(b"data", start, end):
        return False
    return end == start + 4 or raw[start + 4] == _COLON


def reencode(original: SSEEvent, new_data: str | bytes) -> bytes:
    """Return ``original`` with its data replaced by ``new_data``.

    ``new_data`` may be given as text or as its UTF-8 bytes (which are then
    used as they are: an encoder's output need not be decoded to be written).

    Every other line (``event``, ``id``, ``retry``, comments, unknown fields)
    and every line end is kept byte for byte and in order. The new ``data``
    lines take the place of the last old one and use its line end, so the
    stream keeps its line-ending style. A block without data gets the new
    lines just before its blank line.
    """
    if not original.complete:
        raise ValueError("cannot re-encode an unterminated SSE block")
    raw = original.raw
    start = original._body_start
    lines = original._lines
    if lines is None:
        # Lines that parsing the block found are not searched for again.
        lines = original._lines = _line_spans(raw, start)
    blank = len(lines) - 1
    skip = {i for i, (b, e, _) in enumerate(lines[:blank]) if _is_data_line(raw, b, e)}
    # At the last data line (or the blank line), the bytes that follow the
    # new lines are the ones that followed that line before; elsewhere a bare
    # CR could end up in front of an LF blank line and merge with it into one
    # CRLF line end, so the block would no longer end there.
    at = max(skip, default=blank)
    first_kept = next(i for i in range(len(lines)) if i not in skip)
    if start == 0 and 0 < first_kept < at and raw.startswith(_BOM, lines[first_kept][0]):
        # Dropping the leading data lines would make the block start with
        # BOM bytes, which a parser strips at the start of a stream: keep
        # the block starting with "data" instead.
        at = 0
    line_end = raw[lines[at][1] : lines[at][2]]
    new_lines = _data_lines(new_data, line_end)
    out: list[bytes] = [raw[:start]]
    prev_end = b""
    for i, (begin, end, nxt) in enumerate(lines):
        if i == at:
            out.append(new_lines)
            prev_end = line_end
        if i == blank and prev_end == b"\r" and raw[begin] == _LF:
            # Only reachable after the move above: an empty comment keeps
            # the bare CR away from the LF of the blank line.
            out.append(b":\n")
        if i not in skip:
            out.append(raw[begin:nxt])
            prev_end = raw[end:nxt]
    return b"".join(out)
