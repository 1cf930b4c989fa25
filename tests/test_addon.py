"""The mitmproxy glue, through mitmproxy's own addon test harness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import asgiapp, script, serverplayback
from mitmproxy.flow import Error
from mitmproxy.test import taddons, tflow, tutils

from adapter import Adapter
from both_sides import SIDE
from relay_process import free_port

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
        tctx.configure(addon, listen_host="127.0.0.1")
        tctx.configure(addon, adapter_config=str(path))
        yield addon


def flow(path: str, body: dict | bytes, method: str = "POST"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = ((b"host", b"127.0.0.1:9"), (b"content-type", b"application/json"), (b"x-api-key", b"sk-ant-client-key"), (b"anthropic-beta", b"x"))
    request = tutils.treq(method=method.encode(), path=path.encode(), content=content, headers=headers)
    return tflow.tflow(req=request, resp=False)


def replayed(adapter, f, response) -> None:
    """The hooks in mitmproxy's order for an answer ServerPlayback supplies."""
    f.response = response
    f.is_replay = "response"
    asyncio.run(adapter.late.request(f))
    adapter.response(f)
    adapter.late.response(f)


MESSAGE = {"model": "claude-haiku-4-5-20251001", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}


def json_response(body: dict, status: int = 200, **headers: str):
    fields = ((b"content-type", b"application/json"), *((k.encode(), v.encode()) for k, v in headers.items()))
    return tutils.tresp(status_code=status, headers=fields, content=json.dumps(body).encode())


def test_messages_are_rewritten_for_the_provider_and_the_flow_holds_no_credentials(adapter) -> None:
    f = flow("/v1/messages?beta=true", {**MESSAGE, "stream": True})
    adapter.request(f)
    assert f.response is None
    assert f.request.url == "https://provider.example/v1/chat/completions"
    assert f.request.host_header == "provider.example"
    headers = f.request.headers
    assert headers["authorization"] == "[REDACTED]" and headers["x-extra"] == "[REDACTED]"  # configured headers may hold keys too
    assert headers["accept-encoding"] == "identity"
    assert "x-api-key" not in headers and "anthropic-beta" not in headers
    assert int(headers["content-length"]) == len(f.request.content)
    body = json.loads(f.request.content)
    assert body["model"] == "small-model" and body["stream"] is True
    # The key exists only in what the relay itself sends.
    call = adapter.pending[f.id].call
    assert ("authorization", "Bearer sk-provider-key-123") in call.headers and call.url == "https://provider.example/v1/chat/completions"
    assert "sk-provider-key-123" not in str(f.get_state())


def test_an_http2_request_gets_the_providers_authority(adapter) -> None:
    f = flow("/v1/messages", MESSAGE)
    f.request.http_version = "HTTP/2.0"
    f.request.authority = "127.0.0.1:9"  # what :authority carried from the client
    adapter.request(f)
    assert f.request.authority == "provider.example"
    assert f.request.host_header == "provider.example"
    assert f.request.pretty_url == "https://provider.example/v1/chat/completions"


def test_a_stream_goes_to_the_loopback_leg_and_the_flow_comes_back_showing_the_provider(adapter, monkeypatch) -> None:
    # Nothing listens there: the relay's own answer is an error, and the flow shows it.
    monkeypatch.setattr(adapter.config.providers["up"], "base_url", f"http://127.0.0.1:{free_port()}/v1")
    f = flow("/v1/messages", {**MESSAGE, "stream": True})
    adapter.request(f)
    adapter.pending[f.id].call.url = adapter.config.providers["up"].base_url + "/chat/completions"
    shown = f.request.get_state()

    async def hooks() -> None:
        adapter.loopback.port = 40001  # as if started
        await adapter.late.request(f)
        assert f.request.url.startswith("http://127.0.0.1:40001/") and f.request.raw_content == b""
        assert "sk-provider-key-123" not in str(f.get_state())
        answer = adapter.in_flight[f.id].answer
        await answer._task
        assert answer.sink.status == 529 and answer.provider_status is None

    asyncio.run(hooks())
    f.response = tutils.tresp(status_code=529, headers=((b"content-type", b"application/json"),), content=None)
    adapter.responseheaders(f)
    # Streamed: the first bytes pass unchanged and tell the answer so; the rest pass as they are.
    assert f.response.stream(b"event: ping\n\n") == b"event: ping\n\n" and f.response.stream is True
    assert adapter.in_flight[f.id].answer._delivered
    adapter.response(f)
    assert f.request.get_state() == shown  # the provider request again, for -w and mitmweb
    assert json.loads(f.response.content)["error"]["type"] == "overloaded_error"
    assert "sk-provider-key-123" not in str(f.get_state())


