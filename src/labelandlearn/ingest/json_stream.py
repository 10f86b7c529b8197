"""Incremental JSON parsing of large arrays with bounded memory.

The file is read in chunks. Each array element is decoded with ``JSONDecoder.raw_decode`` as
soon as the buffer contains all of it, so memory grows with the largest element, not the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator
from typing import Any, TextIO

from labelandlearn.errors import ImportFormatError

READ_CHARS = 64 * 1024
# One JSON value (one record) larger than this is rejected instead of buffered.
MAX_VALUE_CHARS = 64 * 1024 * 1024
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# raw_decode reports a value cut off by the end of the buffer at (or a few characters before)
# the end, except for an unterminated string, which it reports where the string starts.
_TRUNCATION_MARGIN = 16


class JsonTokenStream:
    """A cursor over JSON text read in chunks, tracking the 1-based line of the cursor."""

    def __init__(self, text: TextIO, display_name: str) -> None:
        self._text = text
        self._display_name = display_name
        self._decoder = json.JSONDecoder()
        self._buffer = ""
        self._pos = 0
        self._eof = False
        self.line = 1

    def malformed(self, reason: str, line: int | None = None) -> ImportFormatError:
        where = self.line if line is None else line
        return ImportFormatError(
            f"{self._display_name} is not valid JSON: {reason} at line {where}. "
            "Fix the file, or save it as CSV or JSON Lines."
        )

    def _fill(self, minimum: int = READ_CHARS) -> bool:
        """Append at least ``minimum`` characters when the file has them; False at end of file."""
        if self._eof:
            return False
        chunk = self._text.read(max(minimum, READ_CHARS))
        if not chunk:
            self._eof = True
            return False
        self._buffer = self._buffer[self._pos :] + chunk
        self._pos = 0
        return True

    def _advance(self, new_pos: int) -> None:
        self.line += self._buffer.count("\n", self._pos, new_pos)
        self._pos = new_pos

    def peek(self) -> str | None:
        """Skip whitespace and return the next character without consuming it; None at the end."""
        while True:
            end = _WHITESPACE.match(self._buffer, self._pos).end()  # type: ignore[union-attr]
            self._advance(end)
            if end < len(self._buffer):
                return self._buffer[end]
            if not self._fill():
                return None

    def expect(self, char: str) -> None:
        found = self.peek()
        if found != char:
            shown = "end of file" if found is None else repr(found)
            raise self.malformed(f"expected {char!r} but found {shown}")
        self._advance(self._pos + 1)

    def decode_value(self) -> tuple[int, Any]:
        """Decode the next JSON value; return the line it starts on and the value."""
        if self.peek() is None:
            raise self.malformed("expected a value but the file ended")
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as exc:
                if self._may_be_truncated(exc) and self._fill(len(self._buffer) - self._pos):
                    self._check_value_size()
                    continue
                line = self.line + self._buffer.count("\n", self._pos, exc.pos)
                raise self.malformed(exc.msg, line) from None
            # A number that ends at the end of the buffer may continue in the next chunk.
            if end == len(self._buffer) and self._fill(len(self._buffer) - self._pos):
                self._check_value_size()
                continue
            start_line = self.line
            self._advance(end)
            return start_line, value

    def _may_be_truncated(self, exc: json.JSONDecodeError) -> bool:
        if self._eof:
            return False
        near_end = exc.pos >= len(self._buffer) - _TRUNCATION_MARGIN
        return near_end or exc.msg.startswith("Unterminated string")

    def _check_value_size(self) -> None:
        if len(self._buffer) - self._pos > MAX_VALUE_CHARS:
            raise ImportFormatError(
                f"{self._display_name}: the JSON value starting at line {self.line} is larger "
                f"than {MAX_VALUE_CHARS // (1024 * 1024)} MiB; split it into smaller records."
            )

    def iter_array(self) -> Iterator[tuple[int, Any]]:
        """Yield (line, value) for each element of the array whose ``[`` comes next."""
        self.expect("[")
        if self.peek() == "]":
            self._advance(self._pos + 1)
            return
        while True:
            yield self.decode_value()
            separator = self.peek()
            if separator == "]":
                self._advance(self._pos + 1)
                return
            if separator != ",":
                shown = "end of file" if separator is None else repr(separator)
                raise self.malformed(f"expected ',' or ']' after an array element, found {shown}")
            self._advance(self._pos + 1)

    def expect_end(self) -> None:
        found = self.peek()
        if found is not None:
            raise self.malformed(f"unexpected {found!r} after the end of the JSON document")


def iter_json_records(text: TextIO, display_name: str) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) for a JSON array, or for the first list of objects in an object.

    In an object such as ``{"count": 2, "data": [{...}, {...}]}`` the first key whose value is
    a list starting with an object contains the records, and other keys are read and ignored.
    """
    stream = JsonTokenStream(text, display_name)
    first = stream.peek()
    if first == "[":
        yield from stream.iter_array()
        stream.expect_end()
        return
    if first != "{":
        raise stream.malformed("expected '[' or '{' at the start")
    if not (yield from _iter_object_records(stream)):
        raise ImportFormatError(
            f"{display_name} is a JSON object without a list of objects. Expected an array of "
            "objects, an object holding one list of objects, or JSON Lines (one object a line)."
        )


def _iter_object_records(stream: JsonTokenStream) -> Generator[tuple[int, Any], None, bool]:
    """Yield the records of the first list of objects inside an object; return whether found."""
    stream.expect("{")
    if stream.peek() == "}":
        return False
    while True:
        key_line, key = stream.decode_value()
        if not isinstance(key, str):
            raise stream.malformed("expected an object key", key_line)
        stream.expect(":")
        if stream.peek() == "[":
            # iter_array consumes the '[' before peeking at the first element.
            elements = stream.iter_array()
            first = next(elements, None)
            if first is not None and isinstance(first[1], dict):
                yield first
                yield from elements
                return True
            for _ in elements:
                pass
        else:
            stream.decode_value()
        separator = stream.peek()
        if separator == "}":
            return False
        if separator != ",":
            shown = "end of file" if separator is None else repr(separator)
            raise stream.malformed(f"expected ',' or '}}' in an object, found {shown}")
        stream.expect(",")
