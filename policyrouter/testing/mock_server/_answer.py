"""What a model says: the configured reply, and the answer one request gets from it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from policyrouter.providers.mock import forced_tool
from policyrouter.providers.schema_example import example_for
from policyrouter.testing.mock_server._prompt_cache import CacheUse

__all__ = [
    "USAGE_KEYS",
    "Answer",
    "Reply",
    "ToolCall",
    "Usage",
    "answer_for",
    "request_tokens",
    "tool_call",
    "with_cache_use",
]

USAGE_KEYS: frozenset[str] = frozenset({"input", "output", "cached", "cache_write", "reasoning"})


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]
    arguments_json: str


@dataclass(frozen=True)
class Reply:
    """How a model answers when no fault applies (:meth:`MockLLMServer.set_reply`)."""

    text: str | None
    usage: Mapping[str, int]
    latency_s: float
    tool_calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class Usage:
    input: int
    output: int
    cached: int
    cache_write: int
    reasoning: int = 0  # a part of ``output``
    cache_write_1h: int = 0  # the part of cache_write with a 1-hour lifetime
    breakdown: bool = False  # Anthropic: report ``cache_creation`` by lifetime (the request marked breakpoints)


@dataclass(frozen=True)
class Answer:
    """One request's answer, before a protocol puts it on the wire."""

    text: str | None
    tool_calls: tuple[ToolCall, ...]
    stop: Literal["end", "tool", "refusal", "length"]
    usage: Usage
    wire_usage: Mapping[str, Any] | None = None  # put on the wire as given, instead of ``usage``
    no_choices: bool = False  # OpenAI: ``choices: []``
    thinking: str | None = None  # Anthropic: a thinking block leads the answer
    reasons: bool = False  # OpenAI: a reasoning model (reports completion_tokens_details)


def tool_call(spec: Mapping[str, Any]) -> ToolCall:
    """A ``{"name": ..., "arguments": {...} or "<json>"}`` spec as a :class:`ToolCall`."""
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tool call needs a 'name', got {spec!r}")
    arguments = spec.get("arguments", {})
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    if not isinstance(arguments, Mapping):
        raise ValueError(f"tool call {name!r}: 'arguments' must be a mapping or a JSON object string")
    return ToolCall(name=name, arguments=dict(arguments), arguments_json=json.dumps(dict(arguments)))


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
                elif "content" in block:
                    parts.append(_content_text(block["content"]))
        return " ".join(parts)
    return ""


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def _estimate_input_tokens(body: Mapping[str, Any]) -> int:
    chars = len(_content_text(body.get("system")))
    chars += sum(len(_content_text(m.get("content"))) for m in _messages(body))
    return chars // 4 + 1


def request_tokens(body: Mapping[str, Any]) -> int:
    """What a request counts against a tokens-per-window limit: its estimated prompt plus its
    output cap (``max_tokens`` / ``max_completion_tokens``), as providers count at admission."""
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    return _estimate_input_tokens(body) + (cap if isinstance(cap, int) and cap > 0 else 0)


def _default_text(model: str, body: Mapping[str, Any]) -> str:
    words = 0
    for message in reversed(_messages(body)):
        if message.get("role") == "user":
            words = len(_content_text(message.get("content")).split())
            break
    return f"mock answer from {model} to a {words}-word prompt"


