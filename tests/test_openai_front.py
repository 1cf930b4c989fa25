"""OpenAI clients on every provider kind: `/v1/chat/completions`.

Real provider answers (the Anthropic and Responses captures) go through each kind's exchange
behind the OpenAI front, are checked against the strict chunk grammar, read back through the
openai SDK and compared with an independent reading of the capture. Then the openai SDK
through a real mitmdump, to strict mocks of each provider kind.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from anthropic_oracle import read_message
from conftest import CLIENT_KEY, FAILURE_SIGNS, PROVIDER_KEY
from llmrelay.config import AnthropicProvider, ResponsesProvider, Route
from llmrelay.exchange import FrontExchange
from llmrelay.fronts.openai_chat import ChatFront
from llmrelay.providers.anthropic import AnthropicExchange
from llmrelay.providers.responses import ResponsesExchange
from mock_anthropic import MockAnthropic
from mock_issuer import MockIssuer
from mock_responses import MockCodex, MockResponses
from openai_view import check_chunks, read
from relay_process import Relay
from responses_oracle import read_responses

FIXTURES = Path(__file__).parent / "fixtures"
ANTHROPIC = [p for p in sorted((FIXTURES / "anthropic" / "responses").glob("*.json")) if json.loads(p.read_text())["status"] == 200]
RESPONSES = sorted((FIXTURES / "openai-responses").glob("*.json"))
FINISH = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length", "pause_turn": "stop", "refusal": "content_filter"}


def front(stream: bool) -> ChatFront:
    return ChatFront("gpt-test", include_usage=stream)


def through(exchange: Any, fixture: dict, stream: bool) -> tuple[int, bytes, str]:
    exchange = FrontExchange(exchange, front(stream))
    reply = exchange.reply(200, {"content-type": fixture["content_type"]}, fixture["body"].encode())
    return reply.status, reply.body, reply.headers["content-type"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("path", ANTHROPIC, ids=lambda p: p.stem)
def test_anthropic_captures_reach_an_openai_client(path: Path, stream: bool) -> None:
    fixture = json.loads(path.read_text())
    said = read_message(fixture)
    exchange = AnthropicExchange("gpt-test", Route(provider="a", model="m"), AnthropicProvider(type="anthropic", base_url="https://a.test"),
                                 stream, (), ())
    status, body, content_type = through(exchange, fixture, stream)
    if stream:
        check_chunks(body, include_usage=True)
    got = read(status, body, content_type, stream=stream)
    blocks = said["content"]
    assert got["text"] == "".join(b["text"] for b in blocks if b["type"] == "text")
    assert got["reasoning"] == "".join(b.get("thinking", "") for b in blocks if b["type"] == "thinking")
    assert got["tool_calls"] == [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"]
    assert got["finish_reason"] == FINISH[said["stop_reason"]]
    usage = said["usage"]
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = usage["input_tokens"] + cached + (usage.get("cache_creation_input_tokens") or 0)
    assert (got["usage"].prompt_tokens, got["usage"].completion_tokens) == (prompt, usage["output_tokens"])
    assert got["usage"].prompt_tokens_details.cached_tokens == cached


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("path", RESPONSES, ids=lambda p: p.stem)
def test_responses_captures_reach_an_openai_client(path: Path, stream: bool) -> None:
    fixture = json.loads(path.read_text())
    said = read_responses(fixture)
    exchange = ResponsesExchange("gpt-test", Route(provider="r", model="m"), ResponsesProvider(type="openai-responses", base_url="https://r.test/v1"),
                                 stream, {}, 5, ())
    status, body, content_type = through(exchange, fixture, stream)
    if stream:
        check_chunks(body, include_usage=True)
    got = read(status, body, content_type, stream=stream)
    assert got["text"] == said.text + said.refusal and got["reasoning"] == said.reasoning
    assert got["tool_calls"] == [(i, n, p if p is not None else {}) for i, n, _, p in said.tool_calls]
    assert got["finish_reason"] == FINISH[said.finish_reason]
    assert got["usage"].prompt_tokens == said.usage["input_tokens"] and got["usage"].completion_tokens == said.usage["output_tokens"]
    assert got["usage"].prompt_tokens_details.cached_tokens == said.usage["cached_tokens"]
    assert got["usage"].completion_tokens_details.reasoning_tokens == said.usage["reasoning_tokens"]


# --- through a real mitmdump ---------------------------------------------------------------


@pytest.fixture(scope="module")
def anthropic_api():
    with MockAnthropic(api_key=PROVIDER_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def responses_api():
    with MockResponses(api_key=PROVIDER_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def issuer():
    with MockIssuer() as server:
        yield server


@pytest.fixture(scope="module")
def codex(issuer):
    with MockCodex(issuer=issuer) as server:
        yield server


@pytest.fixture(scope="module")
def relay(mock, anthropic_api, responses_api, issuer, codex, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("openai-front")
    config = workdir / "config.yaml"
    config.write_text(f"""
