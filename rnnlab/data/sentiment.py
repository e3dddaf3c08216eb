"""Sentence classification data: SST-2 at sentence level, or any CSV/TSV file of text and label.

Sentences are lower-cased and split into words and punctuation; the vocabulary comes from the training
split (words seen at least ``min_freq`` times; id 0 is padding, 1 unknown). Batches are padded,
batch-first token ids (B, T) with the length of each sentence, which the model packs.

A CSV is read strictly, as a silently misread file would train on wrong labels: a row whose fields do not match the
header (an unquoted comma in a text), an empty text or label cell, and one label spelled two ways ('1' and '1.0',
'pos' and 'Pos') are refused with the file and line; the spaces around a label are dropped. Each of the train, val
and test splits holds at least one row.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ..errors import DataError
from .files import read_csv, read_text
from .sampling import ProcessShare, SplitLoaders, check_split_fractions
from .sources import SOURCES, locate

TOKEN = re.compile(r"[\w']+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``."""
    return TOKEN.findall(text.lower())


def read_sst2(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """The stsa.binary.{train,dev,test} files: a label, a space, the sentence."""
    splits = {}
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        file, rows = folder / f"stsa.binary.{name}", []
        for n, line in enumerate(read_text(file).splitlines(), 1):
            label, _, text = line.partition(" ")
            if not text or label not in ("0", "1"):
                raise DataError(f"{file} line {n}: expected '<0|1> <sentence>'")
            rows.append((text, label))
        if not rows:
            raise DataError(f"{file} holds no sentence; delete it to download it again, or replace it")
        splits[split] = rows
    return splits


def read_table(path: str, text_column: str, label_column: str, fractions: tuple[float, float],
               seed: int) -> dict[str, list[tuple[str, str]]]:
    """A CSV (or TSV, by suffix) file with a header, shuffled with ``seed`` and cut into train/val/test of at least
    one row each. Labels are read without the spaces around them; an empty text or label cell and two spellings of
    one label are refused (see ``check_label_spellings``)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data.path={path!r} is not a file; point it at a CSV or TSV file with a header row")
    header, lines = read_csv(file)
    for key, column in (("data.text_column", text_column), ("data.label_column", label_column)):
        if column not in header:
            raise DataError(f"{file} has no column {column!r} (columns: {header}); set {key}")
    rows, first_line = [], {}  # (text, label) pairs; the line each label first appears on
    t, y = header.index(text_column), header.index(label_column)
    for line, row in lines:
        text, label = row[t], row[y].strip()
        for column, value in ((text_column, text), (label_column, label)):
            if not value.strip():
                raise DataError(f"{file} line {line}: the {column!r} cell is empty; fill it in or remove the line")
        rows.append((text, label))
        first_line.setdefault(label, line)
    check_label_spellings(file, first_line)
    n = len(rows)
    if n < 3:
        raise DataError(f"{file} has {n} rows; a train/val/test split needs at least 3")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    rows = [rows[i] for i in order]
    a = min(max(1, int(n * fractions[0])), n - 2)  # each split keeps at least one row
    b = min(max(a + 1, int(n * (fractions[0] + fractions[1]))), n - 1)
    return {"train": rows[:a], "val": rows[a:b], "test": rows[b:]}


def label_key(label: str) -> float | str:
    """What the spellings of one label share: its number ('1', '1.0', '01') or its letters in any case."""
    try:
        return float(label)
    except ValueError:
        return label.casefold()


def check_label_spellings(file: Path, first_line: dict[str, int]) -> None:
    """Refuse two labels that are one class spelled two ways ('1' and '1.0', 'pos' and 'Pos'), which would train
    as two classes; ``first_line`` maps each label to the line it first appears on."""
    seen: dict[float | str, str] = {}
    for label, line in first_line.items():
        other = seen.setdefault(label_key(label), label)
        if other != label:
            raise DataError(f"{file}: the labels {other!r} (line {first_line[other]}) and {label!r} (line {line}) look "
                            "like one class written two ways and would train as two classes; write each class's "
                            "label one way")


class SentimentData(SplitLoaders, L.LightningDataModule):
    """Sentences and labels -> padded batches ``(tokens (B, T), lengths (B,), labels (B,))``. ``vocab`` and
    ``labels`` come from the training split unless set before ``setup`` (a trained model's, for evaluation).
    ``seed`` orders the training batches; ``split_seed`` shuffles a CSV's rows before the split, apart, so that a
    sweep over the run's seed compares models on the same test rows."""

    learned = ("vocab", "labels")  # travel in checkpoints, so evaluation maps words and labels as in training

    def __init__(self, source: str = "sst2", path: str | None = None, data_dir: str | None = None,
                 text_column: str = "text", label_column: str = "label", split_fractions=(0.8, 0.1),
                 batch_size: int = 32, min_freq: int = 1, max_length: int = 200, seed: int = 0,
                 split_seed: int = 0):
        super().__init__()
        check_split_fractions(split_fractions)
        self.save_hyperparameters()
        self.vocab: list[str] = []
        self.labels: list[str] = []
        self.splits: dict[str, list] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        if hp.source == "sst2":
            where = locate(SOURCES["sst2"], hp.path, hp.data_dir)
            raw = read_sst2(where)
        elif hp.source == "csv":
            if hp.path is None:
                raise DataError("data=sentiment_csv needs data.path: a CSV or TSV file with a header row")
            where = Path(hp.path).expanduser()
            raw = read_table(hp.path, hp.text_column, hp.label_column, tuple(hp.split_fractions), hp.split_seed)
        else:
            raise DataError(f"data.source must be 'sst2' or 'csv'; got {hp.source!r}")
        counts = Counter(w for text, _ in raw["train"] for w in tokenize(text))
        if not self.vocab:
            self.vocab = ["<pad>", "<unk>", *sorted(w for w, c in counts.items() if c >= hp.min_freq)]
        trained = bool(self.labels)  # a trained model's labels, set by rnnlab-eval
        if not trained:
            self.labels = sorted({label for _, label in raw["train"]})
        if len(self.labels) < 2:
            raise DataError(f"{where}: the training split has {len(self.labels)} distinct label(s); need at least 2 "
                            f"(check data.label_column={hp.label_column!r})")
        index = {w: i for i, w in enumerate(self.vocab)}
        label_index = {label: i for i, label in enumerate(self.labels)}
        for split, rows in raw.items():
            unknown = sorted({label for _, label in rows} - label_index.keys())[:5]
            if unknown and trained:
                raise DataError(f"{where}: the {split} split has labels {unknown} that the model was not trained on "
                                f"(its labels: {self.labels}); evaluate it on data labelled as in training")
            if unknown:
                raise DataError(f"{where}: the {split} split has labels not in the training split: {unknown} (the "
                                f"training split has {self.labels}); a label on few rows can miss the training split: "
                                "remove those rows, or draw another split with data.split_seed")
            self.splits[split] = [
                (torch.tensor([index.get(w, 1) for w in tokenize(text)][: hp.max_length] or [1]),
                 label_index[label]) for text, label in rows
            ]

    @property
    def dims(self) -> dict:
        """Sizes the model needs from the data: the vocabulary's and the number of classes."""
        return {"vocab_size": len(self.vocab), "num_classes": len(self.labels)}

    @staticmethod
    def collate(items: list[tuple[torch.Tensor, int]]):
        """(token ids, label) pairs -> padded tokens (B, T), lengths (B,) and labels (B,)."""
        lengths = torch.tensor([len(t) for t, _ in items])
        tokens = torch.nn.utils.rnn.pad_sequence([t for t, _ in items], batch_first=True)  # (B, T)
        return tokens, lengths, torch.tensor([y for _, y in items])

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        data = self.splits[split]
        sampler = ProcessShare(len(data), self.hparams.seed if shuffle else None)
        return DataLoader(data, batch_size=self.hparams.batch_size, sampler=sampler, collate_fn=self.collate,
                          generator=torch.Generator())
