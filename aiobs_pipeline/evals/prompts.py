"""Prompt versions as files: one TOML file per (name, version) under `evals/prompts/`.

A file holds:

    name = "answer-with-sources"        # the prompt_name production spans carry
    version = "2"                       # the prompt_version production spans carry ("v2" is read as "2")
    description = "..."                 # optional, shown in reports
    model = "gpt-4o-mini"               # the model production calls with this version
    system = "..."                      # the system message (optional)
    template = "Context:\\n{context}\\n\\nQuestion: {question}"   # the last user message
    [parameters]                        # optional: temperature, max_tokens, seed
    temperature = 0.0

The template may use `{question}` (the case's last user message) and `{context}` (its retrieved documents,
one `[id] text` line each); literal braces are doubled. A case's earlier conversation turns are sent between
the system message and the rendered template, so multi-turn cases keep their history. Files are found by
their `name` and `version` fields, not their file names; two files claiming the same pair are an error.
"""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TEMPLATE_FIELDS = frozenset({"question", "context"})
NO_CONTEXT = "(no documents were retrieved)"


class PromptError(ValueError):
    """A prompt file is missing or invalid; the message names the file and the field."""


class PromptParameters(BaseModel):
    """Sampling parameters sent with every call of a prompt version."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    seed: int | None = None


class _PromptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    description: str = ""
    model: str = Field(min_length=1)
    system: str = ""
    template: str = Field(min_length=1)
    parameters: PromptParameters = PromptParameters()

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> str:
        return normalise_version(value)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"is not a valid template ({exc}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(n for n in names if n not in TEMPLATE_FIELDS)
        if unknown:
            raise ValueError(f"uses unknown placeholder(s) {unknown}; known: {sorted(TEMPLATE_FIELDS)}")
        if "question" not in names:
            raise ValueError("must contain {question}")
        return value


@dataclass(frozen=True)
class PromptVersion:
    """One prompt version loaded from its file."""

    name: str
    version: str
    model: str
    template: str
    system: str = ""
    description: str = ""
    parameters: PromptParameters = field(default_factory=PromptParameters)
    path: Path | None = None

    @property
    def label(self) -> str:
        """`name@version`, as reports show it."""
        return f"{self.name}@{self.version}"

    def render(self, case: dict[str, Any]) -> list[dict[str, str]]:
        """The chat messages of this version for one eval case."""
        messages: list[dict[str, str]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.extend(history(case.get("input_messages")))
        content = self.template.format(question=case.get("question") or "",
                                       context=render_context(case.get("context")))
        messages.append({"role": "user", "content": content})
        return messages

    def call_parameters(self) -> dict[str, Any]:
        """The keyword arguments for LLMClient.chat this version adds (model and sampling)."""
        params = {k: v for k, v in self.parameters.model_dump().items() if v is not None}
        return {"model": self.model, **params}


def normalise_version(value: Any) -> str:
    """A version as production spans carry it: '2' for 2, '2', 'v2' or 'V2'."""
    text = str(value).strip()
    if len(text) > 1 and text[0] in "vV" and text[1].isdigit():
        text = text[1:]
    return text


def render_context(documents: Any) -> str:
    """Documents as the prompt shows them: one `[id] text` line each."""
    if not documents:
        return NO_CONTEXT
    lines = []
    for position, doc in enumerate(documents, start=1):
        if isinstance(doc, dict):
            doc_id = doc.get("id") or doc.get("doc_id") or doc.get("document_id") or str(position)
            text = doc.get("text") or doc.get("content") or doc.get("page_content") or ""
        else:
            doc_id, text = str(position), str(doc)
        lines.append(f"[{doc_id}] {' '.join(str(text).split())}")
    return "\n".join(lines)


def history(messages: Any) -> list[dict[str, str]]:
    """The conversation before the case's last user message, without system or developer messages."""
    if not isinstance(messages, list):
        return []
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    last_user = max((i for i, m in enumerate(turns) if m.get("role") == "user"), default=None)
    if last_user is None:
        return []
    return [{"role": str(m["role"]), "content": _content_text(m.get("content"))} for m in turns[:last_user]]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if content is None else str(content)


def load_prompt_file(path: Path) -> PromptVersion:
    """Read and validate one prompt file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptError(f"prompt file {path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PromptError(f"prompt file {path}: invalid TOML ({exc})") from None
    try:
        parsed = _PromptFile(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise PromptError(f"prompt file {path}: {problems}") from None
    return PromptVersion(name=parsed.name, version=parsed.version, model=parsed.model, template=parsed.template,
                         system=parsed.system, description=parsed.description, parameters=parsed.parameters,
                         path=path)


def load_prompts(prompts_dir: Path) -> dict[tuple[str, str], PromptVersion]:
    """Every prompt version under a folder (recursively), keyed by (name, version)."""
    if not prompts_dir.is_dir():
        raise PromptError(f"prompts folder {prompts_dir} does not exist (setting evals.prompts_dir or --prompts-dir)")
    found: dict[tuple[str, str], PromptVersion] = {}
    for path in sorted(prompts_dir.rglob("*.toml")):
        prompt = load_prompt_file(path)
        key = (prompt.name, prompt.version)
        if key in found:
            raise PromptError(f"prompt {prompt.label} is defined twice: {found[key].path} and {path}")
        found[key] = prompt
    return found


def load_prompt(prompts_dir: Path, name: str, version: Any) -> PromptVersion:
    """The prompt version `name`@`version` from a folder; the error lists the versions that exist."""
    prompts = load_prompts(prompts_dir)
    wanted = normalise_version(version)
    prompt = prompts.get((name, wanted))
    if prompt is None:
        versions = sorted(v for n, v in prompts if n == name)
        known = (f"versions of {name}: {', '.join(versions)}" if versions
                 else f"prompts: {', '.join(sorted({n for n, _ in prompts})) or 'none'}")
        raise PromptError(f"no prompt {name}@{wanted} in {prompts_dir} ({known})")
    return prompt
