"""Normalisation shared by the trace readers: chat messages, tool calls, retrieved documents, content text.

Every reader (otlp, openinference, langfuse, langsmith) stores the same shapes, built here:

* a message is `{role, content, tool_calls?: [{id, name, arguments}], tool_call_id?, name?, reasoning?,
  finish_reason?, ...}` where `content` is text (or None). Structured content (images, content blocks) is
  kept beside it in `contents`, unknown GenAI parts in `parts`, and any other non-empty key of the source
  message as it came, except transport detail (LangChain's `additional_kwargs`, `response_metadata`, ...).
  Sources understood: OpenAI chat messages and responses (`choices`), LangChain messages (dicts with `type`,
  and the serialised `{"lc": 1, "type": "constructor", ...}` form), and OpenTelemetry GenAI `{role, parts}`
  messages, where each `tool_call_response` part becomes a message of its own (OpenAI style).
* a retrieved document is `{id, score, text, rank}` plus the source's other keys.
* span kinds the source's own type vocabulary cannot express are read from the span name with
  `KIND_BY_NAME`, the table the native reader uses too.

Also here: the JSON and number coercions these need, which the readers share as well.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from typing import Any

import orjson

# LangChain message `type` values and class names -> chat roles.
ROLE_BY_TYPE = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "function",
}
ROLE_BY_CLASS = {
    "HumanMessage": "user",
    "AIMessage": "assistant",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "function",
}
# Content-part types that carry nothing but text, so a list of them is plain text.
TEXT_PART_TYPES = {None, "text", "input_text", "output_text"}
# Source-message keys mapped explicitly, or transport detail of LangChain message objects: not copied as is.
MESSAGE_KEYS_NOT_COPIED = frozenset({
    "role", "content", "parts", "tool_calls", "function_call", "tool_call_id", "id", "type", "name",
    "finish_reason", "reasoning", "reasoning_content", "additional_kwargs", "response_metadata", "usage_metadata",
    "invalid_tool_calls", "tool_call_chunks", "example", "lc", "kwargs",
})
# Keys of a document object that only say how it was serialised (LangChain), not what it is.
DOCUMENT_KEYS_NOT_COPIED = ("page_content", "type", "lc", "kwargs")


# ---------------------------------------------------------------------------------------------------------
# Values


def parse_json(value: Any) -> Any:
    """Parse a string that holds a JSON object or array; return anything else unchanged."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def dump_json(value: Any) -> str:
    """Compact JSON text of a parsed value; values orjson refuses are written with str() for the odd leaf."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, default=str, ensure_ascii=False)


def text_or_json(value: Any) -> str | None:
    """Strings as they are; other values (tool results, arguments objects) as compact JSON text."""
    if value is None or isinstance(value, str):
        return value
    return dump_json(value)


def to_number(value: Any) -> Any:
    """Turn numeric strings ("417", "0.7") into numbers; leave everything else for the row rules to judge."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
            # Counts beyond 64 bits cannot be stored; as floats the row rules report them as absurd.
            return number if abs(number) < 2**63 else float(number)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def is_count(value: Any) -> bool:
    """True for a finite int or float that is not a bool (a usable token count or cost)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def content_text(content: Any) -> str | None:
    """Flatten message content (string, list of parts, {text|content|value: ...}) into its text."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [content_text(part) for part in content]
        joined = "".join(t for t in texts if t)
        return joined or None
    if isinstance(content, dict):
        # OpenAI Assistants nest the text one level deeper: {"type": "text", "text": {"value": ...}}.
        for key in ("text", "content", "value"):
            if content.get(key) is not None:
                return content_text(content[key])
        return None
    return str(content)


# ---------------------------------------------------------------------------------------------------------
# Span kinds

# Span names the brief's RAG example uses, mapped to kinds when a line carries no explicit "kind".
KIND_BY_NAME = {
    "embedding": "embedding",
    "embed": "embedding",
    "vector_search": "retrieval",
    "retrieval": "retrieval",
    "retrieve": "retrieval",
    "reranking": "rerank",
    "rerank": "rerank",
    "tool": "tool",
}



def kind_from_name(name: Any, kinds: Collection[str]) -> str | None:
    """The kind `KIND_BY_NAME` gives the span name's prefix, when it is one of `kinds`; else None."""
    text = name.lower() if isinstance(name, str) else ""
    for prefix, kind in KIND_BY_NAME.items():
        if text.startswith(prefix) and kind in kinds:
            return kind
    return None


# ---------------------------------------------------------------------------------------------------------
# Messages


