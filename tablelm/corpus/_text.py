"""Decoding files into lines, with errors that say where the bad bytes are."""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from tablelm import params
from tablelm.corpus.stats import handle_error
from tablelm.errors import CorpusError

_UTF8_BOM = codecs.BOM_UTF8
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def codec_name(path, encoding: str) -> str:
    """The canonical codec name of ``encoding``, or a CorpusError naming the option to fix."""
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise CorpusError(
            path,
            f"unknown encoding {encoding!r}; fix: pass --encoding with a Python codec name "
            "such as utf-8 or cp1252",
        ) from None


def _is_wide(name: str) -> bool:
    # Codecs whose newline is not the single byte 0x0a: lines cannot be split on bytes.
    return name.startswith(("utf-16", "utf-32"))


def _check_wide_bom(path, head: bytes, name: str) -> None:
    if _is_wide(name):
        return
    for bom, wide in _WIDE_BOMS:
        if head.startswith(bom):
            raise CorpusError(
                path,
                f"the file starts with a {wide.upper()} byte-order mark but is read as {name}; "
                f"fix: pass --encoding {wide}",
                line=1,
            )


def decode_error(path, name: str, bad_byte: int, line: int, column: int,
                 file_offset: int) -> CorpusError:
    """A CorpusError for a byte that is not valid in codec ``name``.

    ``column`` is the 0-based byte position in the line, ``file_offset`` in the file.
    """
    alt = "cp1252" if name == "utf-8" else "utf-8"
    return CorpusError(
        path,
        f"bytes not valid {name} at byte {column + 1} of the line (offset {file_offset} in "
        f"the file, byte 0x{bad_byte:02x}); fix: pass --encoding {alt} or the file's real encoding",
        line=line,
    )


def decode_text(path, data: bytes, encoding: str = "utf-8") -> str:
    """Decode a whole file, drop a BOM, normalize newlines to ``\\n``."""
    name = codec_name(path, encoding)
    _check_wide_bom(path, data[:4], name)
    if name.startswith("utf-8") and data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    try:
        text = data.decode(name)
    except UnicodeDecodeError as err:
        if _is_wide(name):
            line = data[:err.start].decode(name, errors="replace").count("\n") + 1
            line_start = err.start
        else:
            line = data.count(b"\n", 0, err.start) + 1
            line_start = data.rfind(b"\n", 0, err.start) + 1
        raise decode_error(path, name, data[err.start], line, err.start - line_start,
                           err.start) from None
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str | CorpusError]]:
    """Yield ``(line_number, text)`` for every line of ``path``, 1-based, without the newline.

    A line that does not decode yields ``(line_number, CorpusError)`` instead, so a reader
    can skip it and go on. A UTF-8 byte-order mark at the start is dropped.
    """
    name = codec_name(path, encoding)
    if _is_wide(name):
        try:
            text = decode_text(path, Path(path).read_bytes(), name)
        except CorpusError as err:  # the whole file is one unit here: report and stop
            yield err.line or 1, err
            return
        for number, line in enumerate(text.split("\n"), 1):
            yield number, line
        return
    offset = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            start = offset
            offset += len(raw)
            if number == 1:
                try:
                    _check_wide_bom(path, raw, name)
                except CorpusError as err:  # every line would be wrong: report once, stop
                    yield 1, err
                    return
                if raw.startswith(_UTF8_BOM) and name.startswith("utf-8"):
                    raw = raw[len(_UTF8_BOM):]
                    start += len(_UTF8_BOM)
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            try:
                yield number, raw.decode(name)
            except UnicodeDecodeError as err:
                yield number, decode_error(path, name, raw[err.start], number, err.start,
                                           start + err.start)


def first_content_line(path: Path, limit: int = 1 << 20) -> str:
    """The first non-blank line of ``path`` (BOM dropped, undecodable bytes replaced), for sniffing."""
    read = 0
    with open(path, "rb") as fh:
        for raw in fh:
            read += len(raw)
            line = raw.removeprefix(_UTF8_BOM) if read == len(raw) else raw
            text = line.decode("utf-8", errors="replace").strip()
            if text:
                return text
            if read > limit:
                break
    return ""


#: Default largest file a reader opens (``max_file_mb``): bigger files are reported, not read.
DEFAULT_MAX_FILE_MB = params.REGISTRY["max_file_mb"].default


def check_regular(path) -> os.stat_result:
    """The file's ``stat``; a CorpusError for anything but a regular file (or a link to one).

    A FIFO would block the build forever on open, a device such as ``/dev/zero`` never ends,
    a socket cannot be read: they are skipped with this reason.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a character device" if stat.S_ISCHR(st.st_mode) else
                "a block device" if stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise CorpusError(path, f"{kind}, not a regular file: only regular files are read; "
                          "fix: copy its content into a file and pass that")
    return st


def check_file(path, max_file_mb: float | None, text: bool = True, encoding: str = "utf-8") -> None:
    """Raise a CorpusError for a file that is not regular, over the size limit, or binary data
    in a text file.

    ``text`` files must not hold NUL bytes in their first 8 KiB (unless UTF-16/32, where they
    are normal): a NUL there means an image, archive or other binary file with a text name.
    """
    size = check_regular(path).st_size
    if max_file_mb is not None and size > max_file_mb * 1024 * 1024:
        raise CorpusError(
            path,
            f"the file is {size / 1024 / 1024:,.1f} MB, over the {max_file_mb:g} MB limit; fix: "
            "split it, or raise the limit (tablelm build --max-file-mb MB; in Python: max_file_mb=MB)",
        )
    if not text:
        return
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if any(head.startswith(bom) for bom, _ in _WIDE_BOMS) or _is_wide(codec_name(path, encoding)):
        return
    nul = head.find(b"\x00")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise CorpusError(
            path,
            f"binary data in a text file (a NUL byte at offset {nul}); fix: remove the file, "
            "or give it its real extension",
            line=line,
        )


def content_lines(path: Path, encoding: str, on_error: str, stats) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the non-blank lines; a line that cannot be decoded goes to
    ``on_error`` (raised, or counted in ``stats`` and skipped)."""
    for number, line in iter_lines(path, encoding):
        if isinstance(line, CorpusError):
            handle_error(line, on_error, stats)
            continue
        if line.strip():
            yield number, line
