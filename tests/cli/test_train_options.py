"""``memkit train adapter|slots`` options come from the training configs: every field is a flag whose help is the
field's docstring, and a bad value is refused by the config's own check, in one line, before a model loads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from typer.main import get_command

from cli.config_options import config_parameters, field_docs
from cli.main import app
from memkit.adapters.train import AdapterTrainConfig
from memkit.slots.train import SlotTrainConfig


def options_of(name: str) -> dict:
    command = get_command(app).commands["train"].commands[name]
    return {p.name: p for p in command.params}


@pytest.mark.parametrize("name,cls", [("adapter", AdapterTrainConfig), ("slots", SlotTrainConfig)])
def test_every_config_field_is_an_option_with_its_doc_as_help(name, cls):
    options = options_of(name)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name == "inputs":                        # set by the recipe, never by a user
            assert f.name not in options
            continue
        option = options[f.name]
        assert option.help == docs[f.name] and option.default == f.default, f.name
        assert option.opts[0] == "--" + f.name.replace("_", "-")


@pytest.mark.parametrize("args,message", [
    (["adapter", "--svd-rank", "0"], "--state-rank and --svd-rank must be at least 1"),
    (["adapter", "--targets", "everything"], "--targets is attn_out or mlp_out"),
    (["adapter", "--min-lr-ratio", "2"], "--min-lr-ratio is a fraction in [0, 1]"),
    (["slots", "--w-match", "-1"], "--w-match"),
    (["slots", "--heads", "3"], "heads (3) must divide mem_dim (256)"),
])
def test_a_bad_value_is_the_configs_one_line(memkit, args, message):
    result = memkit("train", *args, "--model", "nowhere-at-all", "--data", "jsonl:nothing.jsonl")
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert "nowhere-at-all" not in result.stderr                 # refused before any model was looked for


def test_a_field_without_a_docstring_has_no_option():
    @dataclass
    class Undocumented:
        documented: int = 1
        """Has its help."""
        bare: int = 2

    with pytest.raises(TypeError, match="bare has no docstring"):
        config_parameters(Undocumented)
