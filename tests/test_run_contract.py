"""Issue 19 item 1: the run contract. ``RunConfig`` is frozen and holds parsed values (``target``: Target,
``selection``: StrategySpec, ``llm``: LLMSpec), each given and saved as the same string, so a ``config.json``
written before the change resumes and finishes as a fresh run does; a run parses ``--llm`` and the selection
name only when its config is built; the LLM settings read the environment through one settings class.

``tests/data/config-before-typed-contract.json`` (and ``.digests.json``, its checkpoint record) were written
by the code before the change: ``RunConfig(...).model_dump_json(indent=2) + "\\n"``, as the runner writes
``config.json``, with ``data`` relative to the repository root."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from synalign.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "config-before-typed-contract.json"
DIGESTS = ROOT / "tests" / "data" / "config-before-typed-contract.digests.json"
OPTIONS = json.loads(FIXTURE.read_text(encoding="utf-8"))  # the options of the old run, as saved


# -- frozen, parsed once, saved as given -------------------------------------------------------------------


def test_run_config_is_frozen(tmp_path: Path) -> None:
    config = RunConfig(data=tmp_path, out=tmp_path / "run", llm="eda")
    for name, value in (("max_rounds", 3), ("target", "2x"), ("llm", "local"), ("selection", "random")):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(config, name, value)
    assert config.max_rounds == 4 and config.llm == "eda"
    raised = config.model_copy(update={"max_rounds": 5})  # the way to change one: a new config
    assert (raised.max_rounds, config.max_rounds) == (5, 4)


@pytest.mark.parametrize(
    ("options", "parsed"),
    [
        ({"target": "1x", "selection": "filter", "llm": "eda"}, (1.0, True, "FilterThen", "eda", "")),
        ({"target": " 1.50x ", "selection": "filter+herding", "llm": " OpenAI:gpt-4o-mini"},
         (1.5, True, "FilterThen", "openai", "gpt-4o-mini")),
        ({"target": "0.002", "selection": "herding", "llm": "local"},
         (0.002, False, "PerLabel", "local", "")),
        ({"target": "2×", "selection": "random", "llm": "local:models/my.gguf"},
         (2.0, True, "PerLabel", "local", "models/my.gguf")),
        ({"target": "1e-3", "selection": "top_weight", "llm": "openai:Qwen/Qwen2.5-7B"},
         (0.001, False, "PerLabel", "openai", "Qwen/Qwen2.5-7B")),
    ],
)
def test_string_options_are_parsed_once_and_saved_as_given(
    options: dict[str, str], parsed: tuple[object, ...], tmp_path: Path
) -> None:
    config = RunConfig(data=tmp_path, out=tmp_path / "run", **options)
    value, relative, strategy, kind, model = parsed
    assert (config.target.value, config.target.relative) == (value, relative)
    assert type(config.selection.strategy).__name__ == strategy
    assert config.selection.name == options["selection"]
    assert (config.llm.kind, config.llm.model) == (kind, model)
    saved = json.loads(config.model_dump_json())
    assert {name: saved[name] for name in options} == options  # the strings as given, not a normal form
    assert config.model_dump() == {**config.model_dump(), **options}
    again = RunConfig.model_validate_json(config.model_dump_json())
    assert again == config and again.model_dump_json() == config.model_dump_json()


def test_bad_string_options_are_refused_when_the_config_is_built(tmp_path: Path) -> None:
    from synalign.errors import invalid_field_message

    for field, value, fragment in (
        ("target", "soon", "target must be a number"),
        ("selection", "filter+magic", "unknown selection strategy 'filter+magic'"),
        ("llm", "openai", "must be 'eda', 'local'"),
    ):
        with pytest.raises(ValidationError) as info:
            RunConfig(data=tmp_path, **{field: value})
        message = invalid_field_message(info.value)
        assert message.startswith(f"invalid option `{field}`: ") and fragment in message, message


def test_the_card_describes_the_selection_from_its_spec(tmp_path: Path) -> None:
    from synalign.runspecs import StrategySpec

    spec = RunConfig(data=tmp_path, selection="filter+herding").selection
    assert spec.description.startswith("drop samples a classifier fitted on the real examples")
    assert spec.description.endswith(", then `herding` (kernel herding: greedily the samples that move the "
                                      "selected set's kernel mean closest to the real examples')")
    assert StrategySpec.describe("blend_cv") == "a registered selection strategy"  # registered by evals only


# -- a config.json written before the change ---------------------------------------------------------------


def test_a_config_json_written_before_the_change_reads_and_writes_byte_for_byte() -> None:
    from synalign.graphs.checkpoint import _default_digest, _digest, _field_digests

    text = FIXTURE.read_text(encoding="utf-8")
    config = RunConfig.model_validate_json(text)
    assert config.model_dump_json(indent=2) + "\n" == text
    record = json.loads(DIGESTS.read_text(encoding="utf-8"))
    assert _field_digests(config) == record["fields"]  # its checkpoint's config record still matches
    assert _digest(_field_digests(config)) == record["digest"]
    # a record written before a field existed lists no digest for it: the default's, as before the change
    assert _default_digest("target") == _digest("1x") and _default_digest("selection") == _digest("filter")


def _run_dir_with_old_config(tmp_path: Path, name: str, **changes: object) -> Path:
    out = tmp_path / name
    out.mkdir()
    saved = {**OPTIONS, "data": str(ROOT / OPTIONS["data"]), "out": str(out), **changes}
    (out / "config.json").write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return out


def _parse_calls() -> tuple[Counter[str], object]:
    """Calls of the functions that parse ``--llm`` or the selection name, counted in every thread."""
    names = {"parse_llm", "backend_kind", "parse_strategy", "get_strategy", "check_strategy"}
    calls: Counter[str] = Counter()
    here = str(ROOT)

    def hook(frame, event, arg):  # noqa: ANN001, ANN202
        if event == "call" and frame.f_code.co_name in names and frame.f_code.co_filename.startswith(here):
            calls[frame.f_code.co_name] += 1

    return calls, hook


def test_a_run_resumed_from_an_old_config_json_finishes_as_a_fresh_run(tmp_path: Path) -> None:
    from synalign.app.cli import app
    from synalign.graphs import run

    fresh = RunConfig(**{**OPTIONS, "data": ROOT / OPTIONS["data"], "out": tmp_path / "fresh"})
    calls, hook = _parse_calls()
    sys.setprofile(hook)
    threading.setprofile(hook)
    try:
        run(fresh)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert not calls, calls  # --llm and the selection name were parsed when the config was built, never again
    expected = (tmp_path / "fresh" / "synthetic.jsonl").read_bytes()
    assert expected

    for name, changes in (("old", {}), ("older", {"llm": None})):  # "llm": null: saved before the local LM
        out = _run_dir_with_old_config(tmp_path, name, **changes)
        saved = (out / "config.json").read_bytes()
        result = CliRunner().invoke(app, ["run", "--out", str(out), "--resume"])
        assert result.exit_code == 0, (result.stderr[-3000:], result.exception)
        assert (out / "synthetic.jsonl").read_bytes() == expected, name
        assert (out / "config.json").read_bytes() == saved  # resuming leaves the old file as it was
        assert json.loads((out / "summary.json").read_text())["backend"]["kind"] == "eda"
        with sqlite3.connect(out / "checkpoints.sqlite") as conn:
            (record,) = conn.execute("SELECT value FROM synalign_run WHERE name = 'config'").fetchone()
        fields = json.loads(record)["fields"]
        old = json.loads(DIGESTS.read_text(encoding="utf-8"))["fields"]
        same = {key for key in old if key not in ("data", "llm")}  # data: moved; llm: null in the older one
        assert {key: fields[key] for key in same} == {key: old[key] for key in same}
        assert (fields["llm"] == old["llm"]) == (name == "old")


# -- the LLM settings: one settings class for the environment ----------------------------------------------


def test_llm_settings_defaults_depend_on_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synalign.agents.settings import LLMSettings

    for variable in ("TIMEOUT", "CONNECT_TIMEOUT", "MAX_ATTEMPTS", "REQUEST_BUDGET", "BACKOFF", "STRUCTURED",
                     "PRICES"):
        monkeypatch.delenv(f"SYNALIGN_LLM_{variable}", raising=False)
    for variable in ("THREADS", "SLOTS"):
        monkeypatch.delenv(f"SYNALIGN_LOCAL_{variable}", raising=False)
    remote = LLMSettings.from_config(RunConfig(data=tmp_path, llm="openai:m"))
    local = LLMSettings.from_config(RunConfig(data=tmp_path, llm="local"))
    by_backend = ("timeout_s", "max_tokens", "prompt_style", "provider")
    assert tuple(getattr(remote, name) for name in by_backend) == (120, 1024, "chat", "openai")
    assert tuple(getattr(local, name) for name in by_backend) == (180, 256, "completion", "local")
    environment = ("connect_timeout_s", "max_attempts", "request_budget_s", "backoff_s", "structured_method",
                   "prices", "local_threads", "local_slots")
    for settings in (remote, local):
        assert [getattr(settings, name) for name in environment] == [10, 6, 600, 1, "json_schema", None, 1, 1]
        from_config = (settings.temperature, settings.max_concurrency, settings.cache)  # RunConfig's defaults
        assert from_config == (0.8, 4, True)
    with pytest.raises(TypeError):
        LLMSettings(model="m")  # type: ignore[call-arg]  # a view of a config: no defaults of its own


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("SYNALIGN_LLM_TIMEOUT", "7.5", "timeout_s", 7.5),
        ("SYNALIGN_LLM_CONNECT_TIMEOUT", "2", "connect_timeout_s", 2.0),
        ("SYNALIGN_LLM_MAX_ATTEMPTS", "2.9", "max_attempts", 2),
        ("SYNALIGN_LLM_REQUEST_BUDGET", "30", "request_budget_s", 30.0),
        ("SYNALIGN_LLM_BACKOFF", "0.25", "backoff_s", 0.25),
        ("SYNALIGN_LLM_STRUCTURED", "function_calling", "structured_method", "function_calling"),
        ("SYNALIGN_LOCAL_THREADS", "2", "local_threads", 2),
        ("SYNALIGN_LOCAL_SLOTS", "3", "local_slots", 3),
        ("SYNALIGN_LLM_TIMEOUT", "", "timeout_s", 120.0),  # empty: the default
    ],
)
def test_each_documented_environment_variable_sets_its_setting(
    variable: str, value: str, attribute: str, expected: object, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from synalign.agents.settings import LLMSettings

    monkeypatch.setenv(variable, value)
    assert getattr(LLMSettings.from_config(RunConfig(data=tmp_path, llm="openai:m")), attribute) == expected


def test_prices_and_bad_environment_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synalign.agents.settings import LLMSettings
    from synalign.errors import InputError

    config = RunConfig(data=tmp_path, llm="openai:m")
    prices = tmp_path / "prices.json"
    prices.write_text('{"m": {"input": 0.15, "output": 0.6}}', encoding="utf-8")
    monkeypatch.setenv("SYNALIGN_LLM_PRICES", str(prices))
    assert LLMSettings.from_config(config).prices == {"m": {"input": 0.15, "output": 0.6}}
    for variable, value, fragment in (
        ("SYNALIGN_LLM_MAX_ATTEMPTS", "many", "variable SYNALIGN_LLM_MAX_ATTEMPTS must be a number"),
        ("SYNALIGN_LOCAL_SLOTS", "-1", "environment variable SYNALIGN_LOCAL_SLOTS must be a positive number"),
        ("SYNALIGN_LLM_STRUCTURED", "xml", "SYNALIGN_LLM_STRUCTURED must be json_schema, function_calling"),
    ):
        with monkeypatch.context() as scoped:
            scoped.setenv(variable, value)
            with pytest.raises(InputError, match=fragment):
                LLMSettings.from_config(config)
