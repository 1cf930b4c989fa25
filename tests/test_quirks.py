"""Provider quirks, each from the provider it comes from, as the Chat translation applies them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from llmrelay.config import parse_config
from llmrelay.errors import RelayError
from llmrelay.protocols import anthropic as a
from llmrelay.translate.chat_request import to_chat

REQUESTS = Path(__file__).parent / "fixtures" / "anthropic" / "requests"


def provider(base_url: str):
    config = parse_config({"providers": {"p": {"type": "openai", "base_url": base_url}}, "models": {"default": {"provider": "p", "model": "m"}}})
    return config.providers["p"], config.models.default


def keys_in(node, found=None) -> set[str]:
    found = set() if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "properties":
                found.add(key)
            keys_in(value, found) if key != "properties" else [keys_in(v, found) for v in value.values()]
    elif isinstance(node, list):
        for value in node:
            keys_in(value, found)
    return found


def test_gemini_gets_claude_code_s_tool_schemas_without_the_keywords_it_refuses() -> None:
    body = (REQUESTS / "claude-code-default.json").read_bytes()
    assert b'"$schema"' in body and b'"additionalProperties"' in body  # what Claude Code sends
    p, route = provider("https://generativelanguage.googleapis.com/v1beta/openai")
    chat = orjson.loads(orjson.dumps(to_chat(a.parse_request(body), route, p, stream=True)[0]))
    sent = keys_in([t["function"]["parameters"] for t in chat["tools"]])
    assert not sent & {"$schema", "additionalProperties", "exclusiveMinimum", "propertyNames"}
    assert len(chat["tools"]) > 10 and all(t["function"]["parameters"].get("type") == "object" for t in chat["tools"])
    other, route = provider("https://api.deepseek.com")  # and nobody else loses them
    chat = orjson.loads(orjson.dumps(to_chat(a.parse_request(body), route, other, stream=True)[0]))
    assert "$schema" in keys_in([t["function"]["parameters"] for t in chat["tools"]])


def test_mistral_gets_nine_character_tool_ids_the_same_for_call_and_result() -> None:
    req = a.parse_request(json.dumps({
        "model": "m", "max_tokens": 10,
        "messages": [{"role": "user", "content": "go"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01AbCdEfGh", "name": "Bash", "input": {}},
                                                       {"type": "tool_use", "id": "abc123XYZ", "name": "Bash", "input": {}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01AbCdEfGh", "content": "ok"},
                                                  {"type": "tool_result", "tool_use_id": "abc123XYZ", "content": "ok"}]}],
    }).encode())
    p, route = provider("https://api.mistral.ai/v1")
    messages = to_chat(req, route, p, stream=False)[0]["messages"]
    calls = [c["id"] for c in messages[1]["tool_calls"]]
    results = [m["tool_call_id"] for m in messages[2:]]
    assert calls == results and all(re.fullmatch(r"[A-Za-z0-9]{9}", i) for i in calls)
    assert calls[1] == "abc123XYZ"  # its own ids stay as they were


def test_more_tools_than_openai_takes_is_a_clear_400() -> None:
    tools = [{"name": f"tool_{i}", "input_schema": {"type": "object"}} for i in range(129)]
    req = a.parse_request(json.dumps({"model": "m", "max_tokens": 10, "tools": tools, "messages": [{"role": "user", "content": "hi"}]}).encode())
    p, route = provider("https://api.openai.com/v1")
    with pytest.raises(RelayError, match="129 tools, and api.openai.com takes at most 128"):
        to_chat(req, route, p, stream=False)
