"""What makes a recorded Claude Code request the same request on another day.

A session recorded with `-w` replays with `--server-replay`, which matches a request by its
bytes, and Claude Code's bytes change every run: the session id in `metadata.user_id`, the
date and the working directory in the system prompt, `<system-reminder>` notes, the ids this
relay makes for tool calls. `key(body)` is a digest of what stays: the model and, turn by
turn, the text, tool calls (name and input) and tool results. The addon puts it on the flow
as a header (`HEADER`), recorded with the flow and matched on replay
(`server_replay_use_headers`), with the body itself ignored.

Rules:
- kept: `model`; each message's role; text (with `<system-reminder>…</system-reminder>` cut
  out); `tool_use` name and input; `tool_result` text; images as their size;
- left out: `system` and `role: system` messages (the environment: date, folder, platform),
  `metadata`, `tools`, sampling settings, ids, `cache_control`, thinking signatures.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

HEADER = "x-llmrelay-replay"
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>\s*", re.S)


def key(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        return None
    parts: list[Any] = [data.get("model")]
    for message in data["messages"]:
        if isinstance(message, dict) and message.get("role") != "system":  # Claude Code's environment notes
            parts.append((message.get("role"), _content(message.get("content"))))
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:32]


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return _REMINDER.sub("", content)
    if not isinstance(content, list):
        return None
    out = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text = _REMINDER.sub("", str(block.get("text") or ""))
            if text.strip():
                out.append(("text", text))
        elif kind == "tool_use":
            out.append(("tool_use", block.get("name"), block.get("input")))
        elif kind == "tool_result":
            out.append(("tool_result", _content(block.get("content"))))
        elif kind == "image":
            out.append(("image", len(str((block.get("source") or {}).get("data") or ""))))
    return out
