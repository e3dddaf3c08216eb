"""Data files that are not UTF-8: every reader names the file and line instead of a UnicodeDecodeError, and refuses
NUL bytes (UTF-16 read as UTF-8); a split too short for its batch names the split and the key to
lower; split fractions must leave every split something."""

import pytest

from rnnlab.data.forecasting import read_csv_table
from rnnlab.data.sentiment import read_table
from rnnlab.data.text import folder_corpus
from rnnlab.errors import DataError

LATIN1 = "caf\u00e9 cr\u00e8me\n".encode("latin-1")


def test_text_csv_and_table_readers_require_utf8(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_bytes(b"fine text\n" + (LATIN1 if split == "valid" else b""))
    (tmp_path / "s.csv").write_bytes(b"date,target\n1,2\n" + LATIN1)
    (tmp_path / "r.csv").write_bytes(b"text,label\ngood,1\n" + LATIN1)
    readers = [(lambda: folder_corpus(str(tmp_path)), "valid.txt line 2"),
               (lambda: read_csv_table(tmp_path / "s.csv", "date"), "s.csv line 3"),
               (lambda: read_table(str(tmp_path / "r.csv"), "text", "label", (0.8, 0.1), 0), "r.csv line 3")]
    for read, where in readers:
        with pytest.raises(DataError, match=rf"{where} is not UTF-8 .*must be UTF-8"):
            read()


def test_a_utf16_text_is_refused_not_read_as_nul_characters(tmp_path):
    """UTF-16 without a byte order mark is valid UTF-8 with a NUL beside every ASCII character: it trained a
    vocabulary of NUL-laced words, and every word of the UTF-8 valid and test files was unknown."""
    (tmp_path / "train.txt").write_bytes("the cat\nsat\n".encode("utf-16-le"))
    for split in ("valid", "test"):
        (tmp_path / f"{split}.txt").write_text("the cat\n")
    with pytest.raises(DataError, match=r"train.txt line 1 holds NUL bytes \(character 1\); data files must be UTF-8 "
                                        r"text, and this one is probably UTF-16 \(or binary\): convert it, for example "
                                        r"with  iconv -f utf-16le -t utf-8 train.txt > utf8_train.txt"):
        folder_corpus(str(tmp_path))


def test_line_ends_are_normalised(tmp_path):
    (tmp_path / "s.csv").write_bytes(b'date,target\r\n1,2\r\n2,3\r\n')
    columns, values = read_csv_table(tmp_path / "s.csv", "date")
    assert columns == ["target"] and values.flatten().tolist() == [2.0, 3.0]


def test_a_split_too_short_for_its_streams_names_the_split_and_the_key():
    import torch

    from rnnlab.data.language_modeling import batchify

    assert batchify(torch.arange(10), 4).shape == (2, 4)
    with pytest.raises(DataError, match=r"the val split has 5 tokens, too few for 4 streams of at least 2; lower "
                                        r"data.eval_batch_size or use a longer text \(data.max_chars\)"):
        batchify(torch.arange(5), 4, "val")
    with pytest.raises(DataError, match=r"the train split has 3 tokens.*lower data.batch_size"):
        batchify(torch.arange(3), 2)


@pytest.mark.parametrize("fractions", [(0.9, 0.2), (0.5, 0.5), (0.8, 0.0), (0.8,), 0.8, (0.8, "x"), (True, 0.1)])
def test_split_fractions_leave_every_split_something(fractions):
    """data.split_fractions (forecasting, sentiment CSVs): [train, val] above 0 with a sum below 1; 0.9 and 0.2
    ran with an empty test split before."""
    from rnnlab.data.forecasting import ForecastData
    from rnnlab.data.sentiment import SentimentData

    for make in (ForecastData, lambda split_fractions: SentimentData(source="csv", split_fractions=split_fractions)):
        with pytest.raises(DataError, match=r"data.split_fractions must be \[train, val\], two fractions above 0 "
                                            r"with a sum below 1 \(the test split takes the rest\); got "):
            make(split_fractions=fractions)
