"""Test oracle: what did an OpenAI Responses API answer say?

A deliberately small, independent reader of a Responses answer (a JSON response object or
its SSE stream), used by tests as the *expected* value when checking a translator. It
shares no code with addon/ on purpose; keep it boring. It returns the `Said` of
tests/oracle.py, filled this way:

* text: the `output_text` parts of `message` items; refusal: their `refusal` parts (tests
  read `text + refusal` as what the model said, as they do for Chat Completions).
* reasoning: the `summary_text` parts of `reasoning` items joined with "\\n\\n" (one part
  per summary paragraph, as the API splits them); for an item without summary text, its
  `reasoning_text` content (raw chain of thought, from OpenRouter and DeepSeek).
  `encrypted_content` is not read: it is opaque, and the live API sends a different
  value in `output_item.added`, `output_item.done` and `response.completed`.
* tool_calls: one (call_id, name, arguments, parsed arguments or None) per
  `function_call` item, in output order; the item `id` (fc_...) is not the call id.
* finish_reason, in Anthropic's words: status `completed` gives "tool_use" when a
  function call was made, else "end_turn"; `incomplete` gives "max_tokens" for
  `max_output_tokens` and "refusal" for `content_filter`; `failed` gives None and
  sets `error`.
* usage: {input_tokens, output_tokens, cached_tokens, reasoning_tokens}, the last two
  from `input_tokens_details` / `output_tokens_details` (0 when absent).
* done: a terminal event (`response.completed`, `.incomplete`, `.failed`) was seen; a
  JSON body is always done.

Streams are read the way clients that talk to the ChatGPT Codex backend must read them:
the items are those of the terminal event's `response.output` unless it is empty (the
Codex backend always sends `output: []`), then those of the `response.output_item.done`
events ordered by `output_index` (OpenRouter finishes index 0 after index 1), then those
only announced by `output_item.added`. An item whose text, summary or arguments are
empty gets them from its deltas (a backend may send text only as deltas). Unknown item
or content types raise ValueError: an oracle should not guess.

What the captures in tests/fixtures/openai-responses do (checked by hand): OpenAI sends
`event:` lines and an `obfuscation` padding field on deltas; OpenRouter sends `:` comment
lines, no `event:` lines, ends with `data: [DONE]`, and renames the reasoning item's id in
`response.completed`; every capture repeats the items in `response.completed`, none ends
`incomplete` or `failed`.
"""
from __future__ import annotations

import json
from typing import Any

from tests.oracle import Said, sse_events

__all__ = ["read_responses", "response_events"]

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
# delta event type -> (what it fills, the event key that numbers the part)
DELTAS = {
    "response.output_text.delta": ("output_text", "content_index"),
    "response.refusal.delta": ("refusal", "content_index"),
    "response.reasoning_summary_text.delta": ("summary_text", "summary_index"),
    "response.reasoning_text.delta": ("reasoning_text", "content_index"),
    "response.function_call_arguments.delta": ("arguments", None),
}
STOP = {"max_output_tokens": "max_tokens", "content_filter": "refusal"}


def response_events(body: str) -> list[dict]:
    """The JSON payload of every event of a Responses stream (comments and [DONE] skipped)."""
    return [json.loads(data) for _, data in sse_events(body) if data.strip() != "[DONE]"]


def read_responses(fixture: dict) -> Said:
    said = Said()
    if fixture.get("stream"):
        response, items = _replay(response_events(fixture["body"]), said)
    else:
        response = json.loads(fixture["body"])
        if "error" in response and "output" not in response:  # an HTTP error body
            said.error = response["error"]
            return said
        items, said.done = response.get("output") or [], True
    for item in items:
        _read_item(said, item)
    if response is not None:
        _read_end(said, response)
    return said


def _replay(events: list[dict], said: Said) -> tuple[dict | None, list[dict]]:
    """The terminal response object (None without one) and the answer's items."""
    added: dict[int, dict] = {}
    finished: dict[int, dict] = {}
    deltas: dict[tuple[int, str, int], str] = {}
    response = None
    for event in events:
        kind = event.get("type")
        if kind == "response.output_item.added":
            added[event["output_index"]] = event["item"]
        elif kind == "response.output_item.done":
            finished[event["output_index"]] = event["item"]
        elif kind in DELTAS:
            fills, numbered_by = DELTAS[kind]
            key = (event["output_index"], fills, event.get(numbered_by, 0) if numbered_by else 0)
            deltas[key] = deltas.get(key, "") + event["delta"]
        elif kind in TERMINAL:
            response, said.done = event["response"], True
        elif kind == "error":
            said.error = event.get("error") or event
    items = (response or {}).get("output") or [finished.get(i, added.get(i)) for i in sorted(added | finished)]
    return response, [_with_deltas(item, i, deltas) for i, item in enumerate(items)]


def _with_deltas(item: dict, index: int, deltas: dict[tuple[int, str, int], str]) -> dict:
    """The item, with what its deltas said where the item itself is empty."""
    def streamed(fills: str) -> list[str]:
        found = sorted((k[2], text) for k, text in deltas.items() if k[:2] == (index, fills))
        return [text for _, text in found]

    item = dict(item)
    kind = item.get("type")
    if kind == "message" and not any(_part_text(p) for p in item.get("content") or []):
        parts = [{"type": "output_text", "text": t} for t in streamed("output_text")]
        item["content"] = parts + [{"type": "refusal", "refusal": t} for t in streamed("refusal")]
    elif kind == "reasoning":
        if not any(p.get("text") for p in item.get("summary") or []):
            item["summary"] = [{"type": "summary_text", "text": t} for t in streamed("summary_text")]
        if not any(p.get("text") for p in item.get("content") or []):
            item["content"] = [{"type": "reasoning_text", "text": t} for t in streamed("reasoning_text")]
    elif kind == "function_call" and not item.get("arguments"):
        item["arguments"] = "".join(streamed("arguments"))
    return item


def _part_text(part: dict) -> str:
    return part.get("text") or part.get("refusal") or ""


def _read_item(said: Said, item: dict) -> None:
    kind = item.get("type")
    if kind == "message":
        for part in item.get("content") or []:
            if part.get("type") == "output_text":
                said.text += part.get("text") or ""
            elif part.get("type") == "refusal":
                said.refusal += part.get("refusal") or ""
            else:
                raise ValueError(f"unknown message content part {part.get('type')!r}")
    elif kind == "reasoning":
        texts = [p["text"] for p in item.get("summary") or [] if p.get("text")]
        texts = texts or [p["text"] for p in item.get("content") or [] if p.get("text")]
        said.reasoning = "\n\n".join(filter(None, [said.reasoning, *texts]))
    elif kind == "function_call":
        arguments = item.get("arguments") or ""
        said.tool_calls.append((item.get("call_id"), item.get("name"), arguments, _parsed(arguments)))
    else:
        raise ValueError(f"unknown output item {kind!r}")


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return None


def _read_end(said: Said, response: dict) -> None:
    status = response.get("status")
    if status == "completed":
        said.finish_reason = "tool_use" if said.tool_calls else "end_turn"
    elif status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        said.finish_reason = STOP.get(reason, reason)
    elif status == "failed":
        said.error = response.get("error")
    usage = response.get("usage")
    if usage:
        said.usage = {
            "input_tokens": usage.get("input_tokens", 0),
            "output_tokens": usage.get("output_tokens", 0),
            "cached_tokens": (usage.get("input_tokens_details") or {}).get("cached_tokens", 0),
            "reasoning_tokens": (usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0),
        }
