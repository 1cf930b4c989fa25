"""A ChatGPT subscription (`type: chatgpt`) and the Responses API (`type: openai-responses`)
through a real mitmdump, with the anthropic SDK as the client.

The Codex backend and the issuer are stand-ins (tests/mock_responses.py, tests/mock_issuer.py)
that refuse what the real ones refuse: a request without `stream`, with `store`, a `system`
role or `max_output_tokens`, an access token that is not live, another account id; a refresh
token used twice.
"""

from __future__ import annotations

import asyncio
import json
import time

import anthropic
import pytest

from conftest import CLIENT_KEY, FAILURE_SIGNS, PROVIDER_KEY
from llmrelay import oauth, usage
from mock_issuer import MockIssuer
from mock_responses import MockCodex, MockResponses
from relay_process import Relay

HELLO = [{"role": "user", "content": "Hello"}]
BASH = {"name": "Bash", "description": "Run a shell command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}


@pytest.fixture(scope="module")
def issuer():
    with MockIssuer() as server:
        yield server


@pytest.fixture(scope="module")
def codex(issuer):
    with MockCodex(issuer=issuer) as server:
        yield server


@pytest.fixture(scope="module")
def responses():
    with MockResponses(api_key=PROVIDER_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def relay(issuer, codex, responses, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chatgpt")
    config = workdir / "config.yaml"
    config.write_text(
        f"""
providers:
  chatgpt:
    type: chatgpt
    base_url: {codex.base_url}
    issuer: {issuer.url}
  work:
    type: chatgpt
    account: work
    base_url: {codex.base_url}
    issuer: {issuer.url}
  openai-r:
    type: openai-responses
    base_url: {responses.base_url}
    api_key: {PROVIDER_KEY}
  openai-r-json:
    type: openai-responses
    base_url: {responses.base_url}
    api_key: {PROVIDER_KEY}
    supports_streaming: false
models:
  default: {{provider: chatgpt, model: gpt-5.4}}
  routes:
    claude-work: {{provider: work, model: gpt-5.4}}
    claude-responses: {{provider: openai-r, model: gpt-5.5}}
    claude-responses-json: {{provider: openai-r-json, model: gpt-5.5}}
"""
    )
    with Relay(config, workdir, "-w", str(workdir / "flows")) as process:
        yield process
    output = process.output()
    for sign in FAILURE_SIGNS:
        assert sign not in output, output


@pytest.fixture
def client(relay) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)


def sign_in(relay, issuer, name: str = "chatgpt", **answer) -> oauth.Tokens:
    """A finished sign-in, as `scripts/login` stores it (that script is tested on its own)."""
    tokens = oauth.tokens_from({**issuer.grant(), **answer})
    oauth.save(relay.data, name, tokens)
    return tokens


@pytest.fixture
def signed_in(relay, issuer, codex) -> oauth.Tokens:
    codex.set_script([])
    codex.requests.clear()
    issuer.access_ttl = 3600
    return sign_in(relay, issuer)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_claude_code_style_request_answers_from_the_subscription(client, codex, signed_in, stream) -> None:
    codex.set_script([{"text": "Hello from ChatGPT.", "reasoning": "Thinking it over."}])
    request = dict(model="claude-sonnet-4-5", max_tokens=32000, system="You are Claude Code.", messages=HELLO,
                   metadata={"user_id": json.dumps({"device_id": "d", "session_id": "5e8f3b2a-0000-4000-8000-000000000001"})})
    if stream:
        with client.messages.stream(**request) as answer:
            message = answer.get_final_message()
    else:
        message = client.messages.create(**request)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[1].text == "Hello from ChatGPT." and message.stop_reason == "end_turn"
    sent = codex.requests[-1]
    body = sent.body
    assert body["stream"] is True and body["store"] is False and body["instructions"] == "You are Claude Code."
    assert "max_output_tokens" not in body and body["include"] == ["reasoning.encrypted_content"]
    assert body["prompt_cache_key"] == "5e8f3b2a-0000-4000-8000-000000000001"
    assert sent.headers["session_id"] == "5e8f3b2a-0000-4000-8000-000000000001"
    assert sent.headers["chatgpt-account-id"] == signed_in.account_id and sent.headers["originator"] == "codex_cli_rs"


def test_a_tool_call_round_trip_keeps_the_call_id_and_the_reasoning(client, codex, signed_in) -> None:
    codex.set_script([
        {"reasoning": "I should list the files.", "tool_calls": [{"call_id": "call_abc", "name": "Bash", "arguments": {"command": "ls"}}]},
        {"text": "There are two files."},
    ])
    first = client.messages.create(model="claude-sonnet-4-5", max_tokens=1000, messages=HELLO, tools=[BASH])
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert (call.id, call.name, call.input) == ("call_abc", "Bash", {"command": "ls"})
    history = HELLO + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc", "content": "a.txt\nb.txt"}]},
    ]
    second = client.messages.create(model="claude-sonnet-4-5", max_tokens=1000, messages=history, tools=[BASH])
    assert second.content[0].text == "There are two files."
    sent = codex.requests[-1]
    kinds = [item["type"] for item in sent.body["input"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output"]
    assert sent.returned_encrypted and set(sent.returned_encrypted) <= codex.issued_encrypted


def test_a_token_about_to_expire_is_refreshed_before_the_request(client, issuer, codex, relay) -> None:
    codex.set_script([{"text": "fresh"}])
    issuer.access_ttl = 30  # within the relay's minute of margin
    old = sign_in(relay, issuer)
    issuer.access_ttl = 3600
    before = issuer.refreshes
    assert client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO).content[0].text == "fresh"
    assert issuer.refreshes == before + 1
    assert codex.requests[-1].headers["authorization"] != "Bearer " + old.access_token
    assert oauth.load(relay.data, "chatgpt").access_token != old.access_token


def test_a_token_the_backend_refuses_is_refreshed_once_and_the_request_sent_again(client, issuer, codex, relay) -> None:
    codex.set_script([{"text": "after the retry"}])
    old = sign_in(relay, issuer)
    issuer.expire_all()  # the backend now refuses it, though its exp claim says it is good
    before, sent = issuer.refreshes, len(codex.requests)
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    assert message.content[0].text == "after the retry"
    assert issuer.refreshes == before + 1 and len(codex.requests) == sent + 2
    refused, retried = codex.requests[-2:]
    assert refused.headers["authorization"] == "Bearer " + old.access_token
    assert retried.headers["authorization"] == "Bearer " + oauth.load(relay.data, "chatgpt").access_token != refused.headers["authorization"]


def test_four_requests_on_an_expired_token_refresh_it_once(relay, issuer, codex) -> None:
    codex.set_script([{"text": "ok"}])
    issuer.access_ttl = -10
    sign_in(relay, issuer)
    issuer.access_ttl = 3600
    issuer.refresh_delay = 0.3  # the four overlap while the refresh is under way
    before = issuer.refreshes

    async def ask() -> str:
        client = anthropic.AsyncAnthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)
        message = await client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
        return message.content[0].text

    async def four() -> list[str]:
        return await asyncio.gather(*(ask() for _ in range(4)))

    try:
        assert asyncio.run(four()) == ["ok"] * 4
    finally:
        issuer.refresh_delay = 0.0
    assert issuer.refreshes == before + 1 and issuer.reuses == 0


def test_a_dead_sign_in_asks_the_user_to_log_in_again(client, issuer, codex, relay) -> None:
    tokens = sign_in(relay, issuer, "work")
    issuer.expire_all()
    # The refresh token is spent elsewhere (another machine refreshed it): single use.
    oauth.save(relay.data, "work", oauth.Tokens(tokens.access_token, "rt-already-used", tokens.id_token, tokens.account_id, time.time() + 3600))
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model="claude-work", max_tokens=100, messages=HELLO)
    message = raised.value.body["error"]["message"]
    assert "scripts/login --name work" in message and tokens.access_token not in message


