"""Anthropic Messages request → OpenAI Responses request (the public API, and the Codex
backend of a ChatGPT subscription).

The conversation is first put in Chat order by `chat_request` (system text gathered, every
tool call answered right after its turn, results' images after them, deferred tools, names
made valid), then written as Responses items.

Rules, source → target:
- `system` and mid-conversation system messages → `instructions` (the Codex backend refuses a
  `system` role in `input` and wants instructions that are never empty);
- user text and images → a user `message` item with `input_text` / `input_image` parts
  (base64 → data URL, URL kept); PDF documents → `input_file`;
- an assistant turn → its items in block order, as the model produced them: text → an
  assistant `message` item with an `output_text` part (adjacent text blocks joined),
  `tool_use` → `function_call` (`call_id` = the tool use id, `arguments` the input as JSON);
- `tool_result` → `function_call_output` right after its call (images → the next user
  message, as for Chat);
- a `thinking` block this relay made from a reasoning item of this provider (signature
  `SIGNED<origin>.…`) → that `reasoning` item again, summary and `encrypted_content`, so the
  model keeps its reasoning across tool calls with `store: false`; any other thinking →
  dropped (only Anthropic reads its signatures, and only the provider and account that
  made encrypted reasoning can decrypt it), raw `reasoning_text` included: the Codex CLI
  never sends raw reasoning back either (gpt-oss models are trained to drop it);
- `tools` → flat `function` tools (`strict: false`: clients' schemas are not all strict-mode
  schemas), names over 64 characters shortened and mapped back; server tools → a clear 400;
- `tool_choice` auto/any/tool/none → auto/required/function/none;
  `disable_parallel_tool_use` → `parallel_tool_calls: false`;
- `max_tokens` → `max_output_tokens`, clamped to the route's or provider's cap and to the
  API's minimum of 16; left out for Codex, which refuses it;
- `thinking` (a budget, or adaptive with `output_config.effort`) → `reasoning.effort`, with
  `summary` (default "auto") and `include: ["reasoning.encrypted_content"]`; the route's or
  provider's `reasoning_effort` when the client asks for none, and `reasoning_effort: none`
  sends no reasoning field at all (models that do not reason refuse them);
  `verbosity` → `text.verbosity`;
- `temperature`, `top_p` kept for the public API unless reasoning is asked for (reasoning
  models refuse them), dropped for Codex (refused there);
- `metadata.user_id` → `safety_identifier` (hashed) on the public API; its Claude Code
  session id → `prompt_cache_key` (and Codex's `session_id` header), so one conversation
  keeps hitting the same prompt cache;
- `store: false` always (the relay sends the whole conversation each turn), `stream` as the
  client asks (always true for Codex, which streams only); no item ids (with `store: false`
  an id is a reference to nothing, and the backend refuses it);
- dropped: `stop_sequences` (the Responses API has no stop), `top_k`, `cache_control`,
  `context_management`, citations, `anthropic-beta` features.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable

import orjson

from ..config import ResponsesProvider, Route
from ..errors import RelayError
from ..protocols import anthropic as a
from ..protocols.openai_responses import encrypted
from .chat_request import ToolNames, _effort, _messages, add_tools, arguments, kind

DEFAULT_INSTRUCTIONS = "You are a helpful assistant."  # Codex refuses empty instructions
MIN_OUTPUT_TOKENS = 16  # the public API's floor for max_output_tokens
_SESSION = re.compile(r"session_([0-9a-fA-F-]{36})")


def to_responses(req: a.Request, route: Route, provider: ResponsesProvider, *, stream: bool) -> tuple[dict[str, Any], ToolNames, str | None]:
    """The request body, the tool names to map back, and the client's session id (if any)."""
    codex = provider.codex
    names = ToolNames()
    instructions, items = _items(_messages(req, names, provider, _assistant_turn(provider.origin)))
    body: dict[str, Any] = {"model": route.model}
    if instructions.strip() or codex:
        body["instructions"] = instructions if instructions.strip() else DEFAULT_INSTRUCTIONS
    body["input"] = items
    body["store"] = False
    body["stream"] = stream or codex

    cap = route.max_output_tokens or provider.max_output_tokens
    if not codex and (req.max_tokens is not None or cap):
        body["max_output_tokens"] = max(min(x for x in (req.max_tokens, cap) if x), MIN_OUTPUT_TOKENS)
    if not codex:
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p

    add_tools(req, names, provider, body, flat=True)

    configured = route.reasoning_effort or provider.reasoning_effort
    # `none` configured: a model that does not reason (gpt-4.1, many local models) refuses
    # every reasoning field, so none is sent, whatever the client asks.
    effort = None if configured == "none" else _effort(req) or configured
    if effort:
        reasoning: dict[str, Any] = {"effort": effort}
        summary = route.reasoning_summary or provider.reasoning_summary
        if summary != "none":
            reasoning["summary"] = summary
        body["reasoning"] = reasoning
        body.pop("temperature", None)  # reasoning models refuse sampling settings
        body.pop("top_p", None)
    if effort or (codex and configured != "none"):
        body["include"] = ["reasoning.encrypted_content"]
    verbosity = route.verbosity or provider.verbosity
    if verbosity:
        body["text"] = {"verbosity": verbosity}

    user = req.metadata.user_id if req.metadata else None
    session = _short(session_of(user))
    if session:
        body["prompt_cache_key"] = session
    if user and not codex:
        body["safety_identifier"] = hashlib.sha256(user.encode()).hexdigest()[:64]
    return body, names, session