def to_tool_call(call: Any) -> dict[str, Any]:
    """{id, name, arguments} from an OpenAI, LangChain, Anthropic `tool_use` or GenAI `tool_call` object."""
    if not isinstance(call, dict):
        return {"id": None, "name": None, "arguments": call}
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    # OpenAI: function.arguments (JSON text); GenAI parts: arguments; LangChain: args; Anthropic: input.
    arguments = next((source[key] for source, key in ((call, "arguments"), (function, "arguments"),
                                                      (call, "args"), (call, "input"))
                      if source.get(key) is not None), None)
    return {"id": call.get("id"), "name": call.get("name") or function.get("name"), "arguments": arguments}


def _is_text_parts(content: Any) -> bool:
    return isinstance(content, list) and all(
        isinstance(p, str) or (isinstance(p, dict) and p.get("type") in TEXT_PART_TYPES) for p in content)


def _copy_other_keys(source: dict[str, Any], message: dict[str, Any]) -> None:
    for key, value in source.items():
        if key not in MESSAGE_KEYS_NOT_COPIED and key not in message and not key.startswith("gen_ai.") \
                and value not in (None, [], {}):
            message[key] = value


def chat_message(source: dict[str, Any], role: str | None) -> dict[str, Any]:
    """An OpenAI- or LangChain-style message dict (no GenAI `parts`) as the canonical message of `role`."""
    extra = source.get("additional_kwargs") if isinstance(source.get("additional_kwargs"), dict) else {}
    content = source.get("content")
    message: dict[str, Any] = {"role": role, "content": content_text(content)}
    if isinstance(content, list | dict) and not _is_text_parts(content):
        message["contents"] = content  # content blocks (images, tool_use, ...) beyond the text
    calls = parse_json(source.get("tool_calls") or extra.get("tool_calls"))
    function_call = source.get("function_call") or extra.get("function_call")
    if isinstance(calls, list) and calls:
        message["tool_calls"] = [to_tool_call(c) for c in calls]
    elif isinstance(function_call, dict):
        message["tool_calls"] = [to_tool_call(function_call)]
    call_id = source.get("tool_call_id") or extra.get("tool_call_id") or (source.get("id") if role == "tool" else None)
    if call_id is not None:
        message["tool_call_id"] = call_id
    for key in ("name", "finish_reason"):
        value = source.get(key, extra.get(key))
        if value is not None:
            message[key] = value
    reasoning = next((v for v in (source.get("reasoning"), source.get("reasoning_content"),
                                  extra.get("reasoning_content"), extra.get("reasoning")) if v), None)
    if reasoning:
        message["reasoning"] = content_text(reasoning)
    _copy_other_keys(source, message)
    return message


