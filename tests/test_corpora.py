"""Which files a language-model corpus reads, how one text is split, and the warning for a split the training
vocabulary does not cover."""

import warnings

import pytest

from rnnlab.data.language_modeling import LanguageModelData
from rnnlab.data.text import load_corpus, split_text
from rnnlab.errors import DataError
from train_helpers import compose_config


def write(folder, files: dict[str, str]) -> str:
    """Write each file name: text of ``files`` into ``folder``; returns the folder as a string."""
    for name, text in files.items():
        (folder / name).write_text(text)
    return str(folder)


def mikolov_folder(folder):
    """Mikolov's PTB layout: word files and, beside them, the same text as characters (``_`` for a space)."""
    words = {split: f"the {split} words <unk> here\n" * 50 for split in ("train", "valid", "test")}
    return write(folder, {**{f"ptb.{s}.txt": t for s, t in words.items()},
                          **{f"ptb.char.{s}.txt": " ".join(t.replace(" ", "_")) for s, t in words.items()}})


def test_ptb_reads_mikolovs_word_files_not_the_char_files_beside_them(tmp_path):
    """The char files sort first; a glob for *train.txt took ptb.char.train.txt and trained a word model on them."""
    path = mikolov_folder(tmp_path)
    train, valid, test = load_corpus("ptb", path, None, None)
    assert train.startswith("the train words") and valid.startswith("the valid") and test.startswith("the test")


def test_text_folder_refuses_several_files_for_a_split_and_names_the_key(tmp_path):
    path = mikolov_folder(tmp_path)
    with pytest.raises(DataError, match=r"has 2 files that could be the train split \(ptb.char.train.txt, "
                                        r"ptb.train.txt\); choose with data.file_prefix=ptb.char. or "
                                        r"data.file_prefix=ptb.$"):
        load_corpus("folder", path, None, None)
    assert load_corpus("folder", path, None, None, "ptb.char.")[0].startswith("t h e _ t r a i n")
    assert load_corpus("folder", path, None, None, "ptb.")[0].startswith("the train")
    with pytest.raises(DataError, match=r"data.file_prefix='wiki.': .* has no wiki.train.txt; set data.file_prefix"):
        load_corpus("folder", path, None, None, "wiki.")
    with pytest.raises(DataError, match=r"data.file_prefix='ptb.' is read only by data=text_folder"):
        load_corpus("ptb", path, None, None, "ptb.")
    assert compose_config(tmp_path, "data=text_folder", f"data.path={path}", "data.file_prefix=ptb.char.",
                          tiny=False).data.file_prefix == "ptb.char."


def test_text_folder_takes_exact_names_first_and_no_stray_file(tmp_path):
    """a.train.txt won over train.txt, and latest.txt (which ends in test.txt) became the test split."""
    path = write(tmp_path, {"train.txt": "train\n", "a.train.txt": "stray\n", "valid.txt": "valid\n",
                            "test.txt": "test\n", "latest.txt": "release notes\n"})
    assert load_corpus("folder", path, None, None) == ("train\n", "valid\n", "test\n")
    (tmp_path / "test.txt").unlink()
    with pytest.raises(DataError, match=r"has no test.txt \(nor a file named like wiki.test.txt\)"):
        load_corpus("folder", path, None, None)
    other = tmp_path / "wiki"
    other.mkdir()
    path = write(other, {"wiki.train.txt": "a\n", "wiki_valid.txt": "b\n", "wiki-test.txt": "c\n"})
    assert load_corpus("folder", path, None, None) == ("a\n", "b\n", "c\n")


@pytest.mark.parametrize(("corpus", "name"), [("tinyshakespeare", "input.txt"), ("ptb", "ptb.train.txt"),
                                              ("folder", "train.txt")])
def test_data_path_at_a_file_names_the_folder_to_give(tmp_path, corpus, name):
    (tmp_path / name).write_text("text\n")
    with pytest.raises(DataError, match=rf"data.path='.*{name}' is a file; data.path must be the folder holding .*: "
                                        rf"set data.path={tmp_path}$"):
        load_corpus(corpus, str(tmp_path / name), None, None)


def test_a_text_without_line_ends_is_split_at_characters():
    """Tiny Shakespeare on one line gave a train split of 0 tokens: the cuts looked only for line ends."""
    assert [len(t) for t in split_text("x" * 60_000)] == [54_000, 3_000, 3_000]
    # a line end far before the cut (before the split's last tenth) does not pull it there
    assert [len(t) for t in split_text("line\n" + "x" * 60_000)] == [54_004, 3_000, 3_001]
    lines = split_text("a line\n" * 1000)
    assert all(t.endswith("\n") for t in lines) and sum(map(len, lines)) == 7000  # lines stay whole where they can


def test_a_split_the_vocabulary_does_not_cover_is_warned_about(tmp_path):
    train = "the cat sat on the mat <unk>\n" * 40
    path = write(tmp_path, {"train.txt": train, "valid.txt": "the zebra quark\n" * 10, "test.txt": "the cat\n" * 10})
    data = LanguageModelData(corpus="folder", level="word", path=path, max_chars=None)
    with pytest.warns(UserWarning) as caught:
        data.setup()
    assert [str(w.message) for w in caught] == [
        "the val split has 50.0% unknown tokens (20 of 40 are not in the vocabulary of the training text and all read "
        "as one unknown symbol): its perplexity is not comparable with other runs'; check that it is the same kind "
        "of text as the training text (language, tokenization, encoding)"]
    # PTB's own <unk> is a word of its vocabulary: a split full of it is no warning
    write(tmp_path, {"valid.txt": "<unk> <unk> cat\n" * 10})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LanguageModelData(corpus="folder", level="word", path=path, max_chars=None).setup()
