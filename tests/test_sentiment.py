"""The sentiment task end to end: a CSV file of text and labels, SST-2 when the shared data is present,
the errors of a malformed CSV, and the plots a run writes (the confusion matrix, the gradient norms)."""

import csv
import math
from pathlib import Path

import pytest
import torch

from rnnlab import evaluate
from rnnlab.analysis import StateRecorder
from rnnlab.data.sentiment import SentimentData, read_table
from rnnlab.errors import DataError
from rnnlab.train import train
from train_helpers import SHARED, compose_config, record_figures

SMALL = ["model.embedding_dim=8", "model.hidden_size=8", "data.batch_size=4"]


def _write_csv(path: Path, rows: int = 40, delimiter: str = ",") -> Path:
    words = {"pos": "great fine lovely good", "neg": "awful bad poor dull"}
    lines = [f"review{delimiter}sentiment"]
    for i in range(rows):
        label = "pos" if i % 2 else "neg"
        lines.append(f"this film is {words[label].split()[i % 4]} and {words[label].split()[(i + 1) % 4]}"
                     f"{delimiter}{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_csv_fast_dev_run(tmp_path, pooling):
    data = _write_csv(tmp_path / "reviews.tsv", delimiter="\t")
    cfg = compose_config(tmp_path, "model=sentiment", "data=sentiment_csv", f"data.path={data}",
                         "data.text_column=review", "data.label_column=sentiment", f"model.pooling={pooling}",
                         "debug=fast_dev_run", *SMALL, tiny=False)
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1 and "test/f1" in metrics
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()


@pytest.fixture(scope="module")
def run_figures(tmp_path_factory):
    """A fast_dev_run on a CSV of labels "neg" and "pos" (sentences of different lengths): its output folder, the
    figures it saved, by file name, and the gradient norms that the GradientNorms callback measured."""
    tmp = tmp_path_factory.mktemp("run")
    gradient_norms = StateRecorder.gradient_norms
    with pytest.MonkeyPatch.context() as patch:
        saved = record_figures(patch)
        patch.setattr(StateRecorder, "gradient_norms", lambda self, loss: saved.setdefault(
            "norms", gradient_norms(self, loss)))
        (tmp / "r.csv").write_text("review,sentiment\n" + "".join(f"a {'very ' * (i % 3)}{word} film,{label}\n"
                                                                   for i in range(20) for word, label in
                                                                   (("good", "pos"), ("bad", "neg"))))
        cfg = compose_config(tmp, "model=sentiment", "data=sentiment_csv", f"data.path={tmp / 'r.csv'}",
                             "data.text_column=review", "data.label_column=sentiment", "debug=fast_dev_run", *SMALL,
                             tiny=False)
        train(cfg)
    return tmp, saved


def test_the_confusion_matrix_names_the_labels(run_figures):
    ax = run_figures[1]["confusion_matrix.png"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["neg", "pos"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["neg", "pos"]


def test_gradient_norms_csv_holds_what_the_plot_draws(run_figures):
    """gradient_norms.csv and gradient_norms.png carry one statistic, the geometric mean over the batch of
    ||dL/dh_t|| (NaNs past a sentence's end skipped), and say so."""
    out, saved = run_figures
    with (out / "gradient_norms.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["layer", "index", "t", "geometric_mean_norm"]
    ax = saved["gradient_norms.png"].axes[0]
    assert "geometric mean over the batch" in ax.get_ylabel()
    (norms,) = saved["norms"].values()  # (directions, T, B), NaN past a sentence's end
    assert len(ax.lines) == len(norms) == 2 and norms.isnan().any()
    for index, (line, n) in enumerate(zip(ax.lines, norms, strict=True)):
        geometric_mean = torch.tensor([math.exp(sum(math.log(v) for v in step) / len(step))
                                       for step in (x[~x.isnan()].tolist() for x in n)], dtype=torch.float64)
        csv_values = torch.tensor([float(r["geometric_mean_norm"]) for r in rows if r["index"] == str(index)],
                                  dtype=torch.float64)
        torch.testing.assert_close(csv_values, geometric_mean)
        torch.testing.assert_close(torch.tensor(line.get_ydata(), dtype=torch.float64), geometric_mean)


@pytest.mark.skipif(not (SHARED / "sst2" / "stsa.binary.train").is_file(), reason="shared SST-2 data absent")
def test_sst2_experiment_fast_dev_run(tmp_path):
    cfg = compose_config(tmp_path, "experiment=sentiment_sst2", f"paths.data_dir={SHARED}", "debug=fast_dev_run",
                         *SMALL, tiny=False)
    assert "test/acc" in train(cfg)


def test_ddp_scores_every_sentence_once(tmp_path):
    """Under DDP (two CPU processes) the val and test splits are shared out without padding, so a split of an odd
    number of sentences gives the numbers one process gives (Lightning's distributed sampler repeated one)."""
    data = _write_csv(tmp_path / "reviews.csv", rows=43)  # 4 validation and 5 test sentences
    cfg = compose_config(tmp_path, "model=sentiment", "data=sentiment_csv", f"data.path={data}",
                         "data.text_column=review", "data.label_column=sentiment", "trainer=ddp_sim",
                         "trainer.max_epochs=1", "data.batch_size=2", *SMALL[:2], tiny=False)
    trained = train(cfg)
    (best,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    alone = evaluate.evaluate(str(best))
    for key in ("test/loss", "test/acc", "test/f1"):
        assert trained[key] == pytest.approx(alone[key], rel=1e-6), key


def test_process_shares_cover_a_split():
    """Training shares are padded to one length (every process takes as many steps), evaluation shares hold every
    item exactly once; one process takes the whole split in the seed's order, or in order."""
    from rnnlab.data.sampling import ProcessShare

    def shares(n, seed):
        out = []
        for rank in range(2):
            share = ProcessShare(n, seed)
            share.rank, share.world = rank, 2
            assert len(share) == len(list(share))
            out.append(list(share))
        return out

    evaluation = shares(5, None)
    assert evaluation == [[0, 2, 4], [1, 3]]
    training = shares(5, 3)
    assert [len(s) for s in training] == [3, 3] and set(training[0] + training[1]) == set(range(5))
    assert list(ProcessShare(5, 3)) == torch.randperm(5, generator=torch.Generator().manual_seed(3)).tolist()


def test_f1_is_macro_averaged_beyond_two_classes():
    """With three labels F1 is the mean of the classes' F1 (torchmetrics' multiclass default, the micro average,
    equals accuracy); always predicting the first class: F1 0.8 for it, 0 for the others."""
    from rnnlab.tasks import SentimentTask

    task = SentimentTask(vocab_size=5, num_classes=3, optimizer=None)
    f1, acc = task.metrics["test_f1"], task.metrics["test_acc"]
    labels = torch.tensor([0, 0, 0, 0, 1, 2])
    f1.update(torch.zeros(6, dtype=torch.long), labels)
    acc.update(torch.zeros(6, dtype=torch.long), labels)
    assert acc.compute().item() == pytest.approx(4 / 6)
    assert f1.compute().item() == pytest.approx(0.8 / 3)


def test_csv_split_does_not_follow_the_run_seed(tmp_path):
    """The run's seed orders the batches; a CSV's rows are split by split_seed, so a sweep over seed compares models
    on the same test rows."""
    path = str(_write_csv(tmp_path / "reviews.csv"))
    splits = []
    for seed, split_seed in ((1, 0), (2, 0), (1, 1)):
        data = SentimentData(source="csv", path=path, text_column="review", label_column="sentiment", seed=seed,
                             split_seed=split_seed)
        data.setup()
        splits.append({name: [(t.tolist(), label) for t, label in rows] for name, rows in data.splits.items()})
    assert splits[0] == splits[1] and splits[0]["test"] != splits[2]["test"]


@pytest.mark.parametrize(
    ("content", "overrides", "message"),
    [
        ("text,label\nfine,1\nbad,0\nok,1\n", ["data.label_column=stars"], r"no column 'stars'.*set data.label_column"),
        ("text,label\nfine,1\n", [], r"has 1 rows; a train/val/test split needs at least 3"),
        ("text,label\na,1\nb,1\nc,1\nd,1\n", [], r"1 distinct label\(s\); need at least 2"),
    ],
)
def test_malformed_csv(tmp_path, content, overrides, message):
    (tmp_path / "d.csv").write_text(content)
    cfg = compose_config(tmp_path, "model=sentiment", "data=sentiment_csv", f"data.path={tmp_path / 'd.csv'}",
                         "debug=fast_dev_run", *overrides, tiny=False)
    with pytest.raises(DataError, match=message):
        train(cfg)


def test_eval_reads_other_data_through_the_trained_vocabulary_and_plots_only_where_told(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = compose_config(run, "model=sentiment", "data=sentiment_csv", f"data.path={_write_csv(tmp_path / 'a.csv')}",
                         "data.text_column=review", "data.label_column=sentiment", "trainer.max_epochs=1",
                         "test=false", *SMALL, tiny=False)
    train(cfg)
    ckpt = run / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["labels"] == ["neg", "pos"] and "lovely" in saved["vocab"]
    other = tmp_path / "b.csv"  # a larger vocabulary: without the trained one, ids beyond the embedding
    other.write_text("review,sentiment\n" + "".join(f"word{i} other{i} great,pos\nword{i} awful,neg\n"
                                                    for i in range(30)))
    assert evaluate.main([str(ckpt), f"data.path={other}", "--plot-dir", str(tmp_path / "eval")]) == 0
    assert "test/acc = " in capsys.readouterr().out
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()
    assert not (run / "plots" / "confusion_matrix.png").exists()  # the run's plots are left alone


def _read(path: Path, **kwargs) -> SentimentData:
    data = SentimentData(source="csv", path=str(path), **kwargs)
    data.setup()
    return data


ROWS = "".join(f"a {'good' if i % 2 else 'bad'} film {i},{i % 2}\n" for i in range(20))  # rows 2-21: labels 0 and 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,label\na film, really,1\n" + ROWS,
         r"d.csv line 2: 3 fields, where the header has 2 \(text,label\); quote each field that holds a comma"),
        ("text,label\n" + ROWS + "only text\n", r"d.csv line 22: 1 field, where the header has 2.*fill in the missing"),
        ("text,label\n" + ROWS + "a film,\n", r"d.csv line 22: the 'label' cell is empty; fill it in or remove"),
        ("text,label\n" + ROWS + '" ",1\n', r"d.csv line 22: the 'text' cell is empty; fill it in or remove"),
        ("text,label\n" + ROWS + "a film,1.0\n",
         r"d.csv: the labels '1' \(line 3\) and '1.0' \(line 22\) look like one class written two ways"),
        ("text,label\n" + ROWS.replace(",1\n", ",pos\n") + "a film,Pos\n", r"the labels 'pos' \(line 3\) and 'Pos'"),
        ("text\tlabel\n" + ROWS.replace(",", "\t"), r"d.csv line 1: the header 'text\\tlabel' is one column when split "
                                                     r"at each comma; the file looks tab-separated"),
        ("text,label\n" + ROWS[: ROWS.index("\n") + 1] + "\n" + ROWS,
         r"d.csv line 3: a blank line, where the header has 2 \(text,label\); remove the blank line"),
        ("\n\n", r"d.csv is empty; it needs a header row"),
        ("text,text,label\n", r"d.csv line 1: the header names the column\(s\) \['text'\] more than once"),
    ],
)
def test_a_row_that_would_be_misread_is_refused_with_its_line(tmp_path, content, message):
    """An unquoted comma shifted the fields (the label became ' really', a class of its own), a row without its label
    or with an empty one became a class '', and '1' beside '1.0' trained as two classes: each is refused."""
    (tmp_path / "d.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        _read(tmp_path / "d.csv")


def test_spaces_around_a_label_bom_long_cells_and_trailing_blank_lines_are_read(tmp_path):
    """' 1' is the label '1' (not a third class); a byte-order mark before the header, a cell longer than the csv
    module's default limit (131072 characters) and blank lines at the end of the file are read."""
    rows = ROWS.replace(",1\n", ", 1 \n", 3).replace("a bad film 0", "a bad film " + "very " * 40_000)
    (tmp_path / "d.csv").write_text("\ufefftext,label\n" + rows + "\n\n")
    data = _read(tmp_path / "d.csv")
    assert data.labels == ["0", "1"] and sum(len(rows) for rows in data.splits.values()) == 20


@pytest.mark.parametrize("rows", range(3, 13))
def test_every_split_holds_a_row_from_three_rows_on(tmp_path, rows):
    """The error for fewer rows says 3 suffice: with 3 to 9 rows the test split was empty, without a word."""
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"film {i},{i % 2}\n" for i in range(rows)))
    splits = read_table(str(tmp_path / "d.csv"), "text", "label", (0.8, 0.1), seed=0)
    assert all(splits.values()) and sum(len(s) for s in splits.values()) == rows


def test_a_label_outside_the_training_split_names_the_file_and_what_to_do(tmp_path):
    """A label that the seed's shuffle puts in the test split only; and, in evaluation, a label the model was not
    trained on."""
    last = torch.randperm(20, generator=torch.Generator().manual_seed(0)).tolist()[-1]  # a row of the test split
    rows = [f"a film {i},{'2' if i == last else i % 2}\n" for i in range(20)]
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(rows))
    with pytest.raises(DataError, match=r"d.csv: the test split has labels not in the training split: \['2'\] \(the "
                                        r"training split has \['0', '1'\]\).*data.split_seed"):
        _read(tmp_path / "d.csv")
    trained = SentimentData(source="csv", path=str(tmp_path / "d.csv"))
    trained.labels = ["0", "1", "3"]
    with pytest.raises(DataError, match=r"d.csv: the test split has labels \['2'\] that the model was not trained on "
                                        r"\(its labels: \['0', '1', '3'\]\)"):
        trained.setup()