def _short(key: str | None) -> str | None:
    """The API refuses a prompt_cache_key over 64 characters: a longer one is hashed."""
    return key if key is None or len(key) <= 64 else hashlib.sha256(key.encode()).hexdigest()


def session_of(user_id: str | None) -> str | None:
    """Claude Code's session id inside `metadata.user_id` (a JSON object in recent versions,
    `user_…_session_<uuid>` before)."""
    if not user_id:
        return None
    if user_id.startswith("{"):
        try:
            value = orjson.loads(user_id).get("session_id")
        except (orjson.JSONDecodeError, AttributeError):
            value = None
        return value if isinstance(value, str) and value else None
    found = _SESSION.search(user_id)
    return found.group(1) if found else None


def _items(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Chat-ordered messages (assistant turns already items) → instructions and items."""
    instructions = ""
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "system":
            instructions = message["content"]
        elif role == "user":
            items.append({"type": "message", "role": "user", "content": _parts(message["content"])})
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": message["tool_call_id"], "output": message["content"]})
        else:
            items.extend(message["items"])
    return instructions, items


def _assistant_turn(origin: str) -> Callable[[str | list[a.Block], ToolNames, Any], dict[str, Any]]:
    """How `_messages` writes an assistant turn for this provider: its items in block order
    (reasoning, text and calls as the model produced them), with the calls' ids for the
    pairing of calls and results."""

    def turn(content: str | list[a.Block], names: ToolNames, provider: Any) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        calls: list[dict[str, str]] = []
        for block in [a.TextBlock(text=content)] if isinstance(content, str) else content:
            if isinstance(block, a.TextBlock):
                if not block.text:
                    continue
                if items and items[-1]["type"] == "message":
                    items[-1]["content"][0]["text"] += block.text  # adjacent text blocks: one text
                else:
                    items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": block.text}]})
            elif isinstance(block, a.ToolUseBlock):
                items.append({"type": "function_call", "call_id": block.id, "name": names.short(block.name), "arguments": arguments(block)})
                calls.append({"id": block.id})
            elif isinstance(block, a.ThinkingBlock):
                secret = encrypted(block.signature or "", origin)
                if secret is None:
                    continue  # another provider's (or account's), or raw reasoning: see the rules
                summary = [{"type": "summary_text", "text": block.thinking}] if block.thinking else []
                items.append({"type": "reasoning", "summary": summary, "encrypted_content": secret})
            elif not isinstance(block, a.RedactedThinkingBlock):
                raise RelayError(f"a {kind(block)} block cannot stand in an assistant turn")
        return {"role": "assistant", "items": items, "tool_calls": calls}

    return turn


def _parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "input_text", "text": content}]
    parts = []
    for part in content:
        kind = part["type"]
        if kind == "text":
            parts.append({"type": "input_text", "text": part["text"]})
        elif kind == "image_url":
            parts.append({"type": "input_image", "image_url": part["image_url"]["url"], "detail": "auto"})
        elif kind == "file":
            parts.append({"type": "input_file", "filename": part["file"]["filename"], "file_data": part["file"]["file_data"]})
    return parts
