"""Anthropic Messages requests → Responses requests that the public API and the Codex backend
accept.

Every translated body is also checked by the mock's validator for the API it is meant for,
which refuses what the real endpoints refuse (unanswered calls, item ids with `store: false`,
Codex's missing instructions, system messages and unsupported fields).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmrelay.config import ChatGPTProvider, ResponsesProvider, Route
from llmrelay.errors import RelayError
from llmrelay.protocols import anthropic as a
from llmrelay.protocols.openai_responses import SIGNED, signature
from llmrelay.translate.responses_request import DEFAULT_INSTRUCTIONS, to_responses
from mock_responses import CODEX_MODELS, validate_request

REQUESTS = Path(__file__).parent / "fixtures" / "anthropic" / "requests"
MODEL = "gpt-5.4"  # offered to ChatGPT accounts, so the Codex validator accepts it
SESSION = "79795296-056f-49d4-913e-78c356b1c8b5"
ENCRYPTED = "gAAAAABo-encrypted-reasoning"


def public(**settings: Any) -> ResponsesProvider:
    return ResponsesProvider(type="openai-responses", base_url="https://api.openai.com/v1", **settings)


def codex(**settings: Any) -> ChatGPTProvider:
    return ChatGPTProvider(type="chatgpt", **settings)


def like(provider: ResponsesProvider, **settings: Any) -> ResponsesProvider:
    """A provider of the same kind, with these settings."""
    return codex(**settings) if provider.codex else public(**settings)


def route(**settings: Any) -> Route:
    return Route(provider="p", model=MODEL, **settings)


@pytest.fixture(params=["public", "codex"])
def api(request: pytest.FixtureRequest) -> ResponsesProvider:
    """Rules both APIs share are checked against both validators."""
    return public() if request.param == "public" else codex()


def translate(body: dict[str, Any], provider: ResponsesProvider | None = None, on: Route | None = None, stream: bool = False):
    provider = provider or public()
    out, names, session = to_responses(a.parse_request(orjson.dumps(body)), on or route(), provider, stream=stream)
    out = orjson.loads(orjson.dumps(out))  # as it goes on the wire (tool schemas are raw JSON)
    validate_request(out, codex=provider.codex, models=CODEX_MODELS if provider.codex else None)
    return out, names, session


def request(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1000, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def said(text: str) -> dict[str, Any]:
    """A user message item holding one text part."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def answered(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def call(call_id: str, name: str, arguments: str = "{}") -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments}


def output(call_id: str, text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def signed(api: ResponsesProvider, thinking: str, encrypted: str = ENCRYPTED) -> dict[str, Any]:
    """A thinking block as the relay made it from a reasoning item of `api`."""
    return {"type": "thinking", "thinking": thinking, "signature": signature(encrypted, api.origin)}


BASH = {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}


# --- instructions -------------------------------------------------------------------------


def test_minimal_request_bodies() -> None:
    out, names, session = translate(request(user("hi")))
    assert out == {"model": MODEL, "input": [said("hi")], "store": False, "stream": False, "max_output_tokens": 1000}
    assert names.original == {} and session is None
    out, _, _ = translate(request(user("hi")), codex())
    assert out == {
        "model": MODEL,
        "instructions": DEFAULT_INSTRUCTIONS,
        "input": [said("hi")],
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
    }


def test_system_string_becomes_instructions(api: ResponsesProvider) -> None:
    out, _, _ = translate(request(user("hi"), system="You are Claude Code."), api)
    assert out["instructions"] == "You are Claude Code."
    assert out["input"] == [said("hi")]


def test_system_blocks_and_system_messages_become_instructions(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(
            user("hi"),
            {"role": "system", "content": "Reminder: be brief."},
            user([{"type": "text", "text": "again"}]),
            {"role": "system", "content": [{"type": "text", "text": "Reminder: use tools."}]},
            system=[{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Be careful."}],
        ),
        api,
    )
    assert out["instructions"] == "You are Claude Code.\n\nBe careful.\n\nReminder: be brief.\n\nReminder: use tools."
    # The Codex backend refuses a system role in the input: none may be left there.
    assert out["input"] == [said("hi"), said("again")]


def test_system_messages_alone_still_become_instructions(api: ResponsesProvider) -> None:
    out, _, _ = translate(request({"role": "system", "content": "Only this."}, user("hi")), api)
    assert out["instructions"] == "Only this."


def test_instructions_are_left_out_for_the_public_api_when_there_is_no_system_text() -> None:
    out, _, _ = translate(request(user("hi"), system=[]))
    assert "instructions" not in out


@pytest.mark.parametrize("system", [None, "", []], ids=["absent", "empty-string", "no-blocks"])
def test_codex_never_gets_empty_instructions(system: Any) -> None:
    body = request(user("hi")) if system is None else request(user("hi"), system=system)
    out, _, _ = translate(body, codex())
    assert out["instructions"] == DEFAULT_INSTRUCTIONS


def test_codex_never_gets_blank_instructions() -> None:
    out, _, _ = translate(request(user("hi"), system="  \n"), codex())
    assert out["instructions"].strip()


# --- user content -------------------------------------------------------------------------


def test_user_text_and_images_become_input_parts(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(
            user(
                [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ]
            )
        ),
        api,
    )
    assert out["input"] == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
            ],
        }
    ]


