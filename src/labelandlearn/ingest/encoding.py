"""Text encoding detection for imported files: BOMs, strict UTF-8, then charset-normalizer.

Every check streams the file in fixed-size chunks, so memory stays bounded for any file size.
"""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

import charset_normalizer

from labelandlearn.errors import ImportFormatError

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
# Bytes of non-ASCII lines handed to charset-normalizer when a file is not valid UTF-8.
DETECTION_SAMPLE_BYTES = 256 * 1024
# charset-normalizer scores short Western European samples as cp1250, cp1257 and several Mac
# code pages with the same chaos as cp1252; among near-equal matches cp1252 wins.
CHAOS_TIE = 0.01

# Codec name prefixes (Python's names) of code pages for scripts other than Latin.
_OTHER_SCRIPT_CODECS = (
    "cp1251", "cp1253", "cp1255", "cp1256", "cp1125", "cp866", "cp855", "cp869", "cp874",
    "cp737", "cp862", "cp864", "koi8", "mac_cyrillic", "mac_greek", "mac_arabic", "kz1048",
    "iso8859_5", "iso8859_6", "iso8859_7", "iso8859_8", "iso8859_11", "ptcp154", "tis_620",
    "cp932", "cp949", "cp950", "shift_jis", "euc", "gb", "big5", "hz", "johab",
)  # fmt: skip

# Longest first: the UTF-32 LE BOM starts with the UTF-16 LE BOM.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def encoding_from_bom(head: bytes) -> str | None:
    """Return the codec named by a byte order mark at the start of ``head``, if any."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    return None


def detect_encoding(path: Path, display_name: str) -> str:
    """Return the codec that decodes the whole file, or raise ImportFormatError for binary data.

    A BOM decides at once. Otherwise the file must contain no NUL byte; it is UTF-8 when every
    chunk decodes strictly, else charset-normalizer guesses from the lines with non-ASCII bytes,
    and cp1252, then latin-1 (which decodes any byte), are the fallbacks.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
    bom_encoding = encoding_from_bom(head)
    if bom_encoding is not None:
        _check_decodes(path, bom_encoding, display_name, binary_error=True)
        return bom_encoding

    if _is_utf8_without_nul(path, display_name):
        return "utf-8"

    guess = _guess_single_byte_encoding(path)
    for candidate in (guess, "cp1252", "latin-1"):
        if candidate and _check_decodes(path, candidate, display_name, binary_error=False):
            logger.debug("%s is not UTF-8; decoding it as %s", display_name, candidate)
            return candidate
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _binary_error(display_name: str) -> ImportFormatError:
    return ImportFormatError(
        f"{display_name} is a binary file, not text: it contains NUL bytes or cannot be decoded. "
        "Import a CSV, TSV, JSON, JSON Lines, Parquet or Excel (.xlsx) file."
    )


def _is_utf8_without_nul(path: Path, display_name: str) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    valid = True
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            if b"\x00" in chunk:
                raise _binary_error(display_name)
            if valid:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    # Keep reading: a NUL byte later in the file still makes it binary.
                    valid = False
    if valid:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid = False
    return valid


def _check_decodes(path: Path, encoding: str, display_name: str, *, binary_error: bool) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        if binary_error:
            raise _binary_error(display_name) from None
        return False
    return True


def _non_ascii_sample(path: Path) -> bytes:
    """Return up to DETECTION_SAMPLE_BYTES of the file's lines that contain non-ASCII bytes."""
    parts: list[bytes] = []
    size = 0
    with path.open("rb") as handle:
        while line := handle.readline(DETECTION_SAMPLE_BYTES):
            if line.isascii():
                continue
            parts.append(line)
            size += len(parts[-1])
            if size >= DETECTION_SAMPLE_BYTES:
                break
    return b"".join(parts)


def _guess_single_byte_encoding(path: Path) -> str | None:
    matches = charset_normalizer.from_bytes(_non_ascii_sample(path))
    best = matches.best()
    if best is None:
        return None
    near_best = [match.encoding for match in matches if match.chaos <= best.chaos + CHAOS_TIE]
    if "cp1252" in near_best:
        return "cp1252"
    # For Latin-script text charset-normalizer often ranks Baltic, Central European or Mac
    # code pages first (French text in cp1252 came out as cp1257), and those misread the
    # accents. cp1252 is by far the most common of them, so it wins unless the best guess is
    # a code page of another script.
    candidates = {match.encoding for match in matches}
    if "cp1252" in candidates and not best.encoding.startswith(_OTHER_SCRIPT_CODECS):
        return "cp1252"
    return best.encoding
