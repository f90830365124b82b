"""Strict readers of the text tables datasets ship (CSV with a header, DCASE tab-separated lists).

Every problem is a one-line :class:`~deepfeat.errors.ManifestError` that names the file and the
line (``labels.csv:7: ...``) and says how to fix it: undecodable bytes, unbalanced quotes, rows
with missing or extra fields, empty file names, fold numbers that are not positive integers.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from ..errors import ManifestError
from .manifest import AUDIO_SUFFIXES


def read_text(path: Path) -> str:
    """The text of ``path`` (UTF-8, an optional byte-order mark dropped)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read it ({e.strerror or e}); check the path and its permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ManifestError(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x}); save the file as UTF-8") from None


def _check_cells(path: Path, line: int, cells: list[str]) -> None:
    if any("\n" in c or "\r" in c for c in cells):
        raise ManifestError(f"{path}:{line}: a quoted field runs over several lines (an unbalanced quote?); "
                            "close the quote or remove it")


def read_csv_rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file with a header line, as ``(line number, {column: cell})``.

    The header must name every column of ``required`` once; every row must have exactly as many
    fields as the header. Blank lines are skipped.
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    rows: list[tuple[int, dict[str, str]]] = []
    start = 1  # the line the record being read starts on
    try:
        header = next(reader, None)
        if header is None:
            raise ManifestError(f"{path}: empty; it needs a header line naming the columns {', '.join(required)}")
        _check_cells(path, 1, header)
        _check_header(path, header, required)
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue
            _check_cells(path, line, cells)
            if len(cells) != len(header):
                raise ManifestError(f"{path}:{line}: {len(cells)} field(s) but the header has {len(header)} "
                                    f"({','.join(header)}); give every row one value per column")
            rows.append((line, dict(zip(header, cells))))
    except csv.Error as e:
        if "end of data" in str(e):
            raise ManifestError(f"{path}:{start}: a quote opened on this line is never closed; close it or remove "
                                "it") from None
        raise ManifestError(f"{path}:{start}: malformed CSV ({e}); check the quotes on that line") from None
    if not rows:
        raise ManifestError(f"{path}: lists no clips (only a header); add one row per clip")
    return rows


def _check_header(path: Path, header: list[str], required: Sequence[str]) -> None:
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ManifestError(f"{path}:1: column(s) {', '.join(map(repr, repeated))} named twice in the header; "
                            "name every column once")
    absent = [c for c in required if c not in header]
    if absent:
        found = ", ".join(repr(c) for c in header) or "none"
        raise ManifestError(f"{path}:1: missing column(s) {', '.join(absent)} (found: {found}); "
                            f"the header line must name {', '.join(required)}")


def read_tsv(path: Path, min_fields: int, max_fields: int, columns: str) -> list[tuple[int, list[str]]]:
    """Rows of a tab-separated DCASE list (no quoting) as ``(line number, fields)``.

    The first field is an audio file; a first line whose first field is not one (a header) is
    skipped. ``columns`` describes the expected fields for messages, e.g.
    ``"[audio file][tab][label]"``.
    """
    rows: list[tuple[int, list[str]]] = []
    first = True
    for line, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        fields = text.split("\t")
        if first and Path(fields[0].strip()).suffix.lower() not in AUDIO_SUFFIXES:
            first = False
            continue  # a header line
        first = False
        if not min_fields <= len(fields) <= max_fields or not fields[0].strip():
            raise ManifestError(f"{path}:{line}: {len(fields)} tab-separated field(s) {text[:60]!r}; "
                                f"each line must be {columns}")
        rows.append((line, [f.strip() for f in fields]))
    return rows


def parse_fold(value: str, path: Path, line: int, column: str = "fold") -> int:
    """A fold number (an integer >= 1) from a table cell; :class:`ManifestError` otherwise."""
    try:
        fold = int(value)
    except (TypeError, ValueError):
        raise ManifestError(f"{path}:{line}: {column} {value!r} is not a whole number; number the folds 1, 2, ...") \
            from None
    if fold < 1:
        raise ManifestError(f"{path}:{line}: {column} {fold} is not a fold number; folds are numbered from 1 "
                            "(leave the fold column out for data without folds)")
    return fold
