"""Mixed routing through a real mitmdump: unrouted models pass through to (a stand-in for)
the Anthropic API with the client's own key; routed ones go to an OpenAI-compatible provider or
to an Anthropic-compatible one, cleaned of what it refuses; keys never cross over."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

import claude_code
from conftest import CLIENT_KEY, COMPAT_KEY, PROVIDER_KEY
from mock_anthropic import api_key_of

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def client(mixed_relay) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=CLIENT_KEY, base_url=mixed_relay.url, max_retries=0, timeout=30)


def everything_sent(*servers) -> str:
    return json.dumps([[r.headers, r.body] for server in servers for r in server.requests])


def test_an_unrouted_model_passes_through_with_the_clients_key(client, upstreams) -> None:
    openai_mock, anthropic_api, compat = upstreams
    anthropic_api.set_script([{"text": "from Anthropic"}])
    message = client.messages.create(model="claude-opus-4-1", max_tokens=20, messages=HELLO)
    assert message.content[0].text == "from Anthropic"
    (request,) = anthropic_api.requests
    assert api_key_of(request.headers) == CLIENT_KEY and request.body["model"] == "claude-opus-4-1"
    assert not openai_mock.requests and not compat.requests
    assert PROVIDER_KEY not in everything_sent(anthropic_api) and COMPAT_KEY not in everything_sent(anthropic_api)


def test_a_routed_model_never_sees_the_clients_key(client, upstreams) -> None:
    openai_mock, anthropic_api, compat = upstreams
    openai_mock.set_script([{"text": "from OpenAI"}])
    assert client.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=HELLO).content[0].text == "from OpenAI"
    assert CLIENT_KEY not in everything_sent(openai_mock)
    assert not anthropic_api.requests


CLAUDE_CODE_EXTRAS = {
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "medium"},
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
}
BETAS = {"anthropic-beta": "claude-code-20250219,context-management-2025-06-27"}


def test_an_anthropic_compatible_provider_gets_a_cleaned_request_and_its_stream_passes(client, upstreams) -> None:
    _, anthropic_api, compat = upstreams
    compat.set_script([{"thinking": "hmm", "signature": "sig-1", "text": "from Kimi", "chunks": 3}])
    with client.messages.stream(model="claude-compat", max_tokens=20, messages=HELLO, extra_body=CLAUDE_CODE_EXTRAS, extra_headers=BETAS) as stream:
        kinds = [event.type for event in stream]
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].signature == "sig-1" and message.content[1].text == "from Kimi"
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    (request,) = compat.requests
    assert request.body["model"] == "kimi-k2"
    assert "context_management" not in request.body and "output_config" not in request.body
    assert request.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert request.headers["anthropic-beta"] == "claude-code-20250219"
    assert request.headers["authorization"] == f"Bearer {COMPAT_KEY}"
    assert CLIENT_KEY not in everything_sent(compat) and not anthropic_api.requests


def test_a_passed_stream_keeps_the_providers_own_events(mixed_relay, upstreams) -> None:
    _, _, compat = upstreams
    compat.set_script([{"text": "pinged", "chunks": 2}])
    body = {"model": "claude-compat", "max_tokens": 20, "stream": True, "messages": HELLO}
    raw = httpx.post(mixed_relay.url + "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert b"event: ping" in raw.content  # sent by the provider, kept as it came


def test_a_json_only_provider_still_streams_and_a_streaming_answer_still_aggregates(client, upstreams) -> None:
    _, _, compat = upstreams
    compat.set_script([{"text": "built from JSON", "tool_calls": [{"name": "Bash", "input": {"command": "ls"}}]}])
    with client.messages.stream(model="claude-compat-json", max_tokens=20, messages=HELLO) as stream:
        message = stream.get_final_message()
    assert compat.requests[-1].body["stream"] is False
    assert [b.type for b in message.content] == ["text", "tool_use"] and message.content[1].input == {"command": "ls"}
    assert message.stop_reason == "tool_use"

    compat.set_script([{"text": "streamed anyway", "ignore_stream": True, "chunks": 4}])
    message = client.messages.create(model="claude-compat", max_tokens=20, messages=HELLO)
    assert message.content[0].text == "streamed anyway" and message.usage.output_tokens > 0


def test_count_tokens_asks_the_provider_or_estimates(client, upstreams, mixed_relay) -> None:
    _, anthropic_api, compat = upstreams
    body = {"model": "claude-compat", "messages": HELLO}
    upstream = client.messages.count_tokens(**body).input_tokens
    assert [r.path for r in compat.requests] == ["/v1/messages/count_tokens"]
    assert compat.requests[0].body["model"] == "kimi-k2"
    local = client.messages.count_tokens(**{**body, "model": "claude-compat-json"}).input_tokens
    assert len(compat.requests) == 1 and local > 0
    passed = client.messages.count_tokens(**{**body, "model": "claude-opus-4-1"}).input_tokens
    assert [r.path for r in anthropic_api.requests] == ["/v1/messages/count_tokens"] and passed > 0
    assert upstream > 0


def test_provider_errors_stay_anthropic_errors(client, upstreams) -> None:
    _, _, compat = upstreams
    compat.set_script([{"error_status": 529}])
    with pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model="claude-compat", max_tokens=20, messages=HELLO)
    assert raised.value.status_code == 529 and raised.value.body["error"]["type"] == "overloaded_error"


def test_claude_code_works_through_an_anthropic_compatible_provider(mixed_relay, upstreams, tmp_path) -> None:
    _, _, compat = upstreams
    compat.set_script(
        [
            {"text": "Writing it.", "tool_calls": [{"id": "toolu_01bash", "name": "Bash", "input": {"command": "echo compat > proof.txt", "description": "write"}}]},
            {"text": "All done via the compatible provider."},
        ]
    )
    result = claude_code.run("Write compat to proof.txt.", mixed_relay.url, cwd=tmp_path, model="claude-compat", extra_env=claude_code.NO_RETRY_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "proof.txt").read_text().strip() == "compat"
    assert "All done via the compatible provider." in result.stdout
    messages = [r for r in compat.requests if r.path == "/v1/messages"]
    assert len(messages) == 2 and all(r.body["model"] == "kimi-k2" for r in messages)
    last = messages[1].body["messages"][-1]["content"]
    assert any(block.get("type") == "tool_result" and block.get("tool_use_id") == "toolu_01bash" for block in last)
