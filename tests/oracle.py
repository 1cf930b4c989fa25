"""Test oracle: what did an OpenAI-compatible provider say?

A deliberately small, independent reader of a Chat Completions response (plain
JSON or an SSE stream), used by tests as the *expected* value when checking the
translator. It shares no code with the translator on purpose; keep it boring.

Input is a fixture dict as stored in tests/fixtures/openai-chat/*.json
(keys used: "body", "stream"). Only choice index 0 is read.

What the captures in tests/fixtures/openai-chat do (checked by hand):

* reasoning arrives as `reasoning_content` (DeepSeek, Kimi via Avian, Z.AI,
  xAI grok-3-mini, llama.cpp), as `reasoning` (Groq with reasoning_format=parsed,
  OpenRouter, Vercel AI Gateway, Ollama non-stream `message.reasoning`), or as
  Mistral typed parts: content = [{"type": "thinking", "thinking": [{"type":
  "text", "text": ...}]}]; Mistral may also put the answer in [{"type": "text"}].
  No capture sends both `reasoning_content` and `reasoning` non-empty in one
  delta, so concatenating both cannot double-count. `reasoning_details` mirrors
  `reasoning` (or is encrypted/signature-only) and is ignored here.
  Groq with reasoning_format=raw leaves "<think>...</think>" inside `content`;
  the oracle reports that text verbatim.
* tool calls, streamed: OpenAI, OpenRouter, Vercel gateway, Kimi, llama.cpp send
  the first fragment with index+id+name and later fragments with index only;
  xAI, Z.AI and Groq send each call whole in one chunk (with index); Mistral
  sends the whole call in one chunk WITHOUT index (and without type), together
  with finish_reason and usage. Non-stream: Gemini's OpenAI-compat endpoint gives
  tool_calls without index and with id "" (empty string); Z.AI, Ollama and
  DeepSeek include an index even in non-stream messages.
  Merge rule: a fragment with `index` merges into the call with that index;
  without `index` it merges into the call with the same non-empty id, else
  starts a new call if it carries an id or a name, else extends the last call.
  The first non-empty id/name wins (an id of "" is reported as ""); arguments
  are concatenated.
* usage: top-level `usage` (often `null` on every chunk, then a choices:[]
  chunk, or attached to the finish chunk); Groq's deepseek-r1 stream only has
  `x_groq.usage`, which is used when there is no top-level usage.
* finish_reason: some streams repeat it (Kimi/OpenRouter send it twice) or send
  a later chunk with finish_reason null (OpenRouter usage chunk); the last
  non-null one is kept.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Said:
    text: str = ""
    reasoning: str = ""
    refusal: str = ""
    # (id, name, arguments_str, parsed_arguments or None), in index order
    tool_calls: list[tuple[str | None, str | None, str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict | None = None
    error: dict | None = None
    done: bool = False


def sse_events(body: str):
    """Yield (event_name, data) per SSE event, following the WHATWG rules."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    event, data = None, []
    for line in lines + [""]:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith(":"):
            continue  # comment, e.g. ": OPENROUTER PROCESSING"
        else:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value


def read_chat(fixture: dict) -> Said:
    said = Said()
    calls: list[dict] = []
    body = fixture["body"]

    if fixture.get("stream"):
        objects = []
        for event, data in sse_events(body):
            if data.strip() == "[DONE]":
                said.done = True
                continue
            obj = json.loads(data)
            if event == "error" and "error" not in obj:
                obj = {"error": obj}
            objects.append((obj, "delta"))
    else:
        objects = [(json.loads(body), "message")]

    for obj, part in objects:
        if obj.get("error") is not None:
            said.error = obj["error"]
        usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
        if usage:
            said.usage = usage
        for choice in obj.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                said.finish_reason = choice["finish_reason"]
            delta = choice.get(part) or {}
            _read_content(said, delta.get("content"))
            said.reasoning += delta.get("reasoning_content") or ""
            said.reasoning += delta.get("reasoning") or ""
            said.refusal += delta.get("refusal") or ""
            for frag in delta.get("tool_calls") or []:
                _merge_tool_call(calls, frag)

    for call in sorted(calls, key=lambda c: c["order"]):
        try:
            parsed = json.loads(call["arguments"])
        except ValueError:
            parsed = None
        said.tool_calls.append((call["id"], call["name"], call["arguments"], parsed))
    return said


def _read_content(said: Said, content) -> None:
    if isinstance(content, str):
        said.text += content
    elif isinstance(content, list):  # Mistral typed parts
        for p in content:
            if p.get("type") == "text":
                said.text += p.get("text") or ""
            elif p.get("type") == "thinking":
                thinking = p.get("thinking")
                if isinstance(thinking, str):
                    said.reasoning += thinking
                else:
                    for t in thinking or []:
                        if t.get("type") == "text":
                            said.reasoning += t.get("text") or ""


def _merge_tool_call(calls: list[dict], frag: dict) -> None:
    fn = frag.get("function") or {}
    fid, name = frag.get("id") or None, fn.get("name") or None  # "" counts as absent
    call = None
    if frag.get("index") is not None:
        call = next((c for c in calls if c["index"] == frag["index"]), None)
    elif fid is not None:
        call = next((c for c in calls if c["id"] == fid), None)
    elif name is None and calls:
        call = calls[-1]
    if call is None:
        index = frag.get("index")
        call = {"index": index, "order": index if index is not None else len(calls),
                "id": None, "name": None, "arguments": ""}
        calls.append(call)
    if not call["id"] and frag.get("id") is not None:
        call["id"] = frag["id"]  # keep Gemini's "" as said
    call["name"] = call["name"] or name
    call["arguments"] += fn.get("arguments") or ""