def test_text_blocks_of_one_turn_become_one_input_text() -> None:
    out, _, _ = translate(request(user([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])))
    assert out["input"] == [said("one\n\ntwo")]


def test_pdf_documents_become_input_files(api: ResponsesProvider) -> None:
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}
    out, _, _ = translate(
        request(
            user(
                [
                    {"type": "document", "source": pdf, "title": "report"},
                    {"type": "document", "source": pdf},
                    {"type": "text", "text": "Summarise both."},
                ]
            )
        ),
        api,
    )
    assert out["input"][0]["content"] == [
        {"type": "input_file", "filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="},
        {"type": "input_file", "filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="},
        {"type": "input_text", "text": "Summarise both."},
    ]


def test_text_documents_become_input_text() -> None:
    out, _, _ = translate(request(user([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}])))
    assert out["input"] == [said("notes")]


def test_documents_of_other_kinds_are_refused() -> None:
    with pytest.raises(RelayError, match="document source of type 'url'"):
        translate(request(user([{"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}])))


# --- assistant turns and tools ------------------------------------------------------------


def test_assistant_text_becomes_output_text(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(user("hi"), assistant("Hello."), user("more"), assistant([{"type": "text", "text": "Sure, "}, {"type": "text", "text": "here."}]), user("thanks")),
        api,
    )
    assert out["input"] == [said("hi"), answered("Hello."), said("more"), answered("Sure, here."), said("thanks")]


def test_tool_use_becomes_function_call_and_its_result_follows_it(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(
            user("list files"),
            assistant(
                [
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
            tools=[BASH],
        ),
        api,
    )
    # The results come before the rest of their user turn: a call must be answered first.
    assert out["input"] == [
        said("list files"),
        answered("Running two commands."),
        call("toolu_1", "Bash", '{"command":"ls"}'),
        call("toolu_2", "Bash", '{"command":"pwd"}'),
        output("toolu_2", "/home"),
        output("toolu_1", "Error: a.py"),
        said("Here you go"),
    ]


def test_a_tool_use_without_input_gets_empty_arguments() -> None:
    out, _, _ = translate(
        request(
            user("go"),
            assistant([{"type": "tool_use", "id": "t1", "name": "Bash"}]),
            user([{"type": "tool_result", "tool_use_id": "t1"}]),
        )
    )
    assert out["input"][1:] == [call("t1", "Bash", "{}"), output("t1", "(no content)")]


def test_tool_result_images_follow_in_a_user_message(api: ResponsesProvider) -> None:
    out, _, _ = translate(
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
        ),
        api,
    )
    assert out["input"][1:] == [
        call("t1", "Screenshot"),
        output("t1", "captured\n\n[1 image(s) from this tool result follow in the next user message]"),
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Images returned by tool call t1:"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
            ],
        },
    ]


def test_an_unanswered_tool_call_gets_a_result(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(
            user("go"),
            assistant([{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]),
            user("stop, do something else"),
        ),
        api,
    )
    assert out["input"] == [
        said("go"),
        call("t1", "Bash"),
        output("t1", "(no result: the tool call was interrupted)"),
        said("stop, do something else"),
    ]


def test_a_tool_call_at_the_end_gets_a_result(api: ResponsesProvider) -> None:
    out, _, _ = translate(request(user("go"), assistant([{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}])), api)
    assert out["input"][-1] == output("t1", "(no result: the tool call was interrupted)")


def test_a_result_that_answers_no_call_becomes_user_text(api: ResponsesProvider) -> None:
    out, _, _ = translate(request(user([{"type": "tool_result", "tool_use_id": "nope", "content": "late"}, {"type": "text", "text": "hi"}])), api)
    assert out["input"] == [said("Result of tool call nope: late"), said("hi")]


def test_tools_become_flat_functions_that_are_not_strict(api: ResponsesProvider) -> None:
    out, _, _ = translate(request(user("x"), tools=[BASH, {"name": "Ping", "type": "custom"}]), api)
    assert out["tools"] == [
        {
            "type": "function",
            "name": "Bash",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
            "description": "Run a command",
            "strict": False,
        },
        {"type": "function", "name": "Ping", "parameters": {"type": "object", "properties": {}}, "strict": False},
    ]
    assert "tool_choice" not in out and "parallel_tool_calls" not in out


def test_long_tool_names_are_shortened_and_mapped_back(api: ResponsesProvider) -> None:
    long_name = "mcp__some_server__" + "a_very_long_tool_name_" * 3
    dotted = "mcp.server.tool"
    out, names, _ = translate(
        request(
            user("x"),
            assistant([{"type": "tool_use", "id": "t1", "name": long_name, "input": {}}]),
            user([{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]),
            tools=[{"name": long_name, "input_schema": {"type": "object"}}, {"name": dotted, "input_schema": {"type": "object"}}],
            tool_choice={"type": "tool", "name": long_name},
        ),
        api,
    )
    short, short_dotted = (tool["name"] for tool in out["tools"])
    assert len(long_name) > 64 and len(short) == 64 and short.startswith("mcp__some_server__")
    assert short_dotted.startswith("mcp_server_tool_")
    assert names.original == {short: long_name, short_dotted: dotted}
    # The same short name everywhere the tool is named.
    assert out["input"][1] == call("t1", short)
    assert out["tool_choice"] == {"type": "function", "name": short}


def test_a_deferred_tool_is_left_out_until_a_tool_reference_names_it(api: ResponsesProvider) -> None:
    tools = [
        {"name": "ToolSearch", "input_schema": {"type": "object"}},
        {"name": "NotebookEdit", "input_schema": {"type": "object"}, "defer_loading": True},
    ]
    out, _, _ = translate(request(user("x"), tools=tools), api)
    assert [t["name"] for t in out["tools"]] == ["ToolSearch"]
    out, _, _ = translate(
        request(
            user("x"),
            assistant([{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {"query": "notebook"}}]),
            user([{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "tool_reference", "tool_name": "NotebookEdit"}]}]),
            tools=tools,
        ),
        api,
    )
    assert [t["name"] for t in out["tools"]] == ["ToolSearch", "NotebookEdit"]
    assert out["input"][2] == output("t1", "Tool NotebookEdit is now available.")


def test_only_deferred_tools_send_no_tools_and_no_tool_choice() -> None:
    tools = [{"name": "NotebookEdit", "input_schema": {"type": "object"}, "defer_loading": True}]
    out, _, _ = translate(request(user("x"), tools=tools, tool_choice={"type": "any"}))
    # An empty tool list with a required choice would be refused.
    assert "tools" not in out and "tool_choice" not in out


def test_tool_choice_of_a_deferred_tool_names_a_tool_that_is_sent(api: ResponsesProvider) -> None:
    tools = [{"name": "ToolSearch", "input_schema": {"type": "object"}}, {"name": "NotebookEdit", "input_schema": {"type": "object"}, "defer_loading": True}]
    out, _, _ = translate(request(user("x"), tools=tools, tool_choice={"type": "tool", "name": "NotebookEdit"}), api)
    choice = out.get("tool_choice")
    assert choice is None or choice["name"] in [t["name"] for t in out["tools"]]


def test_server_tools_are_refused_clearly(api: ResponsesProvider) -> None:
    with pytest.raises(RelayError, match="'web_search' \\(web_search_20250305\\) runs on Anthropic's servers"):
        translate(request(user("x"), tools=[BASH, {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]), api)


@pytest.mark.parametrize(
    "choice, expected",
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "name": "Bash"}),
    ],
    ids=["auto", "any", "none", "tool"],
)
def test_tool_choice(api: ResponsesProvider, choice: dict[str, Any], expected: Any) -> None:
    out, _, _ = translate(request(user("x"), tools=[BASH], tool_choice=choice), api)
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_disable_parallel_tool_use_turns_parallel_calls_off(api: ResponsesProvider) -> None:
    out, _, _ = translate(request(user("x"), tools=[BASH], tool_choice={"type": "auto", "disable_parallel_tool_use": True}), api)
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False


def test_tool_choice_without_tools_is_dropped() -> None:
    out, _, _ = translate(request(user("x"), tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert "tool_choice" not in out and "parallel_tool_calls" not in out and "tools" not in out


def test_tool_choice_of_type_tool_needs_a_name() -> None:
    with pytest.raises(RelayError, match="needs a name"):
        translate(request(user("x"), tools=[BASH], tool_choice={"type": "tool"}))


# --- output limit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "max_tokens, provider_cap, route_cap, expected",
    [
        (1000, None, None, 1000),
        (32000, 12288, None, 12288),
        (32000, 12288, 4096, 4096),  # the route's cap overrides the provider's
        (2000, 12288, 4096, 2000),
        (None, 12288, None, 12288),
        (5, None, None, 16),  # the API refuses less than 16
        (1, 12288, None, 16),
    ],
)
def test_max_tokens_is_clamped_to_the_cap_and_raised_to_the_floor(max_tokens, provider_cap, route_cap, expected) -> None:
    body = request(user("x"))
    if max_tokens is None:
        del body["max_tokens"]
    else:
        body["max_tokens"] = max_tokens
    out, _, _ = translate(body, public(max_output_tokens=provider_cap), route(max_output_tokens=route_cap))
    assert out["max_output_tokens"] == expected


def test_no_max_tokens_and_no_cap_sends_no_limit() -> None:
    body = request(user("x"))
    del body["max_tokens"]
    out, _, _ = translate(body)
    assert "max_output_tokens" not in out


def test_codex_never_gets_max_output_tokens() -> None:
    out, _, _ = translate(request(user("x"), max_tokens=32000), codex(max_output_tokens=12288), route(max_output_tokens=4096))
    assert "max_output_tokens" not in out


# --- reasoning ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "thinking, output_config, effort",
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, None, "low"),
        ({"type": "enabled", "budget_tokens": 10000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 31999}, None, "high"),
        ({"type": "adaptive"}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, {"effort": "high"}, "high"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
        ({"type": "adaptive"}, None, "medium"),
    ],
)
def test_thinking_becomes_reasoning_effort_with_a_summary(api: ResponsesProvider, thinking, output_config, effort) -> None:
    body = request(user("x"), thinking=thinking)
    if output_config:
        body["output_config"] = output_config
    out, _, _ = translate(body, api)
    assert out["reasoning"] == {"effort": effort, "summary": "auto"}
    assert out["include"] == ["reasoning.encrypted_content"]


def test_the_client_effort_wins_over_the_configured_one() -> None:
    body = request(user("x"), thinking={"type": "enabled", "budget_tokens": 1024})
    out, _, _ = translate(body, public(reasoning_effort="high"), route(reasoning_effort="xhigh"))
    assert out["reasoning"]["effort"] == "low"


@pytest.mark.parametrize(
    "provider_effort, route_effort, thinking, expected",
    [
        ("low", None, None, "low"),
        ("low", "xhigh", None, "xhigh"),  # the route overrides the provider
        (None, "minimal", None, "minimal"),
        ("high", None, {"type": "disabled"}, "high"),
    ],
)
def test_configured_effort_when_the_client_asks_for_none(provider_effort, route_effort, thinking, expected) -> None:
    body = request(user("x"), thinking=thinking) if thinking else request(user("x"))
    out, _, _ = translate(body, public(reasoning_effort=provider_effort), route(reasoning_effort=route_effort))
    assert out["reasoning"] == {"effort": expected, "summary": "auto"}
    assert out["include"] == ["reasoning.encrypted_content"]


@pytest.mark.parametrize("provider_summary, route_summary, expected", [("concise", None, "concise"), ("concise", "detailed", "detailed")])
def test_summary_setting(provider_summary, route_summary, expected) -> None:
    body = request(user("x"), thinking={"type": "adaptive"})
    out, _, _ = translate(body, public(reasoning_summary=provider_summary), route(reasoning_summary=route_summary))
    assert out["reasoning"] == {"effort": "medium", "summary": expected}


def test_summary_none_asks_for_no_summary(api: ResponsesProvider) -> None:
    out, _, _ = translate(request(user("x"), thinking={"type": "adaptive"}), like(api, reasoning_summary="none"))
    # The public API refuses summary "none": the field is left out instead.
    assert out["reasoning"] == {"effort": "medium"}
    assert out["include"] == ["reasoning.encrypted_content"]


def test_effort_none_sends_no_reasoning_field_even_when_the_client_thinks(api: ResponsesProvider) -> None:
    # For models that do not reason at all: any reasoning field gets the request refused.
    for thinking in (None, {"type": "enabled", "budget_tokens": 31999}):
        extra = {"thinking": thinking} if thinking else {}
        out, _, _ = translate(request(user("x"), temperature=0.5, **extra), api, route(reasoning_effort="none"))
        assert "reasoning" not in out and "include" not in out


def test_no_effort_anywhere_sends_no_reasoning() -> None:
    out, _, _ = translate(request(user("x"), thinking={"type": "disabled"}))
    assert "reasoning" not in out and "include" not in out
    # Codex still returns the model's own reasoning, to send back on the next turn.
    out, _, _ = translate(request(user("x"), thinking={"type": "disabled"}), codex())
    assert "reasoning" not in out and out["include"] == ["reasoning.encrypted_content"]


def test_verbosity_from_route_or_provider(api: ResponsesProvider) -> None:
    out, _, _ = translate(request(user("x")), api)
    assert "text" not in out
    provider = like(api, verbosity="low")
    out, _, _ = translate(request(user("x")), provider)
    assert out["text"] == {"verbosity": "low"}
    out, _, _ = translate(request(user("x")), provider, route(verbosity="high"))
    assert out["text"] == {"verbosity": "high"}


def test_signed_thinking_becomes_a_reasoning_item_before_its_turn(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(
            user("q"),
            assistant([signed(api, "Plan: list files.", "enc-1"), {"type": "text", "text": "Listing."}, {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]),
            user([{"type": "tool_result", "tool_use_id": "t1", "content": "a.py"}]),
            assistant([signed(api, "", "enc-2"), {"type": "tool_use", "id": "t2", "name": "Bash", "input": {}}]),
            user([{"type": "tool_result", "tool_use_id": "t2", "content": "b.py"}]),
            assistant([signed(api, "Done.", "enc-3"), {"type": "text", "text": "Two files."}]),
            user("thanks"),
        ),
        api,
    )
    assert out["input"] == [
        said("q"),
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan: list files."}], "encrypted_content": "enc-1"},
        answered("Listing."),
        call("t1", "Bash"),
        output("t1", "a.py"),
        {"type": "reasoning", "summary": [], "encrypted_content": "enc-2"},  # reasoning with no summary
        call("t2", "Bash"),
        output("t2", "b.py"),
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Done."}], "encrypted_content": "enc-3"},
        answered("Two files."),
        said("thanks"),
    ]


def test_an_assistant_turn_keeps_its_block_order(api: ResponsesProvider) -> None:
    # Reasoning, a preamble, a call, more text, another call: the model reads its own turn
    # back as it wrote it, and each reasoning item stays right before what followed it.
    turn = [
        signed(api, "First, the listing.", "enc-1"),
        {"type": "text", "text": "Listing."},
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
        signed(api, "Then the size.", "enc-2"),
        {"type": "text", "text": "And "},
        {"type": "text", "text": "sizing."},
        {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "du"}},
    ]
    results = [{"type": "tool_result", "tool_use_id": "t1", "content": "a.py"}, {"type": "tool_result", "tool_use_id": "t2", "content": "4K"}]
    out, _, _ = translate(request(user("q"), assistant(turn), user(results)), api)
    assert out["input"] == [
        said("q"),
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "First, the listing."}], "encrypted_content": "enc-1"},
        answered("Listing."),
        call("t1", "Bash", '{"command":"ls"}'),
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Then the size."}], "encrypted_content": "enc-2"},
        answered("And sizing."),
        call("t2", "Bash", '{"command":"du"}'),
        output("t1", "a.py"),
        output("t2", "4K"),
    ]


