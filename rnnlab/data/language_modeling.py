"""Lightning data module for language modeling with truncated backpropagation through time.

The token stream of each split is cut into ``batch_size`` contiguous streams (Zaremba et al.'s
``batchify``): batch k holds tokens [k*bptt, (k+1)*bptt) of every stream, so a hidden state carried from
batch k to batch k+1 continues the same text. Batches therefore come in order, never shuffled; with
several processes each takes its own share of the streams (``shards_per_process``), and rnnlab-train
turns off Lightning's distributed sampler, which would hand each process shuffled chunks.

A split with more than ``UNKNOWN_WARNING`` of its tokens outside the vocabulary (other text than the training
text, another language or encoding, a checkpoint evaluated on other data) is warned about, once per split: every
such token reads as the one unknown symbol, so the split's perplexity no longer measures its text.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError
from .text import Tokenizer, load_corpus

SPLITS = ("train", "val", "test")
UNKNOWN_WARNING = 0.05  # share of unknown tokens above which a split is warned about; held-out text of the training
# corpus has far less (PTB, whose vocabulary holds <unk>, none)


def batchify(ids: torch.Tensor, streams: int, split: str = "train") -> torch.Tensor:
    """(N,) token ids of ``split`` -> (N // streams, streams): column j is the j-th contiguous slice of the text."""
    n = ids.numel() // streams
    if n < 2:
        key = "data.batch_size" if split == "train" else "data.eval_batch_size"
        raise DataError(
            f"the {split} split has {ids.numel()} tokens, too few for {streams} streams of at least 2; lower {key} "
            "or use a longer text (data.max_chars)"
        )
    return ids[: n * streams].view(streams, n).t().contiguous()


class BPTTChunks(Dataset):
    """Consecutive (input, target) chunks of ``bptt`` steps from a (N, streams) token matrix."""

    def __init__(self, data: torch.Tensor, bptt: int):
        self.data, self.bptt = data, bptt

    def __len__(self) -> int:
        return (self.data.shape[0] - 2) // self.bptt + 1

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = k * self.bptt
        length = min(self.bptt, self.data.shape[0] - 1 - start)
        return self.data[start : start + length], self.data[start + 1 : start + 1 + length]  # (T, B) each


class LanguageModelData(L.LightningDataModule):
    """Text corpus -> TBPTT batches of token ids, time-major (T, B)."""

    shards_per_process = True  # each process reads its own streams in order; no distributed sampler
    learned = ("tokenizer",)  # fitted on the training text; travels in checkpoints for rnnlab-eval

    def __init__(self, corpus: str = "stdlib", level: str = "char", path: str | None = None,
                 data_dir: str | None = None, batch_size: int = 32, eval_batch_size: int = 16, bptt: int = 64,
                 max_chars: int | None = 1_000_000, file_prefix: str | None = None):
        super().__init__()
        if bptt < 1 or batch_size < 1 or eval_batch_size < 1:
            raise DataError(f"data.bptt, data.batch_size and data.eval_batch_size must be >= 1; got {bptt}, "
                            f"{batch_size}, {eval_batch_size}")
        if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
            raise DataError(f"data.max_chars must be an int >= 1, or null for the whole text; got {max_chars!r}")
        self.save_hyperparameters()
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, torch.Tensor] = {}

    def setup(self, stage: str | None = None) -> None:
        """Load and encode the splits; the vocabulary comes from the training text unless a tokenizer was
        given (a trained model's, so that evaluation maps text to the ids the model was trained on)."""
        if self.splits:
            return
        hp = self.hparams
        texts = load_corpus(hp.corpus, hp.path, hp.data_dir, hp.max_chars, hp.file_prefix)
        if self.tokenizer is None:
            self.tokenizer = Tokenizer.fit(hp.level, texts[0])
        elif self.tokenizer.level != hp.level:  # a trained model's, which reads its own level only
            raise DataError(f"data.level={hp.level}: the model's vocabulary is {self.tokenizer.level} level, and it "
                            f"reads text only that way; drop data.level (or set it to {self.tokenizer.level})")
        self.splits = {name: self.tokenizer.encode(text) for name, text in zip(SPLITS, texts, strict=True)}
        for name, text in zip(SPLITS, texts, strict=True):
            unknown, total = self.tokenizer.unknown_count(text), self.splits[name].numel()
            if total and unknown / total > UNKNOWN_WARNING:
                rank_zero_warn(
                    f"the {name} split has {unknown / total:.1%} unknown tokens ({unknown} of {total} are not in the "
                    "vocabulary of the training text and all read as one unknown symbol): its perplexity is not "
                    "comparable with other runs'; check that it is the same kind of text as the training text "
                    "(language, tokenization, encoding)"
                )

    @property
    def dims(self) -> dict:
        """Sizes the model needs from the data: here the vocabulary size."""
        return {"vocab_size": len(self.tokenizer)}

    def _loader(self, split: str, streams: int) -> DataLoader:
        data = batchify(self.splits[split], streams, split)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:  # each process its own streams
            data = data.tensor_split(trainer.world_size, dim=1)[trainer.global_rank]
        # a private generator: creating the iterator then draws nothing from the global random state, so a
        # resumed run's dropout masks match an uninterrupted run's
        return DataLoader(BPTTChunks(data, self.hparams.bptt), batch_size=None, shuffle=False,
                          generator=torch.Generator())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size)