def test_a_sign_in_refused_even_after_a_refresh_names_the_command_that_signs_in_again(client, issuer, codex, relay, monkeypatch) -> None:
    tokens = sign_in(relay, issuer, "work")
    monkeypatch.setattr(issuer, "is_live", lambda token: False)  # the backend refuses every token, new ones too
    before = issuer.refreshes
    refused = lambda record: record["client_model"] == "claude-work" and record["status"] == 401  # noqa: E731
    recorded = len(relay.records(0, "errors", refused))
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model="claude-work", max_tokens=100, messages=HELLO)
    assert relay.records(recorded + 1, "errors", refused)[-1]["error_type"] == "authentication_error"
    message = raised.value.body["error"]["message"]
    assert issuer.refreshes == before + 1  # refreshed once, not again and again
    assert message.startswith("work: ChatGPT refused the sign-in (")
    assert message.endswith(f"run `scripts/login --name work --data-dir {relay.data} --issuer {issuer.url}`")
    assert tokens.access_token not in message and tokens.refresh_token not in message


def test_an_account_never_signed_in_is_an_authentication_error(client, relay) -> None:
    path = oauth.token_path(relay.data, "work")
    path.unlink(missing_ok=True)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model="claude-work", max_tokens=100, messages=HELLO)
    assert "is not signed in" in raised.value.body["error"]["message"]