def test_other_thinking_is_dropped(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(
            user("q"),
            assistant(
                [
                    {"type": "thinking", "thinking": "Anthropic's own", "signature": "EqQBCkYIBRgCKkD"},
                    {"type": "thinking", "thinking": "unsigned"},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
                    {"type": "text", "text": "Answer."},
                ]
            ),
            user("ok"),
        ),
        api,
    )
    assert out["input"] == [said("q"), answered("Answer."), said("ok")]


def test_reasoning_another_provider_made_is_dropped(api: ResponsesProvider) -> None:
    # The conversation moved here from another provider or account: its encrypted reasoning
    # is unreadable here, and sending it would get the whole request refused.
    other = ResponsesProvider(type="openai-responses", base_url="https://other.example/v1") if api.type == "openai-responses" else codex(account="work")
    assert other.origin != api.origin
    out, _, _ = translate(request(user("q"), assistant([signed(other, "elsewhere"), {"type": "text", "text": "A."}]), user("ok")), api)
    assert out["input"] == [said("q"), answered("A."), said("ok")]
    legacy = {"type": "thinking", "thinking": "old", "signature": SIGNED + ENCRYPTED}  # no origin mark
    out, _, _ = translate(request(user("q"), assistant([legacy, {"type": "text", "text": "A."}]), user("ok")), api)
    assert out["input"] == [said("q"), answered("A."), said("ok")]