def test_a_replayed_answer_is_translated_whole(adapter) -> None:
    f = flow("/v1/messages", {**MESSAGE, "stream": True})
    adapter.request(f)
    replayed(adapter, f, json_response(COMPLETION))
    assert f.response.headers["content-type"].startswith("text/event-stream")
    assert b"event: message_start" in f.response.content and b"Hi!" in f.response.content
    assert f.comment.endswith(" · replayed")


def test_a_replayed_upstream_error_becomes_an_anthropic_error(adapter) -> None:
    f = flow("/v1/messages", MESSAGE)
    adapter.request(f)
    error = {"error": {"message": "Rate limit reached for sk-provider-key-123", "type": "requests"}}
    replayed(adapter, f, json_response(error, 429, **{"retry-after": "7"}))
    assert f.response.status_code == 429
    assert f.response.headers["retry-after"] == "7"
    body = json.loads(f.response.content)
    assert body["error"]["type"] == "rate_limit_error"
    assert "sk-provider-key-123" not in f.response.text


@pytest.mark.parametrize(
    "method, path, body, status, check",
    [
        ("GET", "/health", b"", 200, lambda b: b == {"status": "ok"}),
        ("GET", "/", b"", 200, lambda b: b == {"status": "ok"}),
        ("GET", "/v1/models", b"", 200, lambda b: [m["id"] for m in b["data"]] == ["claude-haiku-4-5"]),
        ("GET", "/v1/models/claude-haiku-4-5", b"", 200, lambda b: b["id"] == "claude-haiku-4-5"),
        ("POST", "/v1/messages/count_tokens", MESSAGE, 200, lambda b: b["input_tokens"] > 0),
        ("POST", "/v1/messages", b"{not json", 400, lambda b: b["error"]["type"] == "invalid_request_error" and b["error"]["message"].startswith("invalid JSON: ")),
        ("POST", "/v1/messages", {"model": "x"}, 400, lambda b: "messages" in b["error"]["message"]),
        ("POST", "/v1/messages/batches", b"{}", 404, lambda b: b["error"]["type"] == "not_found_error"),
        ("GET", "/v1/messages", b"", 405, lambda b: "POST" in b["error"]["message"]),
    ],
)
def test_the_relay_answers_itself(adapter, method, path, body, status, check) -> None:
    f = flow(path, body, method)
    adapter.request(f)
    assert f.response.status_code == status
    assert f.response.headers["content-type"] == "application/json"
    assert check(json.loads(f.response.content))
    assert f.request.headers["x-api-key"] == "[REDACTED]"  # the client's key is not kept either


def test_a_bad_config_stops_start_up_with_a_clear_message(tmp_path: Path, caplog) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("providers: {}\nmodels: {default: {provider: gone, model: m}}\n")
    addon = Adapter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, listen_host="127.0.0.1")
        tctx.configure(addon, adapter_config=str(path))
        assert "bad.yaml: models.default.provider: unknown provider 'gone'" in caplog.text
        assert tctx.options.server is False  # nothing listens while mitmdump exits
        # Once running, a bad change is refused and rolled back instead.
        addon.started = True
        with pytest.raises(exceptions.OptionsError, match="unknown provider 'gone'"):
            tctx.configure(addon, adapter_config=str(path))


