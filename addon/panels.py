"""Optional terminal panels, one per translated exchange (`--set adapter_panels=true`): the
route, what the client asked (its last message, the tools it offered) and what it got (the
answer's text and tool calls), tokens and timing, as a `rich` panel.

This is terminal glue only: it reads what the addon already keeps for the flow.
"""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from llmrelay import sse, usage
from llmrelay.protocols import anthropic as a

_console = Console(highlight=False, soft_wrap=True)
PREVIEW = 300  # characters of each text shown


def show(entry: dict[str, Any], client_request: bytes | None, client_response: bytes | None) -> None:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold")
    table.add_column()
    asked = _asked(client_request)
    if asked:
        table.add_row("asked", asked)
    got = _got(client_response)
    if got:
        table.add_row("got", got)
    tokens = f"{entry['input_tokens'] + entry['cache_read_input_tokens']} in / {entry['output_tokens']} out"
    table.add_row("usage", f"{tokens}{usage.ttft(entry)} · {entry['total_ms']:.0f} ms · {entry['status']}"
                  + (f" {entry['error_type']}" if entry.get("error_type") else ""))
    if entry.get("failed"):
        table.add_row("failed", "; ".join(entry["failed"]))
    title = f"{entry['client_model']} → {entry['provider']}:{entry['model']}"
    style = "red" if entry["status"] >= 400 or entry.get("error_type") else "green"
    _console.print(Panel(table, title=title, title_align="left", border_style=style))


def _asked(body: bytes | None) -> str:
    try:
        request = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list) or not request["messages"]:
        return ""
    last = request["messages"][-1]
    text = _text(last.get("content")) if isinstance(last, dict) else ""
    tools = request.get("tools") or []
    return f"{len(request['messages'])} messages, {len(tools)} tools; last: {_cut(text)}"


def _got(body: bytes | None) -> str:
    if not body:
        return ""
    if body.lstrip().startswith(b"{"):
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ""
    else:
        acc = a.Accumulator()
        decoder = sse.Decoder()
        for event in decoder.feed(body) + decoder.flush():
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("type"):
                acc.add(data)
        message = acc.message or {}
    if not isinstance(message, dict):
        return ""
    content = message.get("content") or []
    text = "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    calls = [f"{b.get('name')}({_cut(orjson.dumps(b.get('input') or {}).decode(), 80)})" for b in content
             if isinstance(b, dict) and b.get("type") == "tool_use"]
    return "; ".join(part for part in (_cut(text), ", ".join(calls)) if part) or "(nothing)"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text") or b.get("content") or "") for b in content if isinstance(b, dict))
    return ""


def _cut(text: str, size: int = PREVIEW) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"