def _parts_messages(source: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """A GenAI {role, parts} message; each tool_call_response part becomes its own message (OpenAI style)."""
    main: dict[str, Any] = {"role": role, "content": None}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    other: list[Any] = []
    responses: list[dict[str, Any]] = []
    for part in source["parts"]:
        kind = part.get("type") if isinstance(part, dict) else None
        if isinstance(part, str):
            texts.append(part)
        elif kind == "text":
            texts.append(content_text(part.get("content")) or "")
        elif kind in ("reasoning", "thinking"):
            reasoning.append(content_text(part.get("content")) or "")
        elif kind == "tool_call":
            calls.append(to_tool_call(part))
        elif kind == "tool_call_response":
            result = part.get("response", part.get("result"))
            response = {"role": role, "content": text_or_json(result), "tool_call_id": part.get("id")}
            if part.get("name") is not None:
                response["name"] = part["name"]
            responses.append(response)
        else:
            other.append(part)  # blob, file, uri, server tool calls, generic parts: kept as they came
    main["content"] = "".join(texts) if texts else None
    if reasoning:
        main["reasoning"] = "".join(reasoning)
    if calls:
        main["tool_calls"] = calls
    if other:
        main["parts"] = other
    if source.get("finish_reason") is not None:
        main["finish_reason"] = source["finish_reason"]
    if source.get("name") is not None:
        main["name"] = source["name"]
    _copy_other_keys(source, main)
    keep_main = texts or reasoning or calls or other or not responses
    return ([main] if keep_main else []) + responses


def to_message(value: Any, role: str | None = None) -> list[dict[str, Any]] | None:
    """The canonical message(s) of one source message; None when `value` is not one.

    A GenAI parts message with tool responses gives several. Without a default `role`, a dict must name
    its role (`role`, or a LangChain `type`) and carry `content`, `parts` or `tool_calls`; with one, any dict
    is read as a message of that role unless it names its own.
    """
    if not isinstance(value, dict):
        return None
    if value.get("type") == "constructor" and isinstance(value.get("kwargs"), dict):
        # LangChain's serialised form: {"lc": 1, "type": "constructor", "id": [..., "AIMessage"], "kwargs": {...}}
        path = value.get("id")
        cls = path[-1].removesuffix("Chunk") if isinstance(path, list) and path and isinstance(path[-1], str) else ""
        kwargs = value["kwargs"]
        found = kwargs.get("role") if isinstance(kwargs.get("role"), str) else ROLE_BY_CLASS.get(cls)
        found = found or role
        return _build_message(kwargs, found) if found else None
    found = value.get("role") if isinstance(value.get("role"), str) and value.get("role") else None
    if found is None and isinstance(value.get("type"), str):
        found = ROLE_BY_TYPE.get(value["type"])
    if found is None:
        found = role
    elif role is None and not any(key in value for key in ("content", "parts", "tool_calls")):
        return None
    return _build_message(value, found) if found else None


def _build_message(source: dict[str, Any], role: str) -> list[dict[str, Any]]:
    if source.get("content") is None and isinstance(source.get("parts"), list):
        return _parts_messages(source, role)
    return [chat_message(source, role)]


def to_messages(value: Any, role: str | None = None) -> list[dict[str, Any]] | None:
    """Canonical messages from a message list, `{"messages": [...]}`, an OpenAI response or one message.

    Without a default `role` every item must be a message, else None (the value is something else). With
    one (a field known to hold messages), text becomes a message of that role and so does any other item,
    as JSON text.
    """
    if isinstance(value, str):
        return [{"role": role, "content": value}] if role else None
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list):
            return to_messages(value["messages"], role)
        if isinstance(value.get("choices"), list):
            messages: list[dict[str, Any]] = []
            for choice in value["choices"]:
                if not isinstance(choice, dict):
                    continue
                found = to_message(choice.get("message") or choice.get("delta"), role) or []
                if found and choice.get("finish_reason"):
                    found[0].setdefault("finish_reason", choice["finish_reason"])
                messages.extend(found)
            return messages or None
        return to_message(value, role)
    if isinstance(value, list) and value:
        if len(value) == 1 and isinstance(value[0], list):
            return to_messages(value[0], role)  # LangChain batches: [[messages of the one prompt]]
        out: list[dict[str, Any]] = []
        for item in value:
            found = to_message(item, role)
            if found is None:
                if role is None:
                    return None
                found = [{"role": role, "content": text_or_json(item)}]
            out.extend(found)
        return out
    return None


def reply_text(messages: list[dict[str, Any]] | None) -> str | None:
    """The text of the trailing assistant messages (joined by newlines), else the text of the last message."""
    if not messages:
        return None
    trailing: list[dict[str, Any]] = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            break
        trailing.insert(0, message)
    chosen = trailing or messages[-1:]
    texts = [content_text(m.get("content")) for m in chosen if isinstance(m, dict)]
    joined = "\n".join(t for t in texts if t)
    return joined or None


# ---------------------------------------------------------------------------------------------------------
# Documents


def to_documents(value: Any) -> list[dict[str, Any]] | None:
    """Documents as [{id, score, text, rank, ...}] from LangChain Documents, dicts or strings.

    Accepts a list or `{"documents": [...]}`; None when it is neither or holds something other than
    objects and strings (then it is not a document list). `rank` defaults to the position.
    """
    if isinstance(value, dict) and isinstance(value.get("documents"), list):
        value = value["documents"]
    if not isinstance(value, list) or not all(isinstance(d, dict | str) for d in value):
        return None
    documents = []
    for rank, doc in enumerate(value, start=1):
        if isinstance(doc, str):
            documents.append({"id": None, "score": None, "text": doc, "rank": rank})
            continue
        if doc.get("type") == "constructor" and isinstance(doc.get("kwargs"), dict):
            doc = doc["kwargs"]  # a serialised LangChain Document
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        text_key = next((k for k in ("page_content", "text", "content") if doc.get(k) is not None), None)
        text = doc.get(text_key) if text_key else None
        # The key the text came from is not repeated beside `text`, unless it held more than text.
        item = {k: v for k, v in doc.items()
                if k not in DOCUMENT_KEYS_NOT_COPIED and not (k == text_key and isinstance(text, str))}
        item["id"] = next((v for v in (doc.get("id"), doc.get("doc_id"), meta.get("id"), meta.get("source"))
                           if v is not None), None)
        item["text"] = text if isinstance(text, str) else content_text(text)
        item["score"] = next((v for v in (doc.get("score"), doc.get("relevance_score"), meta.get("score"),
                                          meta.get("relevance_score")) if v is not None), None)
        item.setdefault("rank", rank)
        documents.append(item)
    return documents
