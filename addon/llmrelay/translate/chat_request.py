"""Anthropic Messages request → OpenAI Chat Completions request.

Rules, source → target:
- `system` (string or blocks) and `role: "system"` messages inside `messages` → one leading
  `system` message (several servers, vLLM and llama.cpp among them, reject a system message
  that is not first; Claude Code sends them mid-conversation);
- user text → string content; with images → a list of `text`/`image_url` parts (base64 →
  data URL, URL kept); text documents → text; PDF documents → OpenAI `file` parts;
- `tool_result` blocks → `role: "tool"` messages placed right after the assistant turn that
  called them, before the rest of that user turn; their images follow in a user message;
  `is_error` → the content starts with "Error: "; an empty result → "(no content)" (Kimi
  rejects empty tool messages);
- assistant text → `content`; `tool_use` → `tool_calls` with the input as a JSON string;
  `thinking` → `reasoning_content` where the provider wants it back (DeepSeek, Kimi), else
  dropped; `redacted_thinking` → dropped (opaque to anyone but Anthropic);
- a tool call left without a result (an interrupted turn) gets one saying so, since every
  provider rejects an unanswered call;
- `tools` → `function` tools (`input_schema` → `parameters`); a tool with `defer_loading` is
  left out, as Anthropic hides it from the model, until a `tool_reference` block in a tool
  result names it (that block → "Tool X is now available."); a name OpenAI would refuse (over
  64 characters, or other characters than letters, digits, `_`, `-`) → a stable short name,
  mapped back on the way out; server tools (`web_search_…`) → a clear 400, since only
  Anthropic can run them;
- `tool_choice` auto → "auto", any → "required", tool → that function, none → "none";
  `disable_parallel_tool_use` → `parallel_tool_calls: false`;
- `max_tokens` → the provider's field, clamped to the route's or provider's output cap;
- `stop_sequences` → `stop`; `temperature`, `top_p` kept; `metadata.user_id` → `user`
  (hashed when longer than 64 characters);
- `thinking` → the provider's reasoning control (see `REASONING_EFFORT`);
- `stream` → `stream` plus `stream_options.include_usage`, so usage arrives at the end;
- dropped on purpose: `top_k`, `cache_control`, `context_management`, `output_config` (read
  only for the effort), `anthropic-beta` features, `citations`, `container`, `mcp_servers`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NamedTuple

import msgspec
import orjson

from .. import presets
from ..config import OpenAIProvider as Provider, Route
from ..errors import RelayError
from ..protocols import anthropic as a

_VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class ToolNames:
    """Anthropic tool names ⇄ names an OpenAI-compatible API accepts (stable per name), and
    the deferred tools the conversation has loaded so far."""

    def __init__(self) -> None:
        self.original: dict[str, str] = {}  # short → original, for the response
        self.loaded: set[str] = set()
        self.text_tools: set[str] | None = None  # tool_format xml: the tools offered in text

    def short(self, name: str) -> str:
        if _VALID_NAME.fullmatch(name):
            return name
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        short = _INVALID_CHARS.sub("_", name)[:55] + "_" + digest
        self.original[short] = name
        return short


# Anthropic thinking → OpenAI-style effort. Budgets: Claude Code asks for 31999 on
# "ultrathink" and less for lighter thinking; adaptive thinking carries
# `output_config.effort`.
REASONING_EFFORT = (  # (largest budget, effort)
    (4096, "low"),
    (16384, "medium"),
)
_EFFORT_NAMES = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}


def _effort(req: a.Request) -> str | None:
    thinking = req.thinking
    if thinking is None or thinking.type == "disabled":
        return None
    if thinking.type == "enabled" and thinking.budget_tokens:
        return next((e for limit, e in REASONING_EFFORT if thinking.budget_tokens <= limit), "high")
    effort = (req.output_config or {}).get("effort")
    return _EFFORT_NAMES.get(effort, "medium") if isinstance(effort, str) else "medium"


def to_chat(req: a.Request, route: Route, provider: Provider, *, stream: bool) -> tuple[dict[str, Any], ToolNames]:
    names = ToolNames()
    body: dict[str, Any] = {"model": route.model, "messages": _messages(req, names, provider)}
    if ID_FORMATS.get(getattr(provider, "host", "")) == "alnum9":
        _nine_character_ids(body["messages"])

    cap = route.max_output_tokens or provider.max_output_tokens
    if req.max_tokens is not None or cap:
        limit = min(x for x in (req.max_tokens, cap) if x)
        body[provider.output_field] = limit
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if req.stop_sequences:
        body["stop"] = req.stop_sequences
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.metadata and req.metadata.user_id:
        user = req.metadata.user_id
        body["user"] = user if len(user) <= 64 else hashlib.sha256(user.encode()).hexdigest()

    if (route.tool_format or provider.tool_format) == "xml":
        _as_text(req, names, provider, body)
    else:
        add_tools(req, names, provider, body, flat=False)

    _reasoning(req, route.reasoning or provider.reasoning, body)
    return body, names


def _as_text(req: a.Request, names: ToolNames, provider: Any, body: dict[str, Any]) -> None:
    """`tool_format: xml`: no tools field; the tools described in the system message, and
    earlier calls and results written as text (`tool_text`)."""
    from . import tool_text

    tools = [orjson.loads(orjson.dumps({"name": t.name, "description": t.description,
                                        "input_schema": orjson.Fragment(bytes(t.input_schema) if t.input_schema else b"{}")}))
             for t in (a.parse_tools(bytes(req.tools)) if req.tools and req.tools != _NULL else ())
             if not a.is_server_tool(t) and _visible(t, names, req.tool_choice)]
    names.text_tools = {tool["name"] for tool in tools}
    if tools:
        choice = req.tool_choice
        body["messages"] = tool_text.as_text(body["messages"], tools, {"type": choice.type, "name": choice.name} if choice else None)


def add_tools(req: a.Request, names: ToolNames, provider: Any, body: dict[str, Any], *, flat: bool) -> None:
    """`tools`, `tool_choice` and `parallel_tool_calls`, in Chat's layout or (`flat`) the
    Responses API's."""
    tools = _tool_set(req.tools, provider, flat=flat) if req.tools and req.tools != _NULL else None
    visible = [fn for tool, fn in tools.functions if _visible(tool, names, req.tool_choice)] if tools else []
    if not visible:
        return
    names.original.update(tools.shortened)
    body["tools"] = visible
    choice = req.tool_choice
    if choice is None:
        return
    if choice.type == "tool":
        if not choice.name:
            raise RelayError("tool_choice of type 'tool' needs a name")
        name = names.short(choice.name)
        body["tool_choice"] = {"type": "function", "name": name} if flat else {"type": "function", "function": {"name": name}}
    else:
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    if choice.disable_parallel_tool_use:
        body["parallel_tool_calls"] = False