providers:
  oa: {{type: openai, base_url: {mock.base_url}, api_key: {PROVIDER_KEY}}}
  an: {{type: anthropic, base_url: {anthropic_api.base_url.removesuffix('/v1')}, api_key: {PROVIDER_KEY}}}
  re: {{type: openai-responses, base_url: {responses_api.base_url}, api_key: {PROVIDER_KEY}}}
  gpt: {{type: chatgpt, base_url: {codex.base_url}, issuer: {issuer.url}}}
models:
  default: {{provider: oa, model: gpt-4.1-upstream}}
  routes:
    claude-sonnet: {{provider: an, model: claude-sonnet-4-5}}
    via-responses: {{provider: re, model: gpt-5.5}}
    via-chatgpt: {{provider: gpt, model: gpt-5.4}}
relay:
  keys: [{CLIENT_KEY}]
""")
    with Relay(config, workdir) as process:
        from llmrelay import oauth

        oauth.save(process.data, "gpt", oauth.tokens_from(issuer.grant()))
        yield process
    output = process.output()
    for sign in FAILURE_SIGNS:
        assert sign not in output, output


@pytest.fixture
def client(relay) -> openai.OpenAI:
    return openai.OpenAI(api_key=CLIENT_KEY, base_url=relay.url + "/v1", max_retries=0, timeout=30)


def raw_stream(relay, body: dict) -> bytes:
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=30,
                      headers={"authorization": f"Bearer {CLIENT_KEY}"}) as response:
        assert response.status_code == 200, response.read()
        return response.read()


HI = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_an_openai_provider_gets_the_request_as_sent_with_model_and_key_rewritten(client, provider) -> None:
    provider.set_script([{"text": "Passed through."}])
    answer = client.chat.completions.create(model="gpt-4.1", messages=HI, temperature=0.3, logprobs=False, seed=7)
    assert answer.choices[0].message.content == "Passed through."
    sent = provider.requests[-1]
    assert sent.body == {"model": "gpt-4.1-upstream", "messages": HI, "temperature": 0.3, "logprobs": False, "seed": 7}
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_an_openai_provider_s_stream_comes_back_untouched(relay, provider) -> None:
    provider.set_script([{"text": "One two three.", "chunks": 3}])
    body = raw_stream(relay, {"model": "gpt-4.1", "messages": HI, "stream_options": {"include_usage": True}})
    chunks = check_chunks(body, include_usage=True)
    assert {c["model"] for c in chunks} == {"gpt-4.1-upstream"}  # the provider's own chunks
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "One two three."


@pytest.mark.parametrize("model, upstream", [("claude-sonnet", "anthropic"), ("via-responses", "responses"), ("via-chatgpt", "codex")])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_text_from_every_kind(client, relay, anthropic_api, responses_api, codex, model, upstream, stream) -> None:
    mock = {"anthropic": anthropic_api, "responses": responses_api, "codex": codex}[upstream]
    mock.set_script([{"text": "Hi there, friend.", "chunks": 3}])
    if stream:
        body = raw_stream(relay, {"model": model, "messages": HI, "stream_options": {"include_usage": True}})
        chunks = check_chunks(body, include_usage=True)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hi there, friend."
        assert {c["model"] for c in chunks} == {model}
        assert chunks[-1]["usage"]["completion_tokens"] > 0
    else:
        answer = client.chat.completions.create(model=model, messages=HI)
        assert answer.choices[0].message.content == "Hi there, friend." and answer.choices[0].finish_reason == "stop"
        assert answer.model == model and answer.id.startswith("chatcmpl-") and answer.usage.completion_tokens > 0


def test_a_tool_round_trip_through_an_anthropic_provider(client, relay, anthropic_api) -> None:
    anthropic_api.set_script([{"tool_calls": [{"id": "toolu_w1", "name": "get_weather", "input": {"city": "Paris"}}]}])  # (repeats)
    body = raw_stream(relay, {"model": "claude-sonnet", "messages": HI, "tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False})
    chunks = check_chunks(body)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == ["tool_calls"]
    first = anthropic_api.requests[-1].body
    assert first["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert first["tools"][0]["name"] == "get_weather" and first["system"][0]["text"] == "Be brief."
    call = client.chat.completions.create(model="claude-sonnet", messages=HI, tools=[WEATHER])
    anthropic_api.set_script([{"text": "Sunny in Paris."}])
    tool_call = {"id": "toolu_w1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = HI + [{"role": "assistant", "content": None, "tool_calls": [tool_call]},
                    {"role": "tool", "tool_call_id": "toolu_w1", "content": "22 C, sunny"}]
    answer = client.chat.completions.create(model="claude-sonnet", messages=history, tools=[WEATHER])
    assert answer.choices[0].message.content == "Sunny in Paris."
    sent = anthropic_api.requests[-1].body["messages"]
    assert sent[-2]["content"] == [{"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {"city": "Paris"}}]
    assert sent[-1]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_w1", "content": "22 C, sunny"}
    assert call.choices[0].finish_reason == "tool_calls"
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in call.choices[0].message.tool_calls] == [("toolu_w1", "get_weather", {"city": "Paris"})]


def test_an_image_reaches_an_anthropic_provider_as_base64(client, anthropic_api) -> None:
    anthropic_api.set_script([{"text": "A red dot."}])
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    content = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]
    client.chat.completions.create(model="claude-sonnet", messages=[{"role": "user", "content": content}])
    blocks = anthropic_api.requests[-1].body["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}


def test_reasoning_comes_back_as_reasoning_content(client, responses_api) -> None:
    responses_api.set_script([{"reasoning": "Two and two.", "text": "4"}])
    answer = client.chat.completions.create(model="via-responses", messages=HI, reasoning_effort="low")
    assert answer.choices[0].message.content == "4"
    assert answer.choices[0].message.model_extra["reasoning_content"] == "Two and two."
    assert responses_api.requests[-1].body["reasoning"]["effort"] == "low"


@pytest.mark.parametrize("extra, says", [
    ({"n": 2}, "`n` other than 1"),
    ({"response_format": {"type": "json_object"}}, "response_format is not supported"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}, "not valid JSON"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
])
def test_requests_an_openai_client_cannot_make_here_are_clear_400s(client, extra, says) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**{"model": "claude-sonnet", "messages": HI, **extra})
    assert says in raised.value.body["message"] and raised.value.body["type"] == "invalid_request_error"


def test_a_provider_error_keeps_its_status_in_openai_form(client, anthropic_api) -> None:
    anthropic_api.set_script([{"error_status": 429, "headers": {"retry-after": "7"}}])
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="claude-sonnet", messages=HI)
    assert raised.value.response.headers["retry-after"] == "7"
    assert set(raised.value.body) >= {"message", "type", "code"}


def test_an_error_inside_the_stream_reaches_the_sdk(client, anthropic_api) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded right now"}}
    raw = ("event: message_start\ndata: " + json.dumps({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
           "model": "m", "content": [], "stop_reason": None, "usage": {"input_tokens": 1, "output_tokens": 0}}}) + "\n\n"
           "event: error\ndata: " + json.dumps(error) + "\n\n")
    anthropic_api.set_script([{"raw_sse": raw}])
    with pytest.raises(openai.APIError) as raised:
        list(client.chat.completions.create(model="claude-sonnet", messages=HI, stream=True))
    assert "Overloaded right now" in str(raised.value)


def test_models_list_reads_in_both_sdks(client, relay) -> None:
    import anthropic

    assert [m.id for m in client.models.list()] == ["claude-sonnet", "via-responses", "via-chatgpt"]
    other = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0)
    assert [m.id for m in other.models.list()] == ["claude-sonnet", "via-responses", "via-chatgpt"]
    assert client.models.retrieve("claude-sonnet").id == "claude-sonnet"


def test_the_inbound_key_is_asked_of_openai_clients_too(relay) -> None:
    wrong = openai.OpenAI(api_key="sk-wrong", base_url=relay.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.chat.completions.create(model="claude-sonnet", messages=HI)
    assert set(raised.value.body) >= {"message", "type", "code"}


CHAT = [p for p in sorted((FIXTURES / "openai-chat").glob("*.json")) if json.loads(p.read_text())["status"] == 200]


@pytest.mark.parametrize("path", CHAT, ids=lambda p: p.stem)
def test_chat_captures_pass_through_to_an_openai_client_untouched(path: Path) -> None:
    # An OpenAI client in front of an OpenAI-compatible provider: the provider's own bytes.
    from llmrelay.config import OpenAIProvider
    from llmrelay.providers.chat import ChatPassExchange

    fixture = json.loads(path.read_text())
    exchange = ChatPassExchange("gpt-test", Route(provider="o", model="m"), OpenAIProvider(type="openai", base_url="https://o.test/v1"),
                                fixture["stream"], front(fixture["stream"]), ())
    reply = exchange.reply(200, {"content-type": fixture["content_type"]}, fixture["body"].encode())
    assert reply.body == fixture["body"].encode()  # the provider's own bytes, nothing translated
    assert reply.headers["content-type"] == fixture["content_type"]



CHAT_STREAMS_WITH_USAGE = [p for p in CHAT if json.loads(p.read_text())["stream"] and b'"usage":{' in p.read_bytes().replace(b'\\"', b'"')]


@pytest.mark.parametrize("path", CHAT_STREAMS_WITH_USAGE, ids=lambda p: p.stem)
def test_a_passed_through_chat_stream_gives_its_usage_from_its_end(path: Path) -> None:
    # Read from the stream's last events only, however long it was and in whatever reads.
    from llmrelay.config import OpenAIProvider
    from llmrelay.providers.chat import ChatPassExchange

    body = json.loads(path.read_text())["body"].encode()
    padding = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n' * 40_000  # 2 MB more in the middle
    first = body.index(b"\n\n") + 2
    for stream in (body, body[:first] + padding + body[first:]):
        exchange = ChatPassExchange("gpt-test", Route(provider="o", model="m"), OpenAIProvider(type="openai", base_url="https://o.test/v1"),
                                    True, front(True), ())
        exchange.stream_ended([stream[i : i + 65536] for i in range(0, len(stream), 65536)])
        assert exchange.usage and exchange.usage["output_tokens"] > 0, path.stem
