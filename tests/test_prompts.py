"""Declarative prompt specs: loading, hashing, the DSPy/LangChain views built from them, optimised state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from synalign.errors import InputError
from synalign.prompts import PromptSpec, load_spec, spec_names


def _write_spec(path: Path, spec: PromptSpec, **changes: object) -> Path:
    data = spec.model_dump(mode="json")
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_shipped_specs_are_package_data_and_typed() -> None:
    assert {"summarize_attributes", "generate_samples"} <= set(spec_names())
    summary = load_spec("summarize_attributes")
    assert summary.input_names() == ["task", "label", "demonstrations"]
    assert summary.output_names() == ["style", "tone", "topic", "subtopics", "length", "perspective", "other"]
    assert {f.name: f.type for f in summary.outputs}["subtopics"] == "list[str]"
    generate = load_spec("generate_samples")
    assert generate.input_names() == ["task", "label", "attributes", "demonstrations", "n"]
    assert [(f.name, f.type) for f in generate.outputs] == [("texts", "list[str]")]
    assert {f.name: f.type for f in generate.inputs}["n"] == "int"


def test_hash_is_stable_and_covers_order_descriptions_and_instructions(tmp_path: Path) -> None:
    spec = load_spec("summarize_attributes")
    assert spec.sha256 == load_spec("summarize_attributes").sha256 and len(spec.sha256) == 64
    same = load_spec(_write_spec(tmp_path / "same.yaml", spec))
    assert same.sha256 == spec.sha256
    reordered = load_spec(
        _write_spec(tmp_path / "r.yaml", spec, outputs=[f.model_dump() for f in reversed(spec.outputs)])
    )
    assert reordered.sha256 != spec.sha256
    outputs = [f.model_dump() for f in spec.outputs]
    outputs[0]["description"] = "something else"
    assert load_spec(_write_spec(tmp_path / "d.yaml", spec, outputs=outputs)).sha256 != spec.sha256
    assert load_spec(_write_spec(tmp_path / "i.yaml", spec, instructions="Other.")).sha256 != spec.sha256


def test_bad_specs_are_one_line_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown prompt spec 'nope'.*generate_samples"):
        load_spec("nope")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ninstructions: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_spec(broken)
    spec = load_spec("generate_samples")
    bad_type = [{"name": "texts", "type": "dict", "description": ""}]
    with pytest.raises(InputError, match=r"bad\.yaml: invalid prompt spec at outputs\.0\.type"):
        load_spec(_write_spec(tmp_path / "bad.yaml", spec, outputs=bad_type))
    dupe = [f.model_dump() for f in spec.inputs] + [{"name": "task", "type": "str"}]
    with pytest.raises(InputError, match="repeated: task"):
        load_spec(_write_spec(tmp_path / "dupe.yaml", spec, inputs=dupe))
    with pytest.raises(InputError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    for err in (InputError,):
        try:
            load_spec(broken)
        except err as exc:
            assert "\n" not in str(exc)


def test_signature_schema_and_chat_prompt_follow_the_spec() -> None:
    from synalign.agents.specs import output_model, render_inputs, to_chat_prompt, to_signature

    spec = load_spec("generate_samples")
    sig = to_signature(spec)
    assert list(sig.input_fields) == spec.input_names() and list(sig.output_fields) == ["texts"]
    assert sig.instructions == spec.instructions.strip()
    assert sig.output_fields["texts"].annotation == list[str]
    assert sig.input_fields["n"].annotation is int
    assert sig.input_fields["label"].json_schema_extra["desc"] == "The label every new text must carry."

    summary = load_spec("summarize_attributes")
    model = output_model(summary)
    schema = model.model_json_schema()
    assert list(schema["properties"]) == summary.output_names()
    assert sorted(schema["required"]) == sorted(summary.output_names())  # strict structured output: all required
    assert schema["properties"]["subtopics"]["type"] == "array"

    prompt = to_chat_prompt(summary)
    values = render_inputs(
        summary, {"task": "sentiment", "label": "positive", "demonstrations": ["a  fine\nfilm", "b"]}
    )
    messages = prompt.format_messages(**values)
    assert [m.type for m in messages] == ["system", "human"]
    assert summary.instructions.strip().splitlines()[0] in messages[0].content
    assert "- subtopics (list[str]): Sub-topics or recurring aspects." in messages[0].content
    assert "Label: positive" in messages[1].content
    assert "Demonstrations:\n1. a fine film\n2. b" in messages[1].content
    with pytest.raises(ValueError, match="missing input field 'label'"):
        render_inputs(summary, {"task": "t", "demonstrations": []})


def test_braces_in_instructions_do_not_break_the_chat_prompt(tmp_path: Path) -> None:
    from synalign.agents.specs import render_inputs, to_chat_prompt

    spec = load_spec(
        _write_spec(tmp_path / "b.yaml", load_spec("summarize_attributes"), instructions='Reply as {"style": ...}.')
    )
    messages = to_chat_prompt(spec).format_messages(
        **render_inputs(spec, {"task": "t", "label": "l", "demonstrations": ["x"]})
    )
    assert 'Reply as {"style": ...}.' in messages[0].content


def test_optimised_state_round_trips_and_a_changed_spec_is_refused(tmp_path: Path) -> None:
    import dspy

    from synalign.agents.generator import SampleGenerator
    from synalign.agents.specs import load_optimized, save_optimized

    program = SampleGenerator()
    demo = dspy.Example(task="t", label="positive", attributes="a", demonstrations=["x"], n=1, texts=["a new one"])
    program.generate.demos = [demo]
    program.generate.signature = program.generate.signature.with_instructions("Tuned instructions.")
    path = save_optimized(program, tmp_path / "opt.json", program.spec, extra={"optimizer": "manual"})
    payload = json.loads(path.read_text())
    assert payload["spec_sha256"] == program.spec.sha256 and payload["meta"] == {"optimizer": "manual"}
    assert payload["state"]["generate"]["lm"] is None

    fresh = load_optimized(SampleGenerator(), path, program.spec)
    assert fresh.generate.signature.instructions == "Tuned instructions."
    assert [d["texts"] for d in fresh.generate.demos] == [["a new one"]]

    # a spec with the same fields in another order: DSPy alone would restore descriptions by position ...
    base = load_spec("generate_samples")
    swapped = load_spec(_write_spec(tmp_path / "s.yaml", base, inputs=[f.model_dump() for f in reversed(base.inputs)]))
    raw = SampleGenerator(swapped)
    raw.load_state(payload["state"])
    assert raw.generate.signature.input_fields["n"].json_schema_extra["desc"] == base.inputs[0].description  # swapped!
    # ... so the loader refuses it
    with pytest.raises(InputError, match="changed since this state was optimised"):
        load_optimized(SampleGenerator(swapped), path, swapped)


def test_bad_state_files_are_input_errors(tmp_path: Path) -> None:
    from synalign.agents.generator import SampleGenerator
    from synalign.agents.specs import load_optimized

    spec = load_spec("generate_samples")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "synalign-dspy-state/1",\n "spec": ', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.json:2: optimised prompt state is not valid JSON"):
        load_optimized(SampleGenerator(), bad, spec)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"generate": {}}), encoding="utf-8")
    with pytest.raises(InputError, match="not a synalign optimised-prompt file"):
        load_optimized(SampleGenerator(), other, spec)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps({"format": "synalign-dspy-state/1", "spec": "summarize_attributes", "spec_sha256": "x"})
    )
    with pytest.raises(InputError, match="is for prompt 'summarize_attributes'"):
        load_optimized(SampleGenerator(), wrong, spec)
    with pytest.raises(InputError, match="cannot read"):
        load_optimized(SampleGenerator(), tmp_path / "none.json", spec)