def test_a_usage_limit_is_a_rate_limit_error_saying_when_it_resets(client, codex, signed_in) -> None:
    codex.set_script([{"usage_limit": {"resets_in_seconds": 5400, "plan_type": "plus"}}])
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    error = raised.value
    assert error.response.headers["retry-after"] == "5400"
    assert "(plus plan); it resets at " in error.body["error"]["message"] and "in 1 h 30 min" in error.body["error"]["message"]


def test_the_flow_summary_shows_the_subscription_windows(client, codex, signed_in, relay) -> None:
    codex.set_script([{"text": "ok", "headers": {"x-codex-primary-used-percent": "12", "x-codex-primary-window-minutes": "300",
                                                 "x-codex-secondary-used-percent": "40", "x-codex-secondary-window-minutes": "10080"}}])
    client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    entry = usage.read(relay.data)[-1]
    assert "5h 12% 7d 40%" in usage.summary(entry)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_the_responses_api_with_a_key(client, responses, stream) -> None:
    responses.set_script([{"text": "Hello from Responses.", "reasoning": "Brief thought."}])
    request = dict(model="claude-responses", max_tokens=5, messages=HELLO, system="Be brief.")
    if stream:
        with client.messages.stream(**request) as answer:
            message = answer.get_final_message()
    else:
        message = client.messages.create(**request)
    assert message.content[-1].text == "Hello from Responses." and message.stop_reason == "end_turn"
    body = responses.requests[-1].body
    assert body["max_output_tokens"] == 16 and body["stream"] is stream  # the API's floor is 16
    assert body["instructions"] == "Be brief." and body["store"] is False


def test_a_provider_asked_for_json_still_streams_to_a_streaming_client(client, responses) -> None:
    responses.set_script([{"text": "Composed whole.", "delay_ms": 300}])
    with client.messages.stream(model="claude-responses-json", max_tokens=100, messages=HELLO) as answer:
        message = answer.get_final_message()
    assert message.content[-1].text == "Composed whole." and responses.requests[-1].body["stream"] is False


