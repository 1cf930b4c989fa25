"""Test oracle: what did Anthropic (or an Anthropic-compatible server) answer?

A deliberately small, independent reader of an Anthropic Messages API response,
used by tests as the *expected* value. It shares no code with the project under
addon/ on purpose; keep it boring.

Input is a fixture dict as stored in tests/fixtures/anthropic/responses/*.json
(keys used: "body", "stream"). Output is the final message as a plain dict, the
way the API would have returned it as JSON without streaming:

* JSON body: the parsed body, unchanged (an error body is {"type": "error", ...}).
* SSE body: the message rebuilt from the events:
  - message_start: its "message" is the starting point;
  - content_block_start: appends its "content_block" (its "index" must be the
    next position);
  - content_block_delta: text_delta appends to "text", thinking_delta appends to
    "thinking", signature_delta sets "signature", citations_delta appends its
    "citation" to "citations" (created if missing or null), input_json_delta
    pieces are collected and, at content_block_stop, joined and parsed into
    "input" ({} when nothing but empty pieces arrived);
  - message_delta: every key of "delta" (stop_reason, stop_sequence,
    stop_details, ...) is set on the message; the non-null fields of "usage"
    overwrite those of the message's usage (they are running totals);
  - ping, message_stop: ignored;
  - error: returned as is ({"type": "error", "error": {...}}), nothing after it
    is read.
  Unknown event or delta types raise ValueError: an oracle should not guess.

What the captures in tests/fixtures/anthropic/responses do (checked by hand):
live api.anthropic.com pads the data JSON with runs of spaces before the last
"}" (`{"type":"message_stop"      }`); ping data is `{"type": "ping"}` with a
space; tool_use/server_tool_use blocks start with "input": {} and the first
input_json_delta is often ""; one capture has no blank line after its last
event; none uses CRLF or sends an error event (both handled anyway).
"""
from __future__ import annotations

import json
import re


__all__ = ["read_message", "sse_events", "message_from_events"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the SSE line ends; not str.splitlines (U+2028 etc.)


def sse_events(body: str) -> list[dict]:
    """The JSON payload of every SSE event in `body`, in order.

    Follows the SSE rules that matter here: lines end in CRLF, LF or CR; an
    event ends at a blank line (or at the end of the body); `data:` lines of
    one event are joined with "\\n"; one space after the colon is dropped and
    any other padding is left to the JSON parser; comment lines (":...") and
    other fields (event:, id:, retry:) are ignored, the type is read from the
    JSON itself.
    """
    events: list[dict] = []
    data: list[str] = []

    def flush() -> None:
        if data:
            payload = "\n".join(data)
            data.clear()
            if payload.strip():
                events.append(json.loads(payload))

    for line in _LINE_BREAK.split(body):
        if line == "":
            flush()
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)
    flush()
    return events


def message_from_events(events: list[dict]) -> dict:
    """The final message rebuilt from parsed stream events (see module doc)."""
    message: dict | None = None
    partial_json: dict[int, list[str]] = {}

    for event in events:
        kind = event.get("type")
        if kind == "error":
            return event
        if kind in ("ping", "message_stop"):
            continue
        if kind == "message_start":
            message = event["message"]
            message.setdefault("content", [])
            continue
        if message is None:
            raise ValueError(f"{kind!r} event before message_start")

        content = message["content"]
        if kind == "content_block_start":
            if event["index"] != len(content):
                raise ValueError(f"content_block_start index {event['index']}, expected {len(content)}")
            content.append(event["content_block"])
        elif kind == "content_block_delta":
            block = content[event["index"]]
            delta = event["delta"]
            dtype = delta["type"]
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            elif dtype == "signature_delta":
                block["signature"] = delta["signature"]
            elif dtype == "citations_delta":
                if block.get("citations") is None:
                    block["citations"] = []
                block["citations"].append(delta["citation"])
            elif dtype == "input_json_delta":
                partial_json.setdefault(event["index"], []).append(delta["partial_json"])
            else:
                raise ValueError(f"unknown delta type {dtype!r}")
        elif kind == "content_block_stop":
            pieces = partial_json.pop(event["index"], None)
            if pieces is not None:
                joined = "".join(pieces)
                content[event["index"]]["input"] = json.loads(joined) if joined.strip() else {}
        elif kind == "message_delta":
            for key, value in event.get("delta", {}).items():
                message[key] = value
            usage = event.get("usage") or {}
            merged = dict(message.get("usage") or {})
            for key, value in usage.items():
                if value is not None:
                    merged[key] = value
            message["usage"] = merged
        else:
            raise ValueError(f"unknown event type {kind!r}")

    if message is None:
        raise ValueError("no message_start event in the stream")
    return message


def read_message(fixture: dict) -> dict:
    """The final message (or error) of one captured exchange, as plain JSON data."""
    body = fixture["body"]
    if fixture.get("stream"):
        return message_from_events(sse_events(body))
    return json.loads(body)