def _forced_tool(body: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The tool a request forces, as ``(name, JSON schema of its input)``: OpenAI
    ``tool_choice`` ``required`` (the first tool) or a named function; Anthropic ``any``
    (the first tool) or ``{type: tool, name}``."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if any("function" in t for t in tools):
        function = forced_tool(tools, choice)
        return (str(function.get("name")), function.get("parameters")) if function is not None else None
    if not isinstance(choice, dict) or choice.get("type") not in ("any", "tool"):
        return None
    wanted = choice.get("name") if choice["type"] == "tool" else None
    for tool in tools:
        if wanted is None or tool.get("name") == wanted:
            return str(tool.get("name")), tool.get("input_schema")
    return (wanted, None) if isinstance(wanted, str) else None


def _json_answer(body: Mapping[str, Any], default: str) -> str | None:
    """An OpenAI ``response_format`` answer: JSON generated from the schema, or a JSON object."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return None
    spec = fmt.get("json_schema")
    if fmt.get("type") == "json_schema" and isinstance(spec, dict):
        return json.dumps(example_for(spec.get("schema") or {}))
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": default})
    return None


def answer_for(
    model: str,
    body: Mapping[str, Any],
    reply: Reply | None,
    *,
    refusal: bool,
    text_override: str | None = None,
    tool_calls_override: tuple[ToolCall, ...] | None = None,
    wire_usage: Mapping[str, Any] | None = None,
    no_choices: bool = False,
    max_tokens: bool = False,
    reasoning: int = 0,
    thinking: str | None = None,
    reasons: bool = False,
) -> Answer:
    """The answer ``model`` gives to the request ``body`` (text, tool calls, usage).

    Precedence: a refusal; the fault's text or tool calls; the model's reply; then the
    default: a forced tool's call (arguments generated from its schema), JSON for a
    ``response_format``, else ``"mock answer from <model> to a N-word prompt"``. ``reasoning``
    tokens (and the words of ``thinking``) are part of the output count."""
    usage = reply.usage if reply is not None else {}
    forced = _forced_tool(body)
    text, tool_calls = _text_and_calls(model, body, reply, refusal, text_override, tool_calls_override, forced)
    if forced is not None and text is not None and not tool_calls:
        text, tool_calls = _as_forced_tool_input(forced[0], text)
    output = len(text.split()) if text else 0
    output += sum(len(call.arguments_json) // 4 + 1 for call in tool_calls) + reasoning
    stop: Literal["end", "tool", "refusal", "length"] = "refusal" if refusal else ("tool" if tool_calls else "end")
    if max_tokens:  # cut by the request's output cap
        stop = "length"
    return Answer(
        text=text,
        tool_calls=tool_calls,
        stop=stop,
        usage=Usage(
            input=usage.get("input", _estimate_input_tokens(body)),
            output=usage.get("output", output),
            cached=usage.get("cached", 0),
            cache_write=usage.get("cache_write", 0),
            reasoning=reasoning,
        ),
        wire_usage=wire_usage,
        no_choices=no_choices,
        thinking=thinking,
        reasons=reasons,
    )


def _text_and_calls(
    model: str,
    body: Mapping[str, Any],
    reply: Reply | None,
    refusal: bool,
    text_override: str | None,
    tool_calls_override: tuple[ToolCall, ...] | None,
    forced: tuple[str, Any] | None,
) -> tuple[str | None, tuple[ToolCall, ...]]:
    """The answer's text and tool calls, by :func:`answer_for`'s precedence."""
    tool_calls = reply.tool_calls if reply is not None and not refusal else ()
    if tool_calls_override is not None and not refusal:
        tool_calls = tool_calls_override
    if refusal:
        return None, tool_calls
    if text_override is not None:
        return text_override, tool_calls
    if tool_calls_override is not None:
        return None, tool_calls  # the scripted calls are this answer; the model's reply text is not
    if reply is not None and reply.text is not None:
        return reply.text, tool_calls
    if tool_calls:
        return None, tool_calls
    if forced is not None:  # a call with arguments valid against the tool's schema
        arguments = example_for(forced[1] or {"type": "object"})
        arguments = arguments if isinstance(arguments, dict) else {}
        return None, (ToolCall(name=forced[0], arguments=arguments, arguments_json=json.dumps(arguments)),)
    default = _default_text(model, body)
    return _json_answer(body, default) or default, tool_calls


def _as_forced_tool_input(name: str, text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    """Forced tool use (structured output): a JSON object reply becomes that tool's input; other text stays text."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return None, (ToolCall(name=name, arguments=value, arguments_json=json.dumps(value)),)
    return text, ()


def with_cache_use(answer: Answer, reply: Reply | None, use: CacheUse | None, *, anthropic: bool) -> Answer:
    """``answer`` with the prompt cache's reads and writes, unless its usage is scripted (a reply
    that sets ``cached`` or ``cache_write``, or wire usage). Anthropic's ``input`` is then the
    uncached rest of the prompt; OpenAI's the whole prompt, cached part included."""
    scripted = reply is not None and ("cached" in reply.usage or "cache_write" in reply.usage)
    if use is None or scripted or answer.wire_usage is not None:
        return answer
    if not anthropic:  # the prompt's count stays the mock's usual one
        return replace(answer, usage=replace(answer.usage, cached=min(use.read, answer.usage.input)))
    given = reply is not None and "input" in reply.usage
    total = answer.usage.input if given else max(answer.usage.input, use.prompt)
    read = min(use.read, total)
    write = min(use.write_5m + use.write_1h, total - read)
    hour = min(use.write_1h, write)
    usage = replace(answer.usage, input=total - read - write, cached=read, cache_write=write, cache_write_1h=hour)
    return replace(answer, usage=replace(usage, breakdown=True))
