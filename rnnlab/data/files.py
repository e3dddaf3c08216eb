"""Reading the data sets' text and CSV files: UTF-8 only, with an error that names the file and line otherwise."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import DataError

BOM = "\ufeff"  # a byte-order mark, which some editors (Excel's "CSV UTF-8") write at the start of a file
DELIMITERS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}  # what a one-column header is checked for


def read_text(path: Path) -> str:
    """The text of ``path`` decoded as UTF-8, without a leading byte-order mark, with ``\\r\\n`` and ``\\r`` line
    ends read as ``\\n``; refused where it holds NUL characters, which no text has: a UTF-16 file without a byte
    order mark decodes as UTF-8 with a NUL beside every ASCII character."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path} line {line} is not UTF-8 (byte {err.start}: {err.reason}); data files must be UTF-8: convert "
            f"it, for example with  iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name}"
        ) from err
    text = text.removeprefix(BOM).replace("\r\n", "\n").replace("\r", "\n")
    if (nul := text.find("\0")) >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(
            f"{path} line {line} holds NUL bytes (character {nul}); data files must be UTF-8 text, and this one is "
            f"probably UTF-16 (or binary): convert it, for example with  iconv -f utf-16le -t utf-8 {path.name} > "
            f"utf8_{path.name}"
        )
    return text


def csv_delimiter(path: Path) -> str:
    """The field delimiter of a table: a tab in a .tsv or .tab file, a comma in any other."""
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the rows of a CSV file (tab-separated by its suffix, see ``csv_delimiter``), each row with the
    number of the line it starts on. Blank lines at the end are ignored; an empty file, a header that is one column
    because the file uses another delimiter, a repeated column name and a row whose fields do not match the header
    (a blank line inside the file, an unquoted delimiter in a text) are refused, naming the file and line."""
    text, delimiter = read_text(path), csv_delimiter(path)
    if not text.strip():
        raise DataError(f"{path} is empty; it needs a header row naming the columns, then the data rows")
    limit = csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # no field is longer than the file
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header, rows, start = next(reader), [], 2
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1  # a quoted field may span lines: the next row starts after this one
    finally:
        csv.field_size_limit(limit)
    _check_header(path, header, delimiter)
    while rows and len(rows[-1][1]) <= 1 and not "".join(rows[-1][1]).strip():  # blank lines at the end
        rows.pop()
    for line, row in rows:
        if len(row) != len(header):
            found = "a blank line" if not row else f"{len(row)} field{'s' * (len(row) > 1)}"
            fix = ("remove the blank line" if not row else f"quote each field that holds a {DELIMITERS[delimiter]}"
                   if len(row) > len(header) else "fill in the missing fields or remove the line")
            raise DataError(f"{path} line {line}: {found}, where the header has {len(header)} "
                            f"({delimiter.join(header)}); {fix}")
    return header, rows


def _check_header(path: Path, header: list[str], delimiter: str) -> None:
    """Refuse a blank first line, a header that looks split at another delimiter, and a repeated column name."""
    if not header:
        raise DataError(f"{path} line 1 is blank; the first line must be the header row naming the columns")
    other = next((d for d in DELIMITERS if d != delimiter and len(header) == 1 and d in header[0]), None)
    if other is not None:
        raise DataError(
            f"{path} line 1: the header {header[0]!r} is one column when split at each {DELIMITERS[delimiter]}; the "
            f"file looks {DELIMITERS[other]}-separated. rnnlab reads a .tsv or .tab file tab-separated and any other "
            "comma-separated: rename the file or convert its delimiter"
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path} line 1: the header names the column(s) {repeated} more than once; give every column "
                        "its own name")
