"""Text corpora and tokenizers for language modeling.

Corpora come as (train, valid, test) strings: the embedded one (Python's own standard library source,
which every Python install carries, so it needs no download), Tiny Shakespeare (one file split 90/5/5),
the Penn Treebank (``data=ptb``: Mikolov's file names ``ptb.train.txt``, ``ptb.valid.txt``,
``ptb.test.txt``), and any folder of plain-text files in that layout (``data=text_folder``: any names ending
in ``train.txt``, ``valid.txt`` and ``test.txt``, such as ``train.txt`` or ``wiki.train.txt``). Tokenizers
are character or word level; word level appends ``<eos>`` to each line as Zaremba et al. do for PTB.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import ClassVar

import torch

from ..errors import DataError
from .files import read_text
from .sources import SOURCES, locate

SPLITS = ("train", "valid", "test")


def split_text(text: str, fractions: tuple[float, float] = (0.9, 0.05)) -> tuple[str, str, str]:
    """Cut one text into train/valid/test at line boundaries by the given train and valid fractions."""
    n = len(text)
    a = text.rfind("\n", 0, int(n * fractions[0])) + 1
    b = text.rfind("\n", 0, int(n * (fractions[0] + fractions[1]))) + 1
    return text[:a], text[a:b], text[b:]


def stdlib_corpus(max_chars: int | None) -> tuple[str, str, str]:
    """The first ``max_chars`` characters (None: all) of the standard library's top-level modules, in name order."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(lib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    if total == 0:
        raise DataError(f"no Python source found in {lib}; use data=tinyshakespeare or data=text_folder")
    return split_text("".join(parts)[:max_chars])


def folder_corpus(path: str, max_chars: int | None = None) -> tuple[str, str, str]:
    """The texts of the first files of a folder whose names end in ``train.txt``, ``valid.txt`` and ``test.txt``
    (``ptb.train.txt`` or ``train.txt`` style; ``data=ptb`` has already checked for Mikolov's names), each cut to
    its first ``max_chars`` characters (None: whole)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.path={path!r} is not a folder; point it at one holding train/valid/test text files")
    texts = []
    for split in SPLITS:
        found = sorted(folder.glob(f"*{split}.txt"))
        if not found:
            raise DataError(f"{folder} has no *{split}.txt file; it needs train, valid and test text files")
        text = read_text(found[0])
        if not text.strip():
            raise DataError(f"{found[0]} is empty; every split needs text")
        texts.append(text[:max_chars])
    return tuple(texts)


def load_corpus(name: str, path: str | None, data_dir: str | None, max_chars: int | None) -> tuple[str, str, str]:
    """The (train, valid, test) texts of corpus ``name``: "stdlib", "tinyshakespeare", "ptb" or "folder", from the
    first ``max_chars`` characters of its text before it is split (a folder's: of each split's file; None: all)."""
    if name == "stdlib":
        if path is not None:
            raise DataError(f"data.path={path!r} is not read by the stdlib corpus (Python's own library, on every "
                            "machine); drop data.path, or train on your own text with data=text_folder "
                            "data.path=DIR (a folder of train, valid and test .txt files)")
        return stdlib_corpus(max_chars)
    if name == "folder":
        if path is None:
            raise DataError("data=text_folder needs data.path: a folder with train/valid/test text files")
        return folder_corpus(path, max_chars)
    if name not in SOURCES:
        raise DataError(f"unknown corpus {name!r}; choose stdlib, tinyshakespeare, ptb or folder")
    folder = locate(SOURCES[name], path, data_dir)
    if name == "ptb":
        return folder_corpus(str(folder), max_chars)
    text = read_text(folder / "input.txt")
    if not text.strip():
        raise DataError(f"{folder / 'input.txt'} is empty")
    return split_text(text[:max_chars])


class Tokenizer:
    """Maps text to integer ids and back; ``level`` is "char" or "word". Built from the training text."""

    UNKNOWN: ClassVar[dict[str, str]] = {"char": "\ufffd", "word": "<unk>"}  # id 0: a symbol not seen in training
    EOS = "<eos>"

    def __init__(self, level: str, itos: list[str]):
        if level not in self.UNKNOWN:
            raise DataError(f"data.level must be 'char' or 'word'; got {level!r}")
        self.level, self.itos = level, list(itos)
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    @classmethod
    def fit(cls, level: str, text: str) -> Tokenizer:
        """The vocabulary of ``text``: unknown symbol first, then the symbols in sorted order."""
        if level not in cls.UNKNOWN:
            raise DataError(f"data.level must be 'char' or 'word'; got {level!r}")
        symbols = set(text) if level == "char" else set(text.split()) | {cls.EOS}
        unk = cls.UNKNOWN[level]
        return cls(level, [unk, *sorted(symbols - {unk})])

    def __len__(self) -> int:
        return len(self.itos)

    def symbols(self, text: str) -> list[str]:
        if self.level == "char":
            return list(text)
        return [w for line in text.splitlines() for w in [*line.split(), self.EOS]]

    def encode(self, text: str, final_eos: bool = True) -> torch.Tensor:
        """Ids of ``text`` (0 for an unknown symbol). Without ``final_eos`` a word-level text that does not end
        with a newline gets no ``<eos>`` after its last line: a prompt whose line goes on."""
        symbols = self.symbols(text)
        if not final_eos and self.level == "word" and not text.endswith("\n"):
            symbols = symbols[:-1]
        unk = 0
        return torch.tensor([self.stoi.get(s, unk) for s in symbols], dtype=torch.long)

    def unknown(self, text: str) -> list[str]:
        """The distinct symbols of ``text`` outside the vocabulary (encode reads each as the unknown symbol), in
        order of appearance."""
        return list(dict.fromkeys(s for s in self.symbols(text) if s not in self.stoi))

    def continue_text(self, prompt: str, ids) -> str:
        """``prompt`` followed by the decoded ``ids``; word level puts a space between them where needed."""
        text = self.decode(ids)
        joined = self.level == "char" or not prompt or prompt[-1].isspace() or text[:1].isspace()
        return prompt + ("" if joined else " ") + text

    def decode(self, ids) -> str:
        words = [self.itos[int(i)] for i in ids]
        if self.level == "char":
            return "".join(words)
        return " ".join(words).replace(f" {self.EOS} ", "\n").replace(self.EOS, "\n")

    def state_dict(self) -> dict:
        return {"level": self.level, "itos": self.itos}

    @classmethod
    def from_state_dict(cls, state: dict) -> Tokenizer:
        return cls(state["level"], state["itos"])
