"""The mitmproxy glue, through mitmproxy's own addon test harness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils

from adapter import Adapter

CONFIG = """
providers:
  up:
    type: openai
    base_url: https://provider.example/v1
    api_key: sk-provider-key-123
    headers: {X-Extra: "yes"}
models:
  default: {provider: up, model: big-model}
  routes:
    claude-haiku-4-5: {provider: up, model: small-model}
"""


@pytest.fixture
def adapter(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    addon = Adapter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, adapter_config=str(path))
        yield addon


def flow(path: str, body: dict | bytes, method: str = "POST"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = ((b"host", b"127.0.0.1:9"), (b"content-type", b"application/json"), (b"x-api-key", b"sk-ant-client-key"), (b"anthropic-beta", b"x"))
    request = tutils.treq(method=method.encode(), path=path.encode(), content=content, headers=headers)
    return tflow.tflow(req=request, resp=False)


def finish(adapter, f) -> None:
    """The response hooks in mitmproxy's order: ours, (Save), then the late translation."""
    adapter.response(f)
    adapter.late.response(f)


MESSAGE = {"model": "claude-haiku-4-5-20251001", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def test_messages_are_rewritten_for_the_provider_without_client_credentials(adapter) -> None:
    f = flow("/v1/messages?beta=true", {**MESSAGE, "stream": True})
    adapter.request(f)
    assert f.response is None
    assert f.request.url == "https://provider.example/v1/chat/completions"
    assert f.request.host_header == "provider.example"
    headers = f.request.headers
    assert headers["authorization"] == "Bearer sk-provider-key-123"
    assert headers["accept-encoding"] == "identity"
    assert headers["x-extra"] == "yes"
    assert "x-api-key" not in headers and "anthropic-beta" not in headers
    assert int(headers["content-length"]) == len(f.request.content)
    body = json.loads(f.request.content)
    assert body["model"] == "small-model" and body["stream"] is True


def test_an_http2_request_gets_the_providers_authority(adapter) -> None:
    f = flow("/v1/messages", MESSAGE)
    f.request.http_version = "HTTP/2.0"
    f.request.authority = "127.0.0.1:9"  # what :authority carried from the client
    adapter.request(f)
    assert f.request.authority == "provider.example"
    assert f.request.host_header == "provider.example"
    assert f.request.pretty_url == "https://provider.example/v1/chat/completions"


def test_a_stream_is_translated_chunk_by_chunk(adapter) -> None:
    f = flow("/v1/messages", {**MESSAGE, "stream": True})
    adapter.request(f)
    f.response = tutils.tresp(headers=((b"content-type", b"text/event-stream"), (b"content-length", b"999")), content=None)
    adapter.responseheaders(f)
    assert f.response.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in f.response.headers
    assert f.response.headers["transfer-encoding"] == "chunked"
    stream = f.response.stream
    first = stream(b'data: {"choices":[{"index":0,"delta":{"content":"Hel')
    assert first == [] or all(first)  # held back until the line is complete, never b""
    out = stream(b'lo"}}]}\n\n')
    assert b"text_delta" in b"".join(out) and b"Hello" in b"".join(out)
    end = b"".join(stream(b"data: [DONE]\n\n") + stream(b""))
    assert end.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    finish(adapter, f)
    assert f.id not in adapter.exchanges and f.id not in adapter.recorded
    # What stays on the flow is the provider's own stream, for -w files and mitmweb.
    assert f.response.content.startswith(b'data: {"choices"') and f.response.headers["content-type"] == "text/event-stream"


def test_a_crash_inside_the_stream_becomes_an_error_event(adapter, monkeypatch) -> None:
    f = flow("/v1/messages", {**MESSAGE, "stream": True})
    adapter.request(f)
    f.response = tutils.tresp(headers=((b"content-type", b"text/event-stream"),), content=None)
    adapter.responseheaders(f)
    translator_feed = "llmrelay.translate.chat_response.ChatTranslator.feed"
    monkeypatch.setattr(translator_feed, lambda self, data: 1 / 0)
    out = f.response.stream(b"data: {}\n\n")
    assert b"event: error" in b"".join(out)


def test_an_upstream_error_becomes_an_anthropic_error(adapter) -> None:
    f = flow("/v1/messages", MESSAGE)
    adapter.request(f)
    f.response = tutils.tresp(
        status_code=429,
        headers=((b"content-type", b"application/json"), (b"retry-after", b"7")),
        content=b'{"error":{"message":"Rate limit reached for sk-provider-key-123","type":"requests"}}',
    )
    adapter.responseheaders(f)
    assert not f.response.stream
    finish(adapter, f)
    assert f.response.status_code == 429
    assert f.response.headers["retry-after"] == "7"
    body = json.loads(f.response.content)
    assert body["error"]["type"] == "rate_limit_error"
    assert "sk-provider-key-123" not in f.response.text


def test_a_json_answer_for_a_streaming_client_becomes_a_stream(adapter) -> None:
    f = flow("/v1/messages", {**MESSAGE, "stream": True})
    adapter.request(f)
    completion = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}]}
    f.response = tutils.tresp(headers=((b"content-type", b"application/json"),), content=json.dumps(completion).encode())
    adapter.responseheaders(f)
    finish(adapter, f)
    assert f.response.headers["content-type"].startswith("text/event-stream")
    assert b"event: message_start" in f.response.content and b"Hi!" in f.response.content


