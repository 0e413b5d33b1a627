"""Issue 19 items 1 and 5: each command's options come from its spec, and flag names live only in ``synalign.app``.

``optimize``, ``eval`` and ``align`` take their flags, help texts and defaults from :mod:`synalign.evals.specs`
and :class:`~synalign.config.RunConfig`, stated once; the lower floors name settings by field (```max_real```)
and the CLI's one error printer names the flag. All in-process: no run starts.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from synalign.app.cli import app
from synalign.app.options import cli_message, config_error, option_flag
from synalign.config import RunConfig
from synalign.errors import InputError
from synalign.evals.specs import EvalSpec, FinetuneConfig, OptimizeSpec


def _help(command: str) -> str:
    """``synalign COMMAND --help`` at 200 columns, box characters and line breaks folded into single spaces."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


def _option_text(text: str, flag: str) -> str:
    """The help of one option: from ``flag`` to the next option's flag."""
    match = re.search(rf"(?<![\w-]){re.escape(flag)} <\w+> (.*?)(?= (?:\* )?-{{1,2}}[a-z][\w-]* <)", text)
    assert match, (flag, text)
    return match[1]


def _params(command: str) -> dict[str, Any]:
    """The click parameters of ``synalign COMMAND``, by name."""
    group = typer.main.get_command(app)
    return {param.name: param for param in group.commands[command].params}  # type: ignore[attr-defined]


def _spec_fields(spec: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of ``spec`` that are command-line options (their metadata holds a help text)."""
    return {f.name: f for f in dataclasses.fields(spec) if "help" in f.metadata}


def _flag(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("cli_flag") or "--" + field.name.replace("_", "-")


# -- options from the specs ---------------------------------------------------------------------------------------


def test_optimize_help_lists_each_spec_field_with_the_specs_default() -> None:
    text, params = _help("optimize"), {p.opts[0]: p for p in _params("optimize").values()}
    for name, field in _spec_fields(OptimizeSpec).items():
        flag = _flag(field)
        assert params[flag].default == field.default, name  # the option's default is the spec's, not a copy
        assert _option_text(text, flag) == f"{field.metadata['help']} (default: {field.default})", name
    for name in ("api_key_env", "temperature", "text_field", "label_field"):  # shared with run: RunConfig's
        default = RunConfig.model_fields[name].default
        assert params[option_flag(name)].default == default, name
        assert _option_text(text, option_flag(name)).endswith(f"(default: {default})"), name


def test_eval_help_lists_each_spec_field_with_the_specs_default() -> None:
    text, params = _help("eval"), {p.opts[0]: p for p in _params("eval").values()}
    converted = {"pools", "out", "strategies", "whole_pool"}  # the command converts these (a list, a switch)
    for name, field in {**_spec_fields(EvalSpec), **_spec_fields(FinetuneConfig)}.items():
        flag = _flag(field)
        shown = _option_text(text, flag)
        assert shown.startswith(field.metadata["help"]), (name, shown)
        if name not in converted and field.default is not dataclasses.MISSING:
            assert params[flag].default == field.default, name
            if field.default is not None:
                assert shown.endswith(f"(default: {field.default})"), (name, shown)
    assert params["--no-whole-pool"].default is (not EvalSpec.whole_pool)
    assert _option_text(text, "--data").endswith("[required]") and _option_text(text, "--out").endswith("[required]")


def test_align_options_are_runconfig_fields_with_runconfig_defaults() -> None:
    from synalign.app.align_command import _CONFIG_FIELDS
    from synalign.app.options import field_help

    text, params = _help("align"), _params("align")
    for name in _CONFIG_FIELDS:
        assert params[name].default is None, name  # not given → RunConfig fills in its own default
        help_text = RunConfig.model_fields[name].description if name == "allow_near_copies" else field_help(name)
        assert _option_text(text, option_flag(name)) == help_text, name
    assert "(default: 2000)" in _option_text(text, "--max-real")  # RunConfig's default, stated there only
    assert RunConfig.model_fields["max_real"].default == 2000


@pytest.mark.parametrize("spec", [EvalSpec(data=Path("d"), pools=[Path("p")]), OptimizeSpec(), FinetuneConfig()])
def test_specs_are_frozen(spec: Any) -> None:
    name = dataclasses.fields(spec)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(spec, name, None)


# -- field names below the CLI, flags in what it prints -----------------------------------------------------------


def test_cli_message_maps_fields_and_parameters_to_flags() -> None:
    assert cli_message("raise `max_real`; `max_rounds` 3") == "raise --max-real; --rounds 3"
    assert cli_message("`repo_id` wants 'user/name'; `cache_dir` x; keep 'ray start --head'") == (
        "--to-hub wants 'user/name'; --cache-dir x; keep 'ray start --head'"
    )


def test_a_config_check_across_fields_names_fields_in_python_and_flags_in_the_cli(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        RunConfig(data=tmp_path / "d.jsonl", out=tmp_path / "run", llm="eda", base_url="http://127.0.0.1:9/v1")
    assert "`base_url` needs `llm` openai:MODEL" in str(caught.value) and "--" not in str(caught.value)
    assert config_error(caught.value).startswith("--base-url needs --llm openai:MODEL")
    with pytest.raises(ValidationError) as caught:
        RunConfig(data=tmp_path / "d.jsonl", max_rounds=0)
    assert config_error(caught.value).startswith("invalid option --rounds: ")


def test_a_core_error_names_the_field_and_the_cli_prints_the_flag(small_data: Path, tmp_path: Path) -> None:
    from synalign.datafiles import load_examples
    from synalign.sampling import stratified_sample

    rows = load_examples(small_data)
    with pytest.raises(InputError) as caught:
        stratified_sample(rows, 3, seed=0, min_per_label=4)
    assert str(caught.value).endswith("raise `max_real`")
    result = CliRunner().invoke(app, ["run", "--data", str(small_data), "--out", str(tmp_path / "run"), "--llm",
                                      "eda", "--max-real", "3", "--cluster-size", "4"])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.startswith("synalign: error:")]
    assert line.endswith("raise --max-real") and "`" not in line, line


def test_a_graph_error_names_the_parameter_and_the_cli_prints_the_flag(demo_dir: Path, tmp_path: Path) -> None:
    from synalign.graphs.align_pool import _check_out

    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match="pass `overwrite` to replace it"):
        _check_out(out, overwrite=False)
    result = CliRunner().invoke(app, ["align", "--real", str(demo_dir), "--pool", str(demo_dir), "--out", str(out)])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.startswith("synalign: error:")]
    assert line.endswith("pass --overwrite to replace it") and "`" not in line, line