def test_listening_beyond_loopback_needs_inbound_keys(tmp_path: Path, caplog) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    addon = Adapter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, listen_host="127.0.0.2")  # loopback too
        tctx.configure(addon, adapter_config=str(path))
        assert tctx.options.server is True
        tctx.configure(addon, listen_host="")
        assert "refusing to listen on every interface without inbound keys" in caplog.text
        assert tctx.options.server is False
        caplog.clear()
        tctx.configure(addon, listen_host="127.0.0.1", server=True)
        tctx.configure(addon, mode=["reverse:http://127.0.0.1:9@0.0.0.0:8082"])
        assert "refusing to listen on 0.0.0.0" in caplog.text
        path.write_text(CONFIG + "relay: {keys: [relay-key-0123456789]}\n")
        tctx.configure(addon, server=True, mode=["regular"])
        tctx.configure(addon, adapter_config=str(path))
        tctx.configure(addon, listen_host="")  # with keys: allowed
        assert tctx.options.server is True


def test_a_bug_in_the_relay_still_answers_in_anthropic_form(adapter, monkeypatch) -> None:
    monkeypatch.setattr("llmrelay.providers.chat.to_chat", lambda *args, **kwargs: {}["boom"])
    f = flow("/v1/messages", MESSAGE)
    adapter.request(f)
    assert f.response.status_code == 500
    assert json.loads(f.response.content)["error"]["type"] == "api_error"


def test_a_translated_flow_gets_a_one_line_summary(adapter) -> None:
    f = flow("/v1/messages", MESSAGE)
    adapter.request(f)
    replayed(adapter, f, json_response(COMPLETION))
    assert f.comment.startswith("claude-haiku-4-5-20251001 → up:small-model · 9 in / 2 out · ttft ")
    assert f.comment.endswith(" ms · 200 · replayed")


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
    stream = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    replayed(adapter, f, tutils.tresp(headers=((b"content-type", b"text/event-stream"),), content=stream))
    view, request_text = rendered(f.request, f)
    assert "client → relay" in request_text and '"claude-haiku-4-5-20251001"' in request_text and '"small-model"' in request_text
    view, response_text = rendered(f.response, f)
    assert '"choices"' in response_text and "event: message_stop" in response_text
    assert "claude-haiku-4-5-20251001 → up:small-model" in response_text  # the flow's summary as title
    # Flows the relay did not translate keep mitmproxy's own views.
    plain = tflow.tflow(resp=True)
    assert "both sides" not in rendered(plain.response, plain)[0]


# --- requests taken as they arrive ------------------------------------------------------


@pytest.fixture
def taking(tmp_path: Path):
    """The adapter as mitmdump runs it, not recording: requests are taken as they arrive.
    The provider listens nowhere, so each answer is the relay's own error."""
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.replace("https://provider.example/v1", f"http://127.0.0.1:{free_port()}/v1"))
    addon = Adapter()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, listen_host="127.0.0.1", adapter_config=str(path), adapter_data_dir=str(tmp_path / "data"))
        addon.loopback.port = 40001  # as if started
        yield addon, tctx


def arriving(path: str, body: dict | bytes):
    """A flow as mitmproxy has it in `requestheaders`: the head read, the body still to come."""
    f = flow(path, body)
    content = f.request.raw_content
    f.request.headers["content-length"] = str(len(content))
    f.request.data.content = None
    return f, content