def test_no_token_or_key_is_kept_anywhere(client, codex, signed_in, relay) -> None:
    codex.set_script([{"text": "ok"}])
    client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    tokens = oauth.load(relay.data, "chatgpt")
    kept = relay.output() + "".join(p.read_text(errors="replace") for p in relay.data.rglob("*.jsonl"))
    flows = (relay.data.parent / "flows").read_bytes().decode("utf-8", "replace")  # what -w saved so far
    assert "/backend-api/codex/responses" in flows and "[REDACTED]" in flows
    kept += flows
    for secret in (tokens.access_token, tokens.refresh_token, signed_in.access_token, PROVIDER_KEY, CLIENT_KEY):
        assert secret not in kept


FINAL = "Done: the file is written."


@pytest.mark.parametrize("model", [None, "claude-responses"], ids=["chatgpt", "openai-responses"])
def test_claude_code_finishes_a_bash_task(relay, issuer, codex, responses, signed_in, tmp_path, model) -> None:
    import claude_code

    mock = responses if model else codex
    mock.set_script([
        {"reasoning": "One Bash call will do.", "text": "I'll write the file.",
         "tool_calls": [{"call_id": "call_bash_1", "name": "Bash", "arguments": {"command": "echo relayed > proof.txt", "description": "Write proof.txt"}}]},
        {"text": FINAL},
    ])
    mock.requests.clear()
    result = claude_code.run("Write the word relayed to proof.txt.", relay.url, cwd=tmp_path, model=model,
                             extra_env=claude_code.NO_RETRY_ENV, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "proof.txt").read_text().strip() == "relayed"
    assert FINAL in result.stdout
    assert len(mock.requests) == 2, [r.body["input"][-1] for r in mock.requests]
    first, second = (r.body for r in mock.requests)
    assert {t["name"] for t in first["tools"]} >= {"Bash", "Read"} and first["instructions"]
    outputs = [item for item in second["input"] if item["type"] == "function_call_output"]
    assert outputs[-1]["call_id"] == "call_bash_1"
    assert mock.requests[1].returned_encrypted  # the reasoning came back with the tool result


def test_tokens_never_travel_where_certificates_go_unchecked(issuer, codex, tmp_path_factory) -> None:
    # `ssl_insecure`, set for a local model's self-signed certificate, does not reach the calls
    # that carry a sign-in's tokens: the ChatGPT backend, and the issuer when it refreshes.
    from faulty_upstream import UntrustedTLS

    workdir = tmp_path_factory.mktemp("insecure")
    with UntrustedTLS(workdir) as tls:
        untrusted = f"https://127.0.0.1:{tls.port}"
        config = workdir / "config.yaml"
        config.write_text(f"""
providers:
  local:
    type: openai
    base_url: {untrusted}/v1
    api_key: {PROVIDER_KEY}
  chatgpt:
    type: chatgpt
    base_url: {untrusted}/backend-api/codex
    issuer: {issuer.url}
  expired:
    type: chatgpt
    account: expired
    base_url: {codex.base_url}
    issuer: {untrusted}
models:
  default: {{provider: local, model: m}}
  routes:
    claude-chatgpt: {{provider: chatgpt, model: gpt-5.4}}
    claude-expired: {{provider: expired, model: gpt-5.4}}
""")
        with Relay(config, workdir, "--set", "ssl_insecure=true") as relay:
            sign_in(relay, issuer)
            issuer.access_ttl = -10
            stale = sign_in(relay, issuer, "expired")
            issuer.access_ttl = 3600
            client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0, timeout=30)
            said = {}
            for model in ("claude-local", "claude-chatgpt", "claude-expired"):
                with pytest.raises(anthropic.APIStatusError) as raised:
                    client.messages.create(model=model, max_tokens=10, messages=HELLO)
                said[model] = raised.value.body["error"]["message"]
            output = relay.output()
    assert "TLS" not in said["claude-local"]  # the handshake passed: the setting is on
    assert "CERTIFICATE_VERIFY_FAILED" in said["claude-chatgpt"]
    assert "CERTIFICATE_VERIFY_FAILED" in said["claude-expired"]
    for secret in (stale.access_token, stale.refresh_token):
        assert secret not in output and secret not in json.dumps(said)
