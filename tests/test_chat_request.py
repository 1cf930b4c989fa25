"""Anthropic Messages requests → Chat Completions requests that real providers accept.

Every translated request is also checked by the mock provider's validator, which enforces
the rules real providers enforce (tool calls answered in order, known roles and fields).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmrelay.config import OpenAIProvider as Provider, Route
from llmrelay.errors import RelayError
from llmrelay.protocols import anthropic as a
from llmrelay.translate.chat_request import to_chat
from mock_openai import validate_chat_request

REQUESTS = Path(__file__).parent / "fixtures" / "anthropic" / "requests"


def translate(body: dict[str, Any], provider: Provider | None = None, route: Route | None = None, stream: bool = False):
    provider = provider or Provider(type="openai", base_url="https://api.openai.com/v1")
    route = route or Route(provider="p", model="gpt-4.1")
    chat, names = to_chat(a.parse_request(json.dumps(body)), route, provider, stream=stream)
    chat = json.loads(orjson.dumps(chat))  # as it goes on the wire (tool schemas are raw JSON)
    validate_chat_request(chat, extra_fields=("thinking", "reasoning"))
    return chat, names


def request(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def test_system_string_blocks_and_inline_system_messages_become_one_leading_system_message() -> None:
    chat, _ = translate(
        request(
            user("hi"),
            {"role": "system", "content": "Reminder: be brief."},
            user([{"type": "text", "text": "again"}]),
            system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be careful."}],
        )
    )
    assert chat["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nBe careful.\n\nReminder: be brief."},
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "again"},
    ]


def test_images_base64_and_url() -> None:
    chat, _ = translate(
        request(
            user(
                [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ]
            )
        )
    )
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


def test_tool_round_trip_in_the_right_order() -> None:
    chat, _ = translate(
        request(
            user("list files"),
            assistant(
                [
                    {"type": "thinking", "thinking": "I should run ls", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                    {"type": "text", "text": "Running two commands."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {"command": "pwd"}},
                ]
            ),
            user(
                [
                    {"type": "text", "text": "Here you go"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "/home"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.py", "is_error": True},
                ]
            ),
        )
    )
    assert chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Running two commands.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "ls"}'}},
                {"id": "toolu_2", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "pwd"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_2", "content": "/home"},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: a.py"},
        {"role": "user", "content": "Here you go"},
    ]


def test_reasoning_is_sent_back_where_the_provider_requires_it() -> None:
    body = request(
        user("q"),
        assistant([{"type": "thinking", "thinking": "hmm"}, {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]),
        user([{"type": "tool_result", "tool_use_id": "t1", "content": ""}]),
    )
    deepseek = Provider(type="openai", base_url="https://api.deepseek.com/v1")
    chat, _ = translate(body, deepseek)
    assert chat["messages"][1]["reasoning_content"] == "hmm"
    assert chat["messages"][1]["content"] is None
    assert chat["messages"][2]["content"] == "(no content)"
    chat, _ = translate(body)
    assert "reasoning_content" not in chat["messages"][1]


def test_a_conversation_moved_here_from_a_responses_provider() -> None:
    # Its thinking blocks carry a Responses provider's encrypted reasoning (a fallback, or a
    # model switch mid-session): a Chat provider gets the turn without it.
    signature = "llmrelay.reasoning.0123456789ab.gAAAAB-fake-encrypted-reasoning"
    body = request(
        user("q"),
        assistant([{"type": "thinking", "thinking": "plan", "signature": signature}, {"type": "text", "text": "Listing."},
                   {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]),
        user([{"type": "tool_result", "tool_use_id": "t1", "content": "a.py"}]),
    )
    chat, _ = translate(body)
    assert chat["messages"][1] == {"role": "assistant", "content": "Listing.",
                                   "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]}
    chat, _ = translate(body, Provider(type="openai", base_url="https://api.deepseek.com/v1"))
    assert chat["messages"][1]["reasoning_content"] == "plan"
    assert "gAAAAB" not in orjson.dumps(chat).decode()


def test_images_in_tool_results_follow_as_a_user_message() -> None:
    chat, _ = translate(
        request(
            user("shot"),
            assistant([{"type": "tool_use", "id": "t1", "name": "Screenshot", "input": {}}]),
            user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [
                            {"type": "text", "text": "captured"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                        ],
                    }
                ]
            ),
        )
    )
    tool, follow = chat["messages"][2:]
    assert tool["role"] == "tool" and tool["content"].startswith("captured")
    assert follow["role"] == "user"
    assert follow["content"][-1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def test_unanswered_and_orphaned_tool_results_are_repaired() -> None:
    chat, _ = translate(
        request(
            user("go"),
            assistant([{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]),
            user([{"type": "tool_result", "tool_use_id": "nope", "content": "late"}, {"type": "text", "text": "stop"}]),
        )
    )
    roles = [(m["role"], m.get("tool_call_id")) for m in chat["messages"]]
    assert roles == [("user", None), ("assistant", None), ("tool", "t1"), ("user", None), ("user", None)]


def test_tools_choice_and_long_names() -> None:
    long_name = "mcp__some_server__" + "a_very_long_tool_name_" * 3
    chat, names = translate(
        request(
            user("x"),
            tools=[
                {"name": "Bash", "description": "Run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
                {"name": long_name, "input_schema": {"type": "object"}},
            ],
            tool_choice={"type": "tool", "name": long_name, "disable_parallel_tool_use": True},
        )
    )
    short = chat["tools"][1]["function"]["name"]
    assert len(short) <= 64 and names.original[short] == long_name
    assert chat["tools"][0] == {
        "type": "function",
        "function": {"name": "Bash", "description": "Run", "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}},
    }
    assert chat["tool_choice"] == {"type": "function", "function": {"name": short}}
    assert chat["parallel_tool_calls"] is False


@pytest.mark.parametrize("kind, expected", [("auto", "auto"), ("any", "required"), ("none", "none")])
def test_tool_choice_types(kind: str, expected: str) -> None:
    chat, _ = translate(request(user("x"), tools=[{"name": "Bash", "input_schema": {"type": "object"}}], tool_choice={"type": kind}))
    assert chat["tool_choice"] == expected


def test_server_tools_are_refused_clearly() -> None:
    with pytest.raises(RelayError, match="web_search.*Anthropic's servers"):
        translate(request(user("x"), tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]))


def test_max_tokens_field_and_cap() -> None:
    chat, _ = translate(request(user("x"), max_tokens=32000))
    assert chat["max_completion_tokens"] == 32000 and "max_tokens" not in chat
    capped = Provider(type="openai", base_url="https://ark.example.com/v1", max_output_tokens=12288)
    chat, _ = translate(request(user("x"), max_tokens=32000), capped)
    assert chat["max_tokens"] == 12288
    chat, _ = translate(request(user("x"), max_tokens=32000), capped, Route(provider="p", model="m", max_output_tokens=4096))
    assert chat["max_tokens"] == 4096


def test_sampling_stop_user_and_stream_options() -> None:
    chat, _ = translate(
        request(user("x"), stop_sequences=["END"], temperature=0.2, top_p=0.9, top_k=5, metadata={"user_id": "u" * 100}),
        stream=True,
    )
    assert chat["stop"] == ["END"] and chat["temperature"] == 0.2 and chat["top_p"] == 0.9
    assert "top_k" not in chat
    assert len(chat["user"]) == 64
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "thinking, output_config, control, expected",
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "effort", {"reasoning_effort": "low"}),
        ({"type": "enabled", "budget_tokens": 10000}, None, "effort", {"reasoning_effort": "medium"}),
        ({"type": "enabled", "budget_tokens": 31999}, None, "effort", {"reasoning_effort": "high"}),
        ({"type": "adaptive"}, {"effort": "low"}, "effort", {"reasoning_effort": "low"}),
        ({"type": "adaptive"}, None, "effort", {"reasoning_effort": "medium"}),
        ({"type": "adaptive"}, None, "thinking", {"thinking": {"type": "enabled"}}),
        ({"type": "disabled"}, None, "thinking", {"thinking": {"type": "disabled"}}),
        ({"type": "enabled", "budget_tokens": 5000}, None, "openrouter", {"reasoning": {"max_tokens": 5000}}),
        ({"type": "adaptive"}, None, "none", {}),
    ],
)
def test_thinking_becomes_the_providers_reasoning_control(thinking, output_config, control, expected) -> None:
    body = request(user("x"), thinking=thinking)
    if output_config:
        body["output_config"] = output_config
    chat, _ = translate(body, route=Route(provider="p", model="m", reasoning=control))
    controls = {k: chat[k] for k in ("reasoning_effort", "thinking", "reasoning") if k in chat}
    assert controls == expected


CLAUDE_CODE_BODIES = sorted(p for p in REQUESTS.glob("claude-code-*.json") if not p.name.endswith("headers.json"))


def test_the_real_claude_code_requests_are_there() -> None:
    assert len(CLAUDE_CODE_BODIES) >= 3


@pytest.mark.parametrize("path", CLAUDE_CODE_BODIES, ids=lambda p: p.stem)
def test_real_claude_code_requests_translate_to_valid_chat_requests(path: Path) -> None:
    body = json.loads(path.read_text())
    chat, _ = translate(body, stream=body.get("stream", False))
    assert chat["messages"][0]["role"] == "system"
    assert not any(m["role"] == "system" for m in chat["messages"][1:])
    visible = [t["name"] for t in body["tools"] if not t.get("defer_loading")]
    assert [t["function"]["name"] for t in chat["tools"]] == visible


def test_deferred_tools_appear_once_a_tool_search_loads_them() -> None:
    tools = [{"name": "ToolSearch", "input_schema": {"type": "object"}}, {"name": "NotebookEdit", "input_schema": {"type": "object"}, "defer_loading": True}]
    chat, _ = translate(request(user("x"), tools=tools))
    assert [t["function"]["name"] for t in chat["tools"]] == ["ToolSearch"]
    chat, _ = translate(
        request(
            user("x"),
            assistant([{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {"query": "notebook"}}]),
            user([{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "tool_reference", "tool_name": "NotebookEdit"}]}]),
            tools=tools,
        )
    )
    assert [t["function"]["name"] for t in chat["tools"]] == ["ToolSearch", "NotebookEdit"]
    assert chat["messages"][2]["content"] == "Tool NotebookEdit is now available."



def test_tool_translations_are_reused_only_for_identical_tools() -> None:
    tools = [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]
    first, _ = translate(request(user("x"), tools=tools))
    again, _ = translate(request(user("y"), tools=tools))
    assert again["tools"] == first["tools"]
    tools[0]["input_schema"]["properties"]["timeout"] = {"type": "number"}
    changed, _ = translate(request(user("y"), tools=tools))
    assert "timeout" in changed["tools"][0]["function"]["parameters"]["properties"]


def test_bad_tools_and_blocks_are_refused_with_where_they_are() -> None:
    with pytest.raises(RelayError, match=r"tools\[0\]\.name"):
        translate(request(user("x"), tools=[{"name": 7}]))
    with pytest.raises(RelayError, match="not a JSON object"):
        translate(request(user("x"), tools=[{"name": "Bash", "input_schema": "nope"}]))
    with pytest.raises(RelayError, match="tool_use block cannot stand in a user turn"):
        translate(request(user([{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}])))