def test_a_request_is_taken_as_it_arrives_and_leaves_with_its_last_byte(taking) -> None:
    adapter, _ = taking
    f, body = arriving("/v1/messages?beta=true", MESSAGE)

    async def hooks() -> None:
        adapter.requestheaders(f)
        # On the loopback leg from its head on; nothing but the head goes there.
        assert f.request.url.startswith("http://127.0.0.1:40001/")
        assert f.request.headers.fields == ((b"host", b"127.0.0.1:40001"), (b"content-length", b"0"))
        assert f.request.stream(body[:7]) == b"" and f.request.stream(body[7:]) == b""
        assert f.id not in adapter.in_flight  # not before the last byte
        assert f.request.stream(b"") == b""  # the end of the body
        flight = adapter.in_flight[f.id]
        assert flight.answer.call.url.endswith("/v1/chat/completions") and json.loads(flight.answer.call.body)["model"] == "small-model"
        assert flight.answer.sink is adapter.loopback.jobs[f.request.path].sink  # what mitmproxy will read
        adapter.request(f)  # the `request` hooks come after: nothing is left for them to do
        assert f.id not in adapter.pending and f.response is None
        await flight.answer._task
        assert flight.answer.sink.status == 529

    asyncio.run(hooks())
    f.response = tutils.tresp(status_code=529, headers=((b"content-type", b"application/json"),), content=None)
    adapter.responseheaders(f)
    assert f.response.stream is True  # a JSON answer passes on as it comes, the `response` hooks after it
    adapter.response(f)
    # The flow shows the exchange with the provider, and the client's side beside it.
    assert f.request.url.endswith("/v1/chat/completions") and f.request.headers["authorization"] == "[REDACTED]"
    assert json.loads(f.request.content)["model"] == "small-model" and f.request.stream is False
    assert f.metadata["llmrelay"]["client_request"] == body
    assert json.loads(f.response.content)["error"]["type"] == "overloaded_error"
    assert "sk-provider-key-123" not in str(f.get_state()) and "sk-ant-client-key" not in str(f.get_state())
    assert not adapter.in_flight and not adapter.early


def test_what_the_relay_answers_itself_comes_over_the_loopback_leg_too(taking) -> None:
    adapter, _ = taking
    f, body = arriving("/v1/messages/count_tokens", MESSAGE)
    adapter.requestheaders(f)
    sink = adapter.loopback.jobs[f.request.path].sink
    f.request.stream(body)
    f.request.stream(b"")
    assert sink.status == 200 and sink.ended and json.loads(b"".join(sink.body))["input_tokens"] > 0
    f.response = tutils.tresp(status_code=200, headers=((b"content-type", b"application/json"),), content=None)
    adapter.responseheaders(f)
    adapter.response(f)
    # The flow shows the client's request, its key redacted, and the relay's answer.
    assert f.request.path == "/v1/messages/count_tokens" and f.request.headers["x-api-key"] == "[REDACTED]"
    assert f.request.content == body and json.loads(f.response.content)["input_tokens"] > 0


def test_a_client_gone_before_its_body_was_in_leaves_nothing_behind(taking) -> None:
    adapter, _ = taking
    f, body = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    f.request.stream(body[:5])
    f.error = Error("client disconnected")
    adapter.error(f)
    assert not adapter.early and not adapter.loopback.jobs and not adapter.in_flight
    # The flow shows what the client sent, its key redacted.
    assert f.request.path == "/v1/messages" and f.request.content == body[:5] and f.request.headers["x-api-key"] == "[REDACTED]"


def test_a_killed_flow_sends_nothing_on(taking) -> None:
    adapter, _ = taking
    f, body = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    f.request.stream(body)
    f.kill()
    f.request.stream(b"")
    assert not adapter.in_flight and adapter.loopback.jobs[f.request.path].answer is None


def test_a_body_that_does_not_end_at_its_length_is_still_answered(taking) -> None:
    # An HTTP/2 request may end with its headers though they announce a body: mitmproxy then
    # reads it whole (empty), and never streams it.
    adapter, _ = taking
    f, _ = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    sink = adapter.loopback.jobs[f.request.path].sink
    f.request.data.content = b""
    adapter.request(f)
    assert sink.status == 400 and sink.ended and json.loads(b"".join(sink.body))["error"]["type"] == "invalid_request_error"
    assert not adapter.early and f.id in adapter.in_flight


