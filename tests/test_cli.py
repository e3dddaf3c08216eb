"""rnnlab-eval and rnnlab-generate on a checkpoint that rnnlab-train wrote; the model summary."""

import math
import re

import pytest
import torch
from torch import nn

from rnnlab import evaluate, generate
from rnnlab.errors import ConfigError, DataError
from rnnlab.summary import summarize
from rnnlab.train import build, train
from train_helpers import SHARED, compose_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = compose_config(tmp, "trainer.max_epochs=1", "+trainer.limit_train_batches=5", "+trainer.limit_val_batches=2",
                         "test=false")
    train(cfg)
    return tmp / "checkpoints" / "last.ckpt"


def test_eval_reports_each_split_and_applies_overrides(checkpoint):
    val = evaluate.evaluate(str(checkpoint), split="val")
    assert set(val) >= {"val/loss", "val/ppl", "val/bpc"}
    assert not [key for key in val if key.endswith("_best")]  # the training run's best is not this evaluation's
    assert val["val/ppl"] == pytest.approx(math.exp(val["val/loss"]), rel=1e-5)  # per token, the loss in nats
    assert val["val/bpc"] == pytest.approx(val["val/loss"] / math.log(2), rel=1e-5)
    test = evaluate.evaluate(str(checkpoint), split="test")
    assert test["test/loss"] > 0
    # another corpus through the trained model's own vocabulary (characters it never saw map to unknown)
    other = evaluate.evaluate(str(checkpoint), split="test", overrides=["data.max_chars=40000"])
    assert other["test/loss"] != test["test/loss"]


