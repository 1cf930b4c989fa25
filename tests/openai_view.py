"""How an OpenAI Chat client sees an answer: the strict chunk grammar, and the openai SDK
reading a body offline."""

from __future__ import annotations

import json
from typing import Any

import openai

from sdk_http import openai_httpx as httpx


def chunks_of(body: bytes) -> list[Any]:
    """The `data:` payloads of a Chat stream, in order (`[DONE]` as the string "[DONE]")."""
    out = []
    for line in body.decode().split("\n"):
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def check_chunks(body: bytes, *, include_usage: bool = False) -> list[dict]:
    """The grammar of a Chat stream as OpenAI sends one: one id and object for all chunks;
    the first carries `role: assistant`; each tool call's first fragment has its `index`,
    `id`, `type` and name, later ones the index and arguments only; exactly one
    `finish_reason`; with `include_usage` a last chunk with `choices: []` and usage; then
    `data: [DONE]`. Or an `error` payload, after which nothing follows. Returns the chunks."""
    chunks = chunks_of(body)
    assert chunks, "no chunks"
    if isinstance(chunks[-1], dict) and "error" in chunks[-1]:
        error = chunks[-1]["error"]
        assert set(error) >= {"message", "type", "code"}, error
        return chunks[:-1]
    assert chunks[-1] == "[DONE]", chunks[-3:]
    chunks = chunks[:-1]
    assert "[DONE]" not in chunks
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["created"] for c in chunks}) == 1 and len({c["model"] for c in chunks}) == 1
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices if c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1, finishes
    assert with_choices[-1]["choices"][0]["finish_reason"] == finishes[0]
    seen: set[int] = set()
    for chunk in with_choices:
        for call in chunk["choices"][0]["delta"].get("tool_calls") or ():
            if call["index"] not in seen:
                assert call["index"] == len(seen), "tool call indices must count up from 0"
                assert call["id"] and call["type"] == "function" and call["function"]["name"], call
                seen.add(call["index"])
            else:
                assert set(call) == {"index", "function"} and set(call["function"]) == {"arguments"}, call
    if include_usage:
        assert chunks[-1]["choices"] == [] and set(chunks[-1]["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    else:
        assert all(c["choices"] for c in chunks)
    return chunks


def client_for(status: int, body: bytes, content_type: str) -> openai.OpenAI:
    def answer(request: Any) -> Any:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return openai.OpenAI(api_key="sk-test", base_url="http://relay.test/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(answer)))


REQUEST = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def read(status: int, body: bytes, content_type: str, *, stream: bool) -> dict[str, Any]:
    """What the openai SDK makes of a body: text, reasoning, tool calls, finish reason, usage."""
    client = client_for(status, body, content_type)
    if not stream:
        completion = client.chat.completions.create(**REQUEST)
        message = completion.choices[0].message
        extra = message.model_extra or {}
        return {"text": message.content or "", "reasoning": extra.get("reasoning_content") or "",
                "tool_calls": [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or ()],
                "finish_reason": completion.choices[0].finish_reason, "usage": completion.usage}
    text, reasoning, calls, finish, usage = [], [], {}, None, None
    for chunk in client.chat.completions.create(**REQUEST, stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text.append(delta.content or "")
        reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
        for call in delta.tool_calls or ():
            entry = calls.setdefault(call.index, [call.id, call.function.name, ""])
            entry[2] += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return {"text": "".join(text), "reasoning": "".join(reasoning),
            "tool_calls": [(i, n, json.loads(a or "{}")) for i, n, a in calls.values()], "finish_reason": finish, "usage": usage}