def test_no_item_carries_an_id(api: ResponsesProvider) -> None:
    out, _, _ = translate(
        request(
            user("q"),
            assistant([signed(api, "thought"), {"type": "text", "text": "Running."}, {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]),
            user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]),
            assistant("Done."),
            user("thanks"),
        ),
        api,
    )
    # With store: false an id refers to nothing, and the backend refuses it.
    assert [item["type"] for item in out["input"]] == ["message", "reasoning", "message", "function_call", "function_call_output", "message", "message"]
    assert [item for item in out["input"] if "id" in item] == []


# --- sampling, session, streaming ---------------------------------------------------------


def test_temperature_and_top_p_are_kept_for_the_public_api() -> None:
    out, _, _ = translate(request(user("x"), temperature=0.2, top_p=0.9))
    assert out["temperature"] == 0.2 and out["top_p"] == 0.9


def test_temperature_and_top_p_are_dropped_for_codex() -> None:
    out, _, _ = translate(request(user("x"), temperature=0.2, top_p=0.9), codex())
    assert "temperature" not in out and "top_p" not in out


def test_session_id_from_json_user_id_becomes_the_prompt_cache_key() -> None:
    user_id = f'{{"device_id":"c2345466","account_uuid":"","session_id":"{SESSION}"}}'
    body = request(user("x"), metadata={"user_id": user_id})
    out, _, session = translate(body)
    assert session == SESSION and out["prompt_cache_key"] == SESSION
    assert out["safety_identifier"] == hashlib.sha256(user_id.encode()).hexdigest()
    out, _, session = translate(body, codex())
    assert session == SESSION and out["prompt_cache_key"] == SESSION
    assert "safety_identifier" not in out