def _nine_character_ids(messages: list[dict[str, Any]]) -> None:
    """Tool call ids as Mistral takes them: each mapped to nine letters and digits, the same
    for the call and its result (its own ids already are)."""
    def short(call_id: str) -> str:
        if len(call_id) == 9 and call_id.isalnum() and call_id.isascii():
            return call_id
        digest = hashlib.sha256(call_id.encode()).digest()
        return "".join(_ALNUM[b % 62] for b in digest[:9])

    for message in messages:
        for call in message.get("tool_calls") or ():
            call["id"] = short(call["id"])
        if message["role"] == "tool":
            message["tool_call_id"] = short(message["tool_call_id"])


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _visible(tool: a.Tool, names: ToolNames, choice: a.ToolChoice | None) -> bool:
    """A deferred tool is sent once loaded, or when the client forces its use (a choice of
    a tool that is not sent is refused)."""
    if not tool.defer_loading or tool.name in names.loaded:
        return True
    return choice is not None and choice.type == "tool" and choice.name == tool.name


def _reasoning(req: a.Request, control: str, body: dict[str, Any]) -> None:
    effort = _effort(req)
    match control:
        case "effort" if effort:
            body["reasoning_effort"] = effort
        case "thinking" if req.thinking is not None:
            body["thinking"] = {"type": "disabled" if effort is None else "enabled"}
        case "openrouter" if effort:
            budget = req.thinking.budget_tokens if req.thinking else None
            body["reasoning"] = {"max_tokens": budget} if budget else {"effort": effort}