def test_generate_prints_a_continuation(checkpoint, capsys):
    path = checkpoint
    assert generate.main([str(path), "--prompt", "def ", "--length", "25", "--top-k", "5", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("def ") and len(first.rstrip("\n")) >= 4 + 1
    generate.main([str(path), "--prompt", "def ", "--length", "25", "--top-k", "5", "--seed", "3"])
    assert capsys.readouterr().out == first  # same seed, same text


def test_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    assert generate.main([str(bad)]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err
    assert evaluate.main([str(tmp_path / "missing.ckpt")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(("override", "message"), [
    ("data=stdlib_char", r"rnnlab-eval changes the run's data config key by key \(data.path=..., "),
    ("trainer.precision=bf17", r"Lightning refuses trainer.accelerator=.* or trainer.precision=bf17: .*bf17"),
    ("trainer.precision=16-true", r"trainer.precision=16-true converts the whole task to half precision"),
    ("data.level=word", r"data.level=word: the model's vocabulary is char level, and it reads text only that way"),
])
def test_eval_refuses_what_lightning_or_the_run_config_cannot_take(checkpoint, override, message):
    with pytest.raises((ConfigError, DataError), match=message):
        evaluate.evaluate(str(checkpoint), overrides=[override])


def test_eval_refuses_plots_of_the_validation_split(checkpoint, capsys):
    with pytest.raises(SystemExit) as info:
        evaluate.main([str(checkpoint), "--split", "val", "--plot-dir", "plots"])
    assert info.value.code == 2 and "--plot-dir writes the test split's plots" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without a GPU")
def test_eval_of_a_gpu_run_falls_back_to_the_cpu_and_says_so(checkpoint, capsys):
    metrics = evaluate.evaluate(str(checkpoint), split="val", overrides=["trainer.accelerator=gpu"])
    assert metrics["val/loss"] > 0
    assert "trained with trainer.accelerator=gpu; torch sees no GPU here" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the switch is for machines without a GPU")
def test_a_run_on_the_triton_backend_evaluates_and_samples_on_the_cpu(checkpoint, tmp_path, monkeypatch, capsys):
    """A checkpoint of a GPU run on model.backend=triton (whose kernels take CUDA tensors; the CPU runs them only
    under TRITON_INTERPRET=1) is evaluated and sampled on the CPU with backend=auto, the same weights, and a note
    says so: it was a NotImplementedError's traceback, and rnnlab-eval refuses model.* overrides."""
    fused = torch.load(checkpoint, weights_only=False)
    fused["hyper_parameters"]["backend"] = "triton"
    torch.save(fused, tmp_path / "fused.ckpt")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert evaluate.evaluate(str(tmp_path / "fused.ckpt"), "val") == evaluate.evaluate(str(checkpoint), "val")
    note = "the model trained with model.backend=triton, whose kernels run on CUDA tensors; here it runs on the CPU"
    assert f"rnnlab-eval: {note}" in capsys.readouterr().err
    args = ["--prompt", "def ", "--length", "20", "--seed", "3"]
    assert generate.main([str(tmp_path / "fused.ckpt"), *args]) == 0
    out, err = capsys.readouterr()
    assert f"rnnlab-generate: {note}" in err
    assert generate.main([str(checkpoint), *args]) == 0 and capsys.readouterr().out == out


def test_summary_lists_layers_with_shapes(tmp_path):
    cfg = compose_config(tmp_path, "model.num_layers=2")
    datamodule, model, _ = build(cfg)
    x, _ = next(iter(datamodule.train_dataloader()))
    text = summarize(model, x)
    assert "net.embedding (Embedding)  (16, 4, 8)" in text
    assert "net.rnn (GRU)" in text and "(16, 4, 16)" in text
    total = sum(p.numel() for p in model.parameters())
    assert f"Total params: {total:,}" in text


def test_summary_counts_own_parameters_and_changes_nothing():
    """A module with parameters of its own and a child shows its own count (rows add up to the total); the run
    leaves batch-norm statistics, the random generator and each module's mode as they were."""

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.norm = nn.BatchNorm1d(4)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(self.norm(x)) * self.scale

    model = nn.Sequential(nn.Linear(3, 4), Head())
    model[1].drop.eval()  # mixed modes
    stats = model[1].norm.state_dict()
    x = torch.randn(5, 3)
    state = torch.get_rng_state()
    text = summarize(model, x)
    counts = [int(line.rsplit(None, 1)[1].replace(",", "")) for line in text.splitlines() if line.startswith("1")]
    assert counts == [8, 0, 1]  # in the order calls end: BatchNorm (weight, bias), Dropout, Head (its scale alone)
    assert "Total params: 25" in text
    assert all(torch.equal(v, model[1].norm.state_dict()[k]) for k, v in stats.items())
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training and model[1].norm.training and not model[1].drop.training


def test_summary_counts_a_tied_weight_once():
    """A weight two layers share (a language model's tie_weights) is counted in the layer called first and shown
    as shared in the other, so that the rows add up to the total (the decoder counted it again)."""
    encoder, decoder = nn.Embedding(10, 4), nn.Linear(4, 10)
    decoder.weight = encoder.weight
    text = summarize(nn.Sequential(encoder, decoder), torch.tensor([[1, 2]]))
    assert re.search(r"^0 \(Embedding\) +\(1, 2, 4\) +40$", text, re.M)
    assert re.search(r"^1 \(Linear\) +\(1, 2, 10\) +10 \(\+40 shared\)$", text, re.M)
    assert "Total params: 50" in text


def test_eval_takes_options_among_overrides_and_refuses_unknown_keys(checkpoint, capsys):
    assert evaluate.main([str(checkpoint), "data.max_chars=40000", "--split", "val", "data.bptt=8"]) == 0
    assert "val/loss = " in capsys.readouterr().out
    assert evaluate.main([str(checkpoint), "--split", "val", "data.foo=1"]) == 2
    assert "the run's config has no key for ['data.foo=1']" in capsys.readouterr().err


def test_eval_refuses_overrides_it_would_not_apply(checkpoint, capsys):
    """The model is the checkpoint's, so model.*, seed or trainer.max_epochs would change nothing: refused, naming
    what rnnlab-eval does change; so are a bad data size and --plot-dir for a task that draws no plots."""
    assert evaluate.main([str(checkpoint), "model.hidden_size=999", "seed=7", "data.bptt=8"]) == 2
    assert ("rnnlab-eval changes only data.*, paths.data_dir, trainer.accelerator, trainer.precision of the run's "
            "config; ['model.hidden_size=999', 'seed=7'] would change nothing") in capsys.readouterr().err
    assert evaluate.main([str(checkpoint), "data.batch_size=abc"]) == 2
    assert "data.batch_size must be an int >= 1; got 'abc' (str)" in capsys.readouterr().err
    assert evaluate.main([str(checkpoint), "--plot-dir", "plots"]) == 2
    assert "--plot-dir: a LanguageModelTask's test draws no plots" in capsys.readouterr().err


def test_eval_runs_in_the_runs_precision(tmp_path):
    """A run trained in bf16-mixed is evaluated in it (train's test numbers again), unless trainer.precision says
    otherwise."""
    cfg = compose_config(tmp_path, "+trainer.precision=bf16-mixed", "trainer.max_epochs=1",
                         "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1")
    trained = train(cfg)
    checkpoint = str(tmp_path / "checkpoints" / "last.ckpt")
    (best,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    assert evaluate.evaluate(str(best))["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-6)
    fp32 = evaluate.evaluate(checkpoint, overrides=["trainer.precision=32-true"])["test/loss"]
    assert fp32 != pytest.approx(trained["test/loss"], rel=1e-6) and fp32 == pytest.approx(trained["test/loss"],
                                                                                           rel=1e-2)


def test_edited_checkpoint_says_what_to_use(checkpoint, tmp_path, capsys):
    """A checkpoint with its run config but not loadable as its model (here without its weights) is a short error
    saying which checkpoints to use, not a traceback."""
    edited = torch.load(checkpoint, weights_only=False)
    del edited["state_dict"]
    torch.save(edited, tmp_path / "edited.ckpt")
    assert evaluate.main([str(tmp_path / "edited.ckpt")]) == 2
    assert ("does not load from it (KeyError: 'state_dict'); use a checkpoint that rnnlab-train wrote, unchanged"
            in capsys.readouterr().err)


@pytest.mark.skipif(not (SHARED / "airline" / "airline-passengers.csv").is_file(), reason="shared airline data absent")
def test_eval_reads_the_data_from_paths_data_dir(tmp_path):
    """paths.data_dir=... moves the data sets' folder for rnnlab-eval as for rnnlab-train (data.data_dir followed it
    when the run's config was resolved): the same series elsewhere gives the same numbers, another one others."""
    cfg = compose_config(tmp_path, "experiment=forecast_airline", f"paths.data_dir={SHARED}", "trainer.max_epochs=1",
                         "test=false", tiny=False)
    train(cfg)
    checkpoint = str(tmp_path / "checkpoints" / "last.ckpt")
    before = evaluate.evaluate(checkpoint)
    moved = tmp_path / "moved"
    (moved / "airline").mkdir(parents=True)
    lines = (SHARED / "airline" / "airline-passengers.csv").read_text().splitlines()
    (moved / "airline" / "airline-passengers.csv").write_text("\n".join(lines) + "\n")
    assert evaluate.evaluate(checkpoint, overrides=[f"paths.data_dir={moved}"]) == before
    doubled = [lines[0]] + [f"{month},{2 * int(count)}" for month, count in (line.split(",") for line in lines[1:])]
    (moved / "airline" / "airline-passengers.csv").write_text("\n".join(doubled) + "\n")
    assert evaluate.evaluate(checkpoint, overrides=[f"paths.data_dir={moved}"])["test/mse"] > before["test/mse"]


def test_word_level_generation_continues_the_prompt_line():
    from rnnlab.data.text import Tokenizer
    from rnnlab.tasks import LanguageModelTask

    tok = Tokenizer.fit("word", "the cat sat\non the mat\n")
    assert tok.encode("the cat", final_eos=False).tolist() == [tok.stoi["the"], tok.stoi["cat"]]
    assert tok.encode("the cat\n", final_eos=False)[-1] == tok.stoi[Tokenizer.EOS]
    assert tok.continue_text("the cat", [tok.stoi["sat"]]) == "the cat sat"
    assert Tokenizer.fit("char", "def").continue_text("de", [3]) == "def"
    model = LanguageModelTask(vocab_size=len(tok), optimizer=None, embedding_dim=4, hidden_size=4)
    model.tokenizer = tok
    text = model.generate("the cat", length=3, generator=torch.Generator().manual_seed(0))
    assert text.startswith("the cat ")  # no space was lost between the prompt and the words
    # a prompt word the model never saw is read as the unknown symbol, and said so
    assert tok.unknown("the dog and the dog\n") == ["dog", "and"]
    with pytest.warns(UserWarning, match=r"the prompt has 2 symbol\(s\) the model never saw in training \('dog', "
                                         r"'and'\); each is read as the unknown symbol"):
        model.generate("the dog and the dog", length=1)


def test_eval_of_a_forecaster_standardises_other_data_as_in_training(tmp_path):
    """rnnlab-eval reads another series through the training data's column statistics, which travel in the
    checkpoint: a series in other units (10 a + 5) then gives other standardised errors and original-scale
    errors in its own units, not the same numbers as the training series."""
    t = torch.arange(400, dtype=torch.float64)
    a = torch.stack([torch.sin(t / 7), torch.cos(t / 11) + t / 400], dim=1)
    for name, values in (("a.csv", a), ("b.csv", 10 * a + 5)):
        rows = "\n".join(f"{x:.9f},{y:.9f}" for x, y in values.tolist())
        (tmp_path / name).write_text(f"u,target\n{rows}\n")
    cfg = compose_config(tmp_path, "model=forecast", "data=forecast_csv", f"data.path={tmp_path / 'a.csv'}",
                         "data.time_column=null", "data.lookback=12", "data.horizon=4", "model.hidden_size=8",
                         "trainer.max_epochs=1", "+trainer.limit_train_batches=3", "trainer.log_every_n_steps=1",
                         "test=false", tiny=False)
    train(cfg)
    checkpoint = str(tmp_path / "checkpoints" / "last.ckpt")
    same = evaluate.evaluate(checkpoint)
    other = evaluate.evaluate(checkpoint, overrides=[f"data.path={tmp_path / 'b.csv'}"])
    assert other["test/mse"] > 10 * same["test/mse"]  # inputs 10 a + 5 standardised with a's statistics
    assert other["test/mae_orig"] > 5 * same["test/mae_orig"]
    with pytest.raises(DataError, match=r"trained on a series of 2 columns; this one has 1"):
        (tmp_path / "c.csv").write_text("target\n" + "\n".join(str(v) for v in range(100)) + "\n")
        evaluate.evaluate(checkpoint, overrides=[f"data.path={tmp_path / 'c.csv'}"])