class Recorder:
    """Stands in for mitmproxy's Save, ServerPlayback, ModifyHeaders and UpstreamAuth, with
    their options."""

    def load(self, loader) -> None:
        loader.add_option("save_stream_file", Optional[str], None, "")
        loader.add_option("server_replay", Sequence[str], [], "")
        loader.add_option("modify_headers", Sequence[str], [], "")
        loader.add_option("upstream_auth", Optional[str], None, "")


@pytest.mark.parametrize("option, value", [("save_stream_file", "flows"), ("server_replay", ["flows"]),
                                           ("modify_headers", ["/~q/x-team/blue"]), ("upstream_auth", "user:secret")])
def test_recording_replaying_or_rewriting_heads_takes_each_request_whole(taking, option, value) -> None:
    adapter, tctx = taking
    tctx.master.addons.add(Recorder())
    tctx.options.update(**{option: value})
    adapter.configure({option})
    f, _ = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    assert f.request.stream is False and f.request.host == "address" and not adapter.early


def test_another_addons_request_hook_gets_each_request_whole(taking) -> None:
    adapter, tctx = taking

    class Rewriter:
        def request(self, flow) -> None:
            pass

    tctx.master.addons.add(Rewriter())
    adapter.configure(set())
    f, _ = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    assert f.request.stream is False and not adapter.early


def test_an_addon_after_this_one_with_a_requestheaders_hook_gets_the_clients_head(taking) -> None:
    adapter, tctx = taking

    class Tagger:
        def __init__(self, name: str) -> None:
            self.name = name

        def requestheaders(self, flow) -> None:
            flow.request.headers["x-team"] = "blue"

    tctx.master.addons.chain.insert(0, tctx.master.addons.register(Tagger("before")))  # its change is seen
    adapter.configure(set())
    f, _ = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    assert f.request.stream is not False and adapter.early
    tctx.master.addons.add(Tagger("after"))  # it would tag the loopback head
    adapter.configure(set())
    f, _ = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    assert f.request.stream is False and f.id not in adapter.early


class Rewriter:
    """Another addon that changes each request in its `request` hook."""

    def request(self, flow) -> None:
        flow.request.headers["x-team"] = "blue"


def taken_early(adapter: Adapter) -> bool:
    """Whether the adapter takes a new Messages request as it arrives."""
    f, _ = arriving("/v1/messages", MESSAGE)
    adapter.requestheaders(f)
    early = f.id in adapter.early
    assert early == (f.request.stream is not False)
    return early


@pytest.mark.parametrize("nested", [False, True], ids=["added", "nested in another addon"])
def test_an_addon_added_while_running_is_noticed_at_the_next_request(taking, nested: bool) -> None:
    adapter, tctx = taking
    holder = SimpleNamespace(name="holder", addons=[])  # (a script's `addons` list, say)
    if nested:
        tctx.master.addons.add(holder)
    assert taken_early(adapter)
    if nested:
        holder.addons.append(Rewriter())  # mitmproxy runs its hooks: nothing tells the other addons
    else:
        tctx.master.addons.add(Rewriter())  # (as another addon or a console command may: no hook tells the others)
    assert not taken_early(adapter)


def test_a_web_app_hosted_by_mitmproxy_keeps_its_requests(taking) -> None:
    adapter, tctx = taking

    def app(environ, start_response):  # (a Flask app in a user's script, say)
        start_response("200 OK", [])
        return [b"served"]

    assert taken_early(adapter)
    tctx.master.addons.add(asgiapp.WSGIApp(app, "tools.example", 80))
    assert not taken_early(adapter)


def test_recordings_loaded_by_a_command_are_replayed_not_bypassed(taking) -> None:
    adapter, tctx = taking
    playback = serverplayback.ServerPlayback()
    tctx.master.addons.add(playback)
    assert taken_early(adapter)
    playback.load_flows([tflow.tflow(resp=True)])  # what `replay.server` does: no option is set
    assert not taken_early(adapter)