# Provider quirks of a Chat request, by the provider's host (each from the provider named):
# - Gemini's OpenAI endpoint refuses JSON-schema keywords its Schema lacks (`presets.SCHEMA_DROPS`);
# - Mistral takes only tool call ids of nine letters and digits ("Tool call id was … but
#   must be a-z, A-Z, 0-9, with a length of 9"), so ids from elsewhere are mapped, stably;
# - Groq and OpenAI refuse more than 128 tools in one request.
ID_FORMATS = {"api.mistral.ai": "alnum9"}
MAX_TOOLS = {"api.groq.com": 128, "api.openai.com": 128}


class _ToolSet(NamedTuple):
    flat: bool  # Responses API layout (name and parameters beside `type`), else Chat's
    raw: msgspec.Raw  # a copy of the bytes they came as: the request's own die with it
    functions: list[tuple[a.Tool, orjson.Fragment]]  # each tool and its translation, as JSON
    shortened: dict[str, str]  # short name → original, for names that had to change
    drops: tuple[str, ...] = ()  # the schema keywords left out for the provider


_RECENT_TOOL_SETS: list[_ToolSet] = []
_NULL = msgspec.Raw(b"null")


def _tool_set(raw: msgspec.Raw, provider: Any, *, flat: bool = False) -> _ToolSet:
    """The translated tools, cached by their exact bytes: Claude Code sends the same ~60 KB of
    tool definitions on every turn, and comparing bytes is far cheaper than translating.
    Raw compares with Raw without copying either side out of its request body."""
    drops = presets.schema_drops(provider)
    for entry in _RECENT_TOOL_SETS:
        if entry.raw == raw and entry.flat == flat and entry.drops == drops:
            return entry
    data = bytes(raw)
    try:
        tools = a.parse_tools(data)
    except a.InvalidRequest as e:
        raise RelayError(f"tools{e}" if str(e).startswith("[") else f"tools: {e}") from None
    names = ToolNames()
    limit = MAX_TOOLS.get(getattr(provider, "host", ""))
    if limit and len(tools) > limit:
        raise RelayError(f"{len(tools)} tools, and {provider.host} takes at most {limit} in one request")
    functions = [(tool, orjson.Fragment(orjson.dumps(_tool(tool, names, provider, flat, drops)))) for tool in tools]
    entry = _ToolSet(flat, msgspec.Raw(data), functions, names.original, drops)
    _RECENT_TOOL_SETS.insert(0, entry)
    del _RECENT_TOOL_SETS[8:]
    return entry


def _tool(tool: a.Tool, names: ToolNames, provider: Any, flat: bool, drops: tuple[str, ...] = ()) -> dict[str, Any]:
    if a.is_server_tool(tool):
        raise RelayError(
            f"the tool {tool.name!r} ({tool.type}) runs on Anthropic's servers; "
            f"the provider at {provider.host} cannot run it"
        )
    schema = bytes(tool.input_schema) if tool.input_schema else b'{"type":"object","properties":{}}'
    if not schema.lstrip().startswith(b"{"):
        raise RelayError(f"the input_schema of tool {tool.name!r} is not a JSON object")
    if drops:
        schema = orjson.dumps(presets.clean_schema(orjson.loads(schema), drops))
    function: dict[str, Any] = {"name": names.short(tool.name), "parameters": orjson.Fragment(schema)}
    if tool.description:
        function["description"] = tool.description
    if flat:  # the schema is the client's: not every one of them meets strict mode's rules
        return {"type": "function", **function, "strict": False}
    return {"type": "function", "function": function}


def _messages(req: a.Request, names: ToolNames, provider: Any, assistant: Any = None) -> list[dict[str, Any]]:
    """The conversation in Chat order. `assistant` writes an assistant turn (Chat's by
    default); whatever it returns needs only `role` and its calls' ids in `tool_calls`."""
    assistant = assistant or _assistant
    system = [a.system_text(req.system)]
    out: list[dict[str, Any]] = []
    for message in req.messages:
        if message.role == "system":
            system.append(_plain_text(message.content))
        elif message.role == "user":
            out.extend(_user(message.content, names, provider))
        else:
            out.append(assistant(message.content, names, provider))
    out = _answer_every_call(out)
    system_text = "\n\n".join(text for text in system if text)
    if system_text:
        out.insert(0, {"role": "system", "content": system_text})
    return out


def _plain_text(content: str | list[a.Block]) -> str:
    if isinstance(content, str):
        return content
    return "\n\n".join(block.text for block in content if isinstance(block, a.TextBlock))