def test_session_id_from_the_older_user_id_form() -> None:
    user_id = f"user_0d7c5e_account_4a1f8e2b-3c9d-4e6f-8a7b-1c2d3e4f5a6b_session_{SESSION}"
    out, _, session = translate(request(user("x"), metadata={"user_id": user_id}), codex())
    assert session == SESSION and out["prompt_cache_key"] == SESSION


@pytest.mark.parametrize("user_id", ["user_0d7c5e", '{"device_id":"c2345466"}', '{"session_id": 7}', "{not json"])
def test_a_user_id_without_a_session_gives_no_cache_key(user_id: str) -> None:
    out, _, session = translate(request(user("x"), metadata={"user_id": user_id}))
    assert session is None and "prompt_cache_key" not in out
    assert out["safety_identifier"] == hashlib.sha256(user_id.encode()).hexdigest()


def test_prompt_cache_key_fits_the_apis_limit(api: ResponsesProvider) -> None:
    out, _, session = translate(request(user("x"), metadata={"user_id": '{"session_id": "' + "s" * 100 + '"}'}), api)
    assert session is not None and 0 < len(out["prompt_cache_key"]) <= 64


def test_no_user_id_sends_no_safety_identifier() -> None:
    out, _, _ = translate(request(user("x"), metadata={}))
    assert "safety_identifier" not in out and "prompt_cache_key" not in out