def run_script(tctx, path: Path, check) -> None:
    """`check(script)` with `path` loaded as mitmproxy loads `-s path`, inside a running loop."""

    async def scripted() -> None:
        loader = script.ScriptLoader()
        tctx.master.addons.add(loader)
        tctx.configure(loader, scripts=[str(path)])
        try:
            check(loader.addons[0])
        finally:
            for running in loader.addons:
                running.done()

    asyncio.run(scripted())


def test_a_script_importing_a_module_named_like_a_hook_keeps_the_early_path(taking, tmp_path) -> None:
    adapter, tctx = taking
    path = tmp_path / "helper.py"
    path.write_text("from urllib import request\n\ndef response(flow):\n    pass\n")

    def check(loaded) -> None:
        loaded.loadscript()
        assert loaded.ns.request.__name__ == "urllib.request"
        assert taken_early(adapter)  # mitmproxy calls no `request` there either

    run_script(tctx, path, check)


def test_a_script_reloaded_with_a_request_hook_is_noticed_at_the_next_request(taking, tmp_path) -> None:
    adapter, tctx = taking
    path = tmp_path / "rewriter.py"
    path.write_text("def response(flow):\n    pass\n")

    def check(loaded) -> None:
        adapter.configure(set())
        assert taken_early(adapter)
        path.write_text("def request(flow):\n    flow.request.headers['x-team'] = 'blue'\n")
        loaded.loadscript()  # what mitmproxy does when the file changes: no hook tells the other addons
        assert not taken_early(adapter)

    run_script(tctx, path, check)


def test_finished_flows_are_collected_once_their_bodies_add_up(monkeypatch) -> None:
    """A finished flow is freed only by a full collection: one is run for every 8 MB of
    bodies in the flows finished since the last (answered or failed), and not more often."""
    import gc

    collections = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args))
    adapter = Adapter()
    f = tflow.tflow(resp=True)
    f.request.raw_content = b"r" * (1 << 20)
    f.response.raw_content = b"a" * (1 << 19)
    f.metadata[SIDE] = {"client_request": b"c" * (1 << 19)}  # 2 MB in all
    failed = tflow.tflow(err=True)
    failed.request.raw_content = b"r" * (2 << 20)

    async def finish(count: int, flow=f) -> None:
        for _ in range(count):
            adapter.late.response(flow) if flow.error is None else adapter.error(flow)
        await asyncio.sleep(0.01)  # (a collection holds the next back for 50 times its own length)

    async def run() -> None:
        await finish(3)  # 6 MB
        assert collections == []
        await finish(1, failed)  # 8 MB
        assert collections == [()]
        await finish(3)  # 6 MB since
        assert collections == [()]
        await finish(1)
        assert collections == [(), ()]

    asyncio.run(run())


def test_collections_take_a_small_share_of_the_time(monkeypatch) -> None:
    """Where a view keeps every flow (mitmweb), a full collection walks them all and frees
    little: after one that took 10 ms, the next waits 0.5 s, whatever has finished meanwhile."""
    import gc
    import time

    collections = []
    monkeypatch.setattr(gc, "collect", lambda *args: (collections.append(args), time.sleep(0.01)))
    adapter = Adapter()
    f = tflow.tflow(resp=True)
    f.request.raw_content = b"r" * (8 << 20)

    async def run() -> None:
        adapter.late.response(f)
        await asyncio.sleep(0)
        assert len(collections) == 1
        for _ in range(3):
            adapter.late.response(f)
            await asyncio.sleep(0)
        assert len(collections) == 1  # held back
        await asyncio.sleep(0.6)
        adapter.late.response(f)
        await asyncio.sleep(0)
        assert len(collections) == 2

    asyncio.run(run())
