"""Prompt versions as files: the repository's prompt files match the generator's prompts, render cases with
their history and context, and bad files get messages naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aiobs_pipeline.evals.prompts import PromptError, load_prompt, load_prompts, normalise_version
from aiobs_pipeline.evals.settings import CompareSettings, EvalSettings, eval_settings_of
from aiobs_pipeline.generate.scenario import FEATURES, INCIDENT_DEFAULTS

PROMPTS = Path(__file__).resolve().parents[2] / "evals" / "prompts"


def test_repository_prompts_cover_the_generated_production_versions() -> None:
    prompts = load_prompts(PROMPTS)
    search = FEATURES["search"]
    bad = INCIDENT_DEFAULTS["bad_prompt_version"]
    assert (search.prompt_name, search.prompt_version) in prompts
    assert (search.prompt_name, str(bad["prompt_version"])) in prompts
    for (name, version), prompt in prompts.items():
        assert any(f.prompt_name == name for f in FEATURES.values()), f"{prompt.path}: unknown prompt {name}"
        assert prompt.model and prompt.path is not None and prompt.path.suffix == ".toml"
        assert version == normalise_version(version)


def test_render_sends_history_then_the_filled_template() -> None:
    prompt = load_prompt(PROMPTS, "answer-with-sources", "v2")
    case = {"question": "When are invoices generated?",
            "input_messages": [{"role": "system", "content": "old system prompt"},
                               {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "When are invoices generated?"}],
            "context": [{"id": "kb-0101", "text": "Invoices are generated\non the first day."}]}
    messages = prompt.render(case)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == prompt.system and "old system prompt" not in str(messages)
    assert messages[-1]["content"] == ("Context:\n[kb-0101] Invoices are generated on the first day.\n\n"
                                       "Question: When are invoices generated?")
    assert prompt.call_parameters() == {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 512}
    empty = prompt.render({"question": "q?"})
    assert "(no documents were retrieved)" in empty[-1]["content"] and len(empty) == 2


@pytest.mark.parametrize(("body", "message"), [
    ('name = "p"\nversion = 1\nmodel = "m"\ntemplate = "{question} {ctx}"', "unknown placeholder"),
    ('name = "p"\nversion = 1\nmodel = "m"\ntemplate = "no placeholder"', "must contain {question}"),
    ('name = "p"\nversion = 1\nmodel = "m"\ntemplate = "{question"', "not a valid template"),
    ('name = "p"\nversion = 1\ntemplate = "{question}"', "model: Field required"),
    ('name = "p"\nversion = 1\nmodel = "m"\ntemplate = "{question}"\ncolour = "red"', "colour: Extra inputs"),
    ('name = "p"\nversion = 1\nmodel = "m"\ntemplate = "{question}"\n[parameters]\ntop_k = 3', "parameters.top_k"),
    ('name = "p"\nversion = ', "invalid TOML"),
])
def test_invalid_files_name_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "p.v1.toml").write_text(body)
    with pytest.raises(PromptError, match="p.v1.toml") as info:
        load_prompts(tmp_path)
    assert message in str(info.value)


def test_lookup_errors_list_what_exists(tmp_path: Path) -> None:
    for version in ("1", "2"):
        (tmp_path / f"p.v{version}.toml").write_text(
            f'name = "p"\nversion = "{version}"\nmodel = "m"\ntemplate = "{{question}}"')
    assert load_prompt(tmp_path, "p", "V2").version == "2"
    with pytest.raises(PromptError, match=r"no prompt p@3 .*versions of p: 1, 2"):
        load_prompt(tmp_path, "p", 3)
    with pytest.raises(PromptError, match=r"no prompt q@1 .*prompts: p"):
        load_prompt(tmp_path, "q", 1)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "copy.toml").write_text('name = "p"\nversion = "v1"\nmodel = "m"\ntemplate = "{question}"')
    with pytest.raises(PromptError, match="defined twice"):
        load_prompts(tmp_path)
    with pytest.raises(PromptError, match="does not exist"):
        load_prompts(tmp_path / "missing")


def test_eval_settings_validate_and_default() -> None:
    assert eval_settings_of(object()) == EvalSettings()
    assert CompareSettings(tolerances={"grounding": 0.1}).tolerance("grounding") == 0.1
    assert CompareSettings().tolerance("grounding") == 0.02
    with pytest.raises(ValidationError, match="unknown metric 'accuracy'"):
        CompareSettings(tolerances={"accuracy": 0.1})
    with pytest.raises(ValidationError, match="gated_metrics has unknown metric"):
        CompareSettings(gated_metrics=["accuracy"])
    with pytest.raises(ValidationError, match="Extra inputs"):
        EvalSettings(dataset={"nmae": "x"})
    with pytest.raises(ValidationError, match="evals.dataset.name"):
        EvalSettings(dataset={"name": "../escape"})
