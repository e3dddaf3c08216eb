"""Text corpora and tokenizers for language modeling.

Corpora come as (train, valid, test) strings: the embedded one (Python's own standard library source,
which every Python install carries, so it needs no download), Tiny Shakespeare (one file split 90/5/5),
the Penn Treebank (``data=ptb``: exactly Mikolov's ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``, so
the ``ptb.char.*.txt`` files beside them are never read), and any folder of plain-text files in that layout
(``data=text_folder``: see ``split_files``). Tokenizers are character or word level; word level appends ``<eos>``
to each line as Zaremba et al. do for PTB.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path
from typing import ClassVar

import torch

from ..errors import DataError
from .files import read_text
from .sources import SOURCES, locate

SPLITS = ("train", "valid", "test")


def split_text(text: str, fractions: tuple[float, float] = (0.9, 0.05)) -> tuple[str, str, str]:
    """Cut one text into train/valid/test by the given train and valid fractions of its characters. Each cut moves
    back to the last line end in the last tenth of the split before it, so every split keeps at least 90% of its
    share; where that stretch has no line end (a text with few or no newlines) the cut falls at the exact
    character."""
    n = len(text)
    a = _cut(text, 0, int(n * fractions[0]))
    b = _cut(text, a, int(n * (fractions[0] + fractions[1])))
    return text[:a], text[a:b], text[b:]


def _cut(text: str, start: int, end: int) -> int:
    """Just after the last line end in the last tenth of ``text[start:end]``; ``end`` when there is none."""
    line_end = text.rfind("\n", start + (end - start) * 9 // 10, end)
    return end if line_end < 0 else line_end + 1


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


def split_files(folder: Path, file_prefix: str | None = None) -> list[Path]:
    """The train, valid and test files of ``folder``: ``<file_prefix>train.txt``, ``<file_prefix>valid.txt`` and
    ``<file_prefix>test.txt`` when ``file_prefix`` (``data.file_prefix``) is given; otherwise per split the exact
    name (``train.txt``), else the one file named like ``wiki.train.txt`` (any prefix ending in ``.``, ``_`` or
    ``-``; ``latest.txt`` is no test file). Several files that could be a split (``ptb.train.txt`` and
    ``ptb.char.train.txt``) are refused, naming them and the data.file_prefix values that choose."""
    return [_split_file(folder, split, file_prefix) for split in SPLITS]


def _split_file(folder: Path, split: str, file_prefix: str | None) -> Path:
    """The file of one split, as ``split_files`` chooses it."""
    exact = folder / f"{file_prefix or ''}{split}.txt"
    if file_prefix is not None and not exact.is_file():
        raise DataError(f"data.file_prefix={file_prefix!r}: {folder} has no {exact.name}; set data.file_prefix to "
                        f"the part of the split files' names before {split}.txt, or to null to find them")
    if exact.is_file():
        return exact
    found = sorted(p for p in folder.iterdir() if p.is_file() and re.fullmatch(rf".+[._-]{split}\.txt", p.name))
    if not found:
        raise DataError(f"{folder} has no {split}.txt (nor a file named like wiki.{split}.txt); it needs train, valid "
                        "and test text files")
    if len(found) > 1:
        choices = " or ".join(f"data.file_prefix={p.name[: -len(split) - 4]}" for p in found)
        raise DataError(f"{folder} has {len(found)} files that could be the {split} split "
                        f"({', '.join(p.name for p in found)}); choose with {choices}")
    return found[0]


def folder_corpus(path: str, max_chars: int | None = None, file_prefix: str | None = None) -> tuple[str, str, str]:
    """The texts of the train, valid and test files of the folder ``path`` (chosen by ``split_files``), each cut to
    its first ``max_chars`` characters (None: whole)."""
    folder = data_folder(path, "train, valid and test text files")
    texts = []
    for file in split_files(folder, file_prefix):
        text = read_text(file)
        if not text.strip():
            raise DataError(f"{file} is empty; every split needs text")
        texts.append(text[:max_chars])
    return tuple(texts)


def data_folder(path: str, holding: str) -> Path:
    """``data.path`` as a folder; a file (the data set's own file, say) or a missing path is refused, saying which
    folder to give."""
    folder = Path(path).expanduser()
    if folder.is_file():
        raise DataError(f"data.path={path!r} is a file; data.path must be the folder holding {holding}: set "
                        f"data.path={folder.parent}")
    if not folder.is_dir():
        raise DataError(f"data.path={path!r} is not a folder; point it at one holding {holding}")
    return folder


def load_corpus(name: str, path: str | None, data_dir: str | None, max_chars: int | None,
                file_prefix: str | None = None) -> tuple[str, str, str]:
    """The (train, valid, test) texts of corpus ``name``: "stdlib", "tinyshakespeare", "ptb" or "folder", from the
    first ``max_chars`` characters of its text before it is split (a folder's: of each split's file; None: all);
    ``file_prefix`` chooses a folder's split files (``split_files``)."""
    if file_prefix is not None and name != "folder":
        raise DataError(f"data.file_prefix={file_prefix!r} is read only by data=text_folder, not by the {name} "
                        "corpus; drop it")
    if name == "stdlib":
        if path is not None:
            raise DataError(f"data.path={path!r} is not read by the stdlib corpus (Python's own library, on every "
                            "machine); drop data.path, or train on your own text with data=text_folder "
                            "data.path=DIR (a folder of train, valid and test .txt files)")
        return stdlib_corpus(max_chars)
    if name == "folder":
        if path is None:
            raise DataError("data=text_folder needs data.path: a folder with train/valid/test text files")
        return folder_corpus(path, max_chars, file_prefix)
    if name not in SOURCES:
        raise DataError(f"unknown corpus {name!r}; choose stdlib, tinyshakespeare, ptb or folder")
    if path is not None:
        data_folder(path, ", ".join(SOURCES[name].files))
    folder = locate(SOURCES[name], path, data_dir)
    if name == "ptb":  # exactly Mikolov's names: the folder may also hold ptb.char.*.txt
        return folder_corpus(str(folder), max_chars, "ptb.")
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
        """The characters of ``text``, or its words with ``<eos>`` after each line."""
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

    def unknown_count(self, text: str) -> int:
        """How many symbols of ``text`` are outside the vocabulary; the unknown symbol itself in the text (PTB's
        ``<unk>``) is in the vocabulary and does not count."""
        return sum(s not in self.stoi for s in self.symbols(text))

    def continue_text(self, prompt: str, ids) -> str:
        """``prompt`` followed by the decoded ``ids``; word level puts a space between them where needed."""
        text = self.decode(ids)
        joined = self.level == "char" or not prompt or prompt[-1].isspace() or text[:1].isspace()
        return prompt + ("" if joined else " ") + text

    def decode(self, ids) -> str:
        """The text of ``ids``: characters joined, or words joined by spaces with ``<eos>`` as a line end."""
        words = [self.itos[int(i)] for i in ids]
        if self.level == "char":
            return "".join(words)
        lines = [[]]  # the words of each line
        for word in words:
            if word == self.EOS:
                lines.append([])
            else:
                lines[-1].append(word)
        return "\n".join(" ".join(line) for line in lines)

    def state_dict(self) -> dict:
        """What a checkpoint stores of the tokenizer: its level and vocabulary."""
        return {"level": self.level, "itos": self.itos}

    @classmethod
    def from_state_dict(cls, state: dict) -> Tokenizer:
        """The tokenizer that ``state_dict`` gave ``state``."""
        return cls(state["level"], state["itos"])
