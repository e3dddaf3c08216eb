"""The Python examples in README.md run as written, and its rnnlab-train commands compose."""

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})


def test_readme_train_commands_compose():
    """Every rnnlab-train command in the README composes (a multirun with the first value of each sweep;
    a <placeholder> as a plain word), so a renamed key or config group cannot leave the README behind."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser

    commands = [line.split("#")[0] for line in README.read_text().splitlines()
                if line.strip().startswith(".venv/bin/rnnlab-train")]
    assert len(commands) > 10
    parser = OverridesParser.create()
    with initialize_config_module(config_module="rnnlab.conf", version_base="1.3"):
        for command in commands:
            words = [re.sub(r"<(\w+)>", r"\1", w) for w in shlex.split(command)[1:] if w != "-m"]
            overrides = []
            for o in parser.parse_overrides(words):
                value = next(o.sweep_string_iterator()) if o.is_sweep_override() else o.get_value_element_as_str()
                overrides.append(f"{o.get_key_element()}={value}")
            compose("train", overrides=overrides, return_hydra_config=True)
