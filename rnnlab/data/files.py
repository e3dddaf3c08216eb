"""Reading the data sets' text files: UTF-8 only, with an error that names the file and line otherwise."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def read_text(path: Path) -> str:
    """The text of ``path`` decoded as UTF-8, with ``\\r\\n`` and ``\\r`` line ends read as ``\\n``."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path} line {line} is not UTF-8 (byte {err.start}: {err.reason}); data files must be UTF-8: convert "
            f"it, for example with  iconv -f latin1 -t utf-8 {path.name} > utf8_{path.name}"
        ) from err
    return text.replace("\r\n", "\n").replace("\r", "\n")