@pytest.mark.parametrize("stream", [False, True])
def test_store_is_off_and_stream_is_as_asked(stream: bool) -> None:
    out, _, _ = translate(request(user("x")), stream=stream)
    assert out["store"] is False and out["stream"] is stream


@pytest.mark.parametrize("stream", [False, True])
def test_codex_always_streams(stream: bool) -> None:
    out, _, _ = translate(request(user("x")), codex(), stream=stream)
    assert out["store"] is False and out["stream"] is True


def test_fields_the_responses_api_lacks_are_dropped() -> None:
    body = request(
        user([{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]),
        stop_sequences=["END"],
        top_k=5,
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
        output_config={"effort": "low"},
        metadata={"user_id": "user_0d7c5e"},
    )
    out, _, _ = translate(body)
    assert sorted(out) == ["input", "max_output_tokens", "model", "safety_identifier", "store", "stream"]
    assert out["input"] == [said("x")]


# --- real requests ------------------------------------------------------------------------


CLAUDE_CODE_BODIES = sorted(p for p in REQUESTS.glob("claude-code-*.json") if not p.name.endswith("headers.json"))


@pytest.mark.parametrize("path", CLAUDE_CODE_BODIES, ids=lambda p: p.stem)
def test_real_claude_code_requests_translate_to_valid_bodies(api: ResponsesProvider, path: Path) -> None:
    body = orjson.loads(path.read_bytes())
    out, _, session = translate(body, api, stream=body.get("stream", False))
    assert out["instructions"].startswith(body["system"][0]["text"])
    for message in body["messages"]:
        if message["role"] == "system":
            content = message["content"]
            text = content if isinstance(content, str) else "\n\n".join(block["text"] for block in content)
            assert out["instructions"].endswith("\n\n" + text)
    assert not any(item.get("role") == "system" for item in out["input"])
    visible = [t["name"] for t in body["tools"] if not t.get("defer_loading")]
    assert [t["name"] for t in out["tools"]] == visible
    assert session is not None and out["prompt_cache_key"] == session