def _user(content: str | list[a.Block], names: ToolNames, provider: Provider) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, a.ToolResultBlock):
            text, images = _tool_result(block, names, provider)
            results.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": text})
            parts.extend(images)
        elif not isinstance(block, (a.ThinkingBlock, a.RedactedThinkingBlock)):
            parts.append(_part(block, provider))
    if parts:
        results.append({"role": "user", "content": _content(parts)})
    return results


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Plain text as a string: some compatible servers still accept nothing else."""
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _part(block: a.Block, provider: Provider) -> dict[str, Any]:
    if isinstance(block, a.TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, a.ImageBlock):
        source = block.source
        if isinstance(source, a.Base64Source):
            return {"type": "image_url", "image_url": {"url": f"data:{source.media_type};base64,{source.data}"}}
        return {"type": "image_url", "image_url": {"url": source.url}}
    if isinstance(block, a.DocumentBlock):
        source = block.source
        if source.get("type") == "text":
            if not isinstance(source.get("data", ""), str):
                raise RelayError("a text document's source.data must be a string")
            return {"type": "text", "text": source.get("data", "")}
        if source.get("type") == "base64" and source.get("media_type") == "application/pdf":
            name = (block.title or "document") + ".pdf"
            url = f"data:application/pdf;base64,{source.get('data', '')}"
            return {"type": "file", "file": {"filename": name, "file_data": url}}
        raise RelayError(f"document source of type {source.get('type')!r} cannot be sent to {provider.host}")
    raise RelayError(f"a {kind(block)} block cannot stand in a user turn")


def _tool_result(block: a.ToolResultBlock, names: ToolNames, provider: Provider) -> tuple[str, list[dict[str, Any]]]:
    content = block.content
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for part in content:
            if isinstance(part, a.ToolReferenceBlock):
                names.loaded.add(part.tool_name)
                texts.append(f"Tool {part.tool_name} is now available.")
                continue
            converted = _part(part, provider)
            if converted["type"] == "text":
                texts.append(converted["text"])
            else:
                images.append(converted)
        text = "\n\n".join(texts)
    if images:
        note = f"[{len(images)} image(s) from this tool result follow in the next user message]"
        text = f"{text}\n\n{note}" if text else note
        images.insert(0, {"type": "text", "text": f"Images returned by tool call {block.tool_use_id}:"})
    if block.is_error:
        text = f"Error: {text}" if text else "Error"
    return text or "(no content)", images


def _assistant(content: str | list[a.Block], names: ToolNames, provider: Provider) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, a.TextBlock):
            texts.append(block.text)
        elif isinstance(block, a.ToolUseBlock):
            calls.append(
                {"id": block.id, "type": "function", "function": {"name": names.short(block.name), "arguments": arguments(block)}}
            )
        elif isinstance(block, a.ThinkingBlock):
            reasoning.append(block.thinking)
        elif isinstance(block, a.RedactedThinkingBlock):
            continue
        else:
            raise RelayError(f"a {kind(block)} block cannot stand in an assistant turn")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning and provider.echoes_reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return message


def arguments(block: a.ToolUseBlock) -> str:
    return bytes(block.input).decode() if block.input else "{}"  # already JSON


def kind(block: Any) -> str:
    return type(block).__struct_config__.tag


def _answer_every_call(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every tool call a result right after its assistant turn, and turn results that
    answer no call into user text: providers reject both, Anthropic tolerates some."""
    out: list[dict[str, Any]] = []
    open_ids: list[str] = []
    orphans: list[dict[str, Any]] = []

    def close() -> None:
        for call_id in open_ids:
            out.append({"role": "tool", "tool_call_id": call_id, "content": "(no result: the tool call was interrupted)"})
        open_ids.clear()
        out.extend(orphans)
        orphans.clear()

    for message in messages:
        if message["role"] == "tool":
            if message["tool_call_id"] in open_ids:
                open_ids.remove(message["tool_call_id"])
                out.append(message)
            else:
                text = f"Result of tool call {message['tool_call_id']}: {message['content']}"
                orphans.append({"role": "user", "content": text})
            continue
        close()
        if message["role"] == "assistant":
            open_ids.extend(call["id"] for call in message.get("tool_calls", ()))
        out.append(message)
    close()
    return out
