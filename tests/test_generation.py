"""rnnlab-generate and LanguageModelTask.generate: where an empty prompt starts, the temperature and prompt checks,
and a checkpoint of another task."""

import pytest
import torch

from rnnlab import generate
from rnnlab.data.text import Tokenizer
from rnnlab.tasks import LanguageModelTask
from rnnlab.tasks.forecasting import ForecastTask


def _model(level: str) -> LanguageModelTask:
    """An untrained language model over a two-line text's vocabulary."""
    tokenizer = Tokenizer.fit(level, "the cat sat\non the mat\n")
    model = LanguageModelTask(vocab_size=len(tokenizer), optimizer=None, embedding_dim=4, hidden_size=4)
    model.tokenizer = tokenizer
    return model


@pytest.mark.parametrize("options", [{"top_k": 1}, {"temperature": 1e-6}], ids=["top_k=1", "temperature=1e-6"])
def test_top_k_and_temperature_act_on_the_distribution(options):
    """top_k=1 keeps the likeliest token only, and a temperature near 0 puts all the probability on it: both decode
    greedily, whatever the generator draws (unlike the plain sampling, which the last line checks)."""
    model = _model("char").eval()
    tokens, state, greedy = torch.tensor([[model.tokenizer.stoi["\n"]]]), None, []
    with torch.no_grad():
        for _ in range(12):
            logits, state = model.net(tokens, state)
            tokens = logits[-1:, :].argmax(-1)  # (1, 1)
            greedy.append(int(tokens))
    want = model.tokenizer.decode(greedy)
    draws = {model.generate("", 12, generator=torch.Generator().manual_seed(seed), **options) for seed in range(4)}
    assert draws == {want}
    assert len({model.generate("", 12, generator=torch.Generator().manual_seed(seed)) for seed in range(4)}) > 1


@pytest.mark.parametrize(("level", "start", "prompt"), [("char", "\n", ""), ("word", Tokenizer.EOS, ""),
                                                     ("word", Tokenizer.EOS, " ")])
def test_an_empty_prompt_starts_where_a_line_begins(level, start, prompt):
    """Not from the unknown symbol (id 0), whose embedding training never updates: from the symbol before every
    line's first one, a newline (character level) or <eos> (word level). A word-level prompt of spaces has no
    word and starts there too (it was an empty sequence, refused by the GRU)."""
    model = _model(level)
    inputs = []
    model.net.register_forward_pre_hook(lambda net, args: inputs.append(args[0].flatten().tolist()))
    text = model.generate(prompt, length=3, generator=torch.Generator().manual_seed(0))
    assert inputs[0] == [model.tokenizer.stoi[start]]
    sampled = model.tokenizer.decode([i for (i,) in inputs[1:]])  # the sampled tokens only, not the start
    assert text == prompt + sampled


@pytest.mark.parametrize("text", ["a b\n\nc\n", "a\n b\n", "\n", ""])
def test_word_level_decoding_gives_back_the_lines(text):
    """Words joined by one space within a line, <eos> as the line's end: no space beside a newline (an empty line
    gave "a b\\n\\n c \\n")."""
    tokenizer = Tokenizer.fit("word", "a b c\n")
    assert tokenizer.decode(tokenizer.encode(text)) == "\n".join(" ".join(line.split()) for line in text.split("\n"))


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), 0.0, -1.0])
def test_generate_refuses_a_temperature_that_is_not_a_finite_positive_number(temperature, monkeypatch, capsys):
    monkeypatch.setattr(generate, "load_run", lambda path: (_model("char"), None))
    assert generate.main(["run.ckpt", "--temperature", str(temperature)]) == 2
    err = capsys.readouterr().err
    assert f"temperature must be a finite number > 0; got {temperature}" in err and "Traceback" not in err


def test_an_unknown_prompt_symbol_is_attributed_to_the_callers_line():
    with pytest.warns(UserWarning, match=r"the prompt has 2 symbol\(s\) the model never saw") as record:
        _model("char").generate("dog", length=1)
    assert record[0].filename == __file__


def test_generate_on_another_task_points_to_rnnlab_eval(monkeypatch, capsys):
    forecaster = ForecastTask(input_size=1, output_size=1, horizon=1, target_mean=[0.0], target_std=[1.0],
                              target_index=[0], optimizer=None)
    monkeypatch.setattr(generate, "load_run", lambda path: (forecaster, None))
    assert generate.main(["run.ckpt"]) == 2
    assert ("rnnlab-generate: error: run.ckpt holds a ForecastTask, not a language model: rnnlab-generate samples "
            "text from a language model; for this model's metrics run rnnlab-eval run.ckpt") in capsys.readouterr().err