@pytest.mark.parametrize(
    "method, path, body, status, check",
    [
        ("GET", "/health", b"", 200, lambda b: b == {"status": "ok"}),
        ("GET", "/v1/models", b"", 200, lambda b: [m["id"] for m in b["data"]] == ["claude-haiku-4-5"]),
        ("POST", "/v1/messages/count_tokens", MESSAGE, 200, lambda b: b["input_tokens"] > 0),
        ("POST", "/v1/messages", b"{not json", 400, lambda b: b["error"]["type"] == "invalid_request_error" and b["error"]["message"].startswith("invalid JSON: ")),
        ("POST", "/v1/messages", {"model": "x"}, 400, lambda b: "messages" in b["error"]["message"]),
    ],
)
def test_the_relay_answers_itself(adapter, method, path, body, status, check) -> None:
    f = flow(path, body, method)
    adapter.request(f)
    assert f.response.status_code == status
    assert f.response.headers["content-type"] == "application/json"
    assert check(json.loads(f.response.content))


def test_other_paths_pass_through_untouched(adapter) -> None:
    f = flow("/v1/files", b"{}")
    adapter.request(f)
    assert f.response is None and f.request.host == "address"


def test_a_bad_config_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("providers: {}\nmodels: {default: {provider: gone, model: m}}\n")
    addon = Adapter()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="bad.yaml: models.default.provider: unknown provider 'gone'"):
            tctx.configure(addon, adapter_config=str(path))


def test_a_bug_in_the_relay_still_answers_in_anthropic_form(adapter, monkeypatch) -> None:
    monkeypatch.setattr("llmrelay.relay.to_chat", lambda *args, **kwargs: {}["boom"])
    f = flow("/v1/messages", MESSAGE)
    adapter.request(f)
    assert f.response.status_code == 500
    assert json.loads(f.response.content)["error"]["type"] == "api_error"


def test_credentials_are_redacted_from_the_flow_once_sent(adapter) -> None:
    f = flow("/v1/messages", {**MESSAGE, "stream": True})
    adapter.request(f)
    assert f.request.headers["authorization"] == "Bearer sk-provider-key-123"  # what goes out
    f.response = tutils.tresp(headers=((b"content-type", b"text/event-stream"),), content=None)
    adapter.responseheaders(f)
    finish(adapter, f)
    assert f.request.headers["authorization"] == "[REDACTED]"
    assert f.request.headers["x-extra"] == "[REDACTED]"  # configured headers may hold keys too
    assert "sk-provider-key-123" not in str(f.get_state())

    failed = flow("/v1/messages", MESSAGE)
    adapter.request(failed)
    adapter.error(failed)
    assert failed.request.headers["authorization"] == "[REDACTED]"


def test_a_translated_flow_gets_a_one_line_summary(adapter) -> None:
    f = flow("/v1/messages", MESSAGE)
    adapter.request(f)
    completion = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    f.response = tutils.tresp(headers=((b"content-type", b"application/json"),), content=json.dumps(completion).encode())
    adapter.responseheaders(f)
    finish(adapter, f)
    assert f.comment.startswith("claude-haiku-4-5-20251001 → up:small-model · 9 in / 2 out · ttft ")
    assert f.comment.endswith(" ms · 200")


def rendered(message, flow) -> tuple[str, str]:
    """The view mitmproxy picks for a message and its text, through mitmproxy's own content-view
    machinery (mitmproxy 12's `prettify_message`, or 11's `get_message_content_view`)."""
    from mitmproxy import contentviews

    if hasattr(contentviews, "prettify_message"):
        result = contentviews.prettify_message(message, flow)
        return result.view_name, result.text
    description, lines, _ = contentviews.get_message_content_view("auto", message, flow)
    return description, "\n".join([description] + [text for line in lines for _, text in line])


def test_mitmweb_shows_both_sides_of_a_translated_flow(adapter) -> None:
    f = flow("/v1/messages", {**MESSAGE, "stream": True})
    adapter.request(f)
    f.response = tutils.tresp(headers=((b"content-type", b"text/event-stream"),), content=None)
    adapter.responseheaders(f)
    f.response.stream(b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    f.response.stream(b"")
    finish(adapter, f)
    view, request_text = rendered(f.request, f)
    assert "client → relay" in request_text and '"claude-haiku-4-5-20251001"' in request_text and '"small-model"' in request_text
    view, response_text = rendered(f.response, f)
    assert '"choices"' in response_text and "event: message_stop" in response_text
    assert "claude-haiku-4-5-20251001 → up:small-model" in response_text  # the flow's summary as title
    # Flows the relay did not translate keep mitmproxy's own views.
    plain = tflow.tflow(resp=True)
    assert "both sides" not in rendered(plain.response, plain)[0]
