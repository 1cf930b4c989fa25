"""The reliability guarantees hold for OpenAI clients too: a cut stream ends with an error in
OpenAI's form, silence gets keep-alive comments, an unreachable provider is a clean error."""

from __future__ import annotations

import httpx
import openai
import pytest

from conftest import CLIENT_KEY, FAILURE_SIGNS, PROVIDER_KEY
from faulty_upstream import Fault, FaultyUpstream, chat_events
from openai_view import chunks_of
from relay_process import Relay, free_port

HI = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def upstream():
    with FaultyUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def relay(upstream, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("openai-faults")
    config = workdir / "config.yaml"
    config.write_text(f"""
providers:
  chat: {{type: openai, base_url: {upstream.base_url}, api_key: {PROVIDER_KEY}, timeouts: {{connect: 2, first_byte: 2, idle: 2}}}}
  down: {{type: openai, base_url: http://127.0.0.1:{free_port()}/v1, api_key: {PROVIDER_KEY}}}
models:
  default: {{provider: chat, model: m}}
  routes:
    gone: {{provider: down, model: m}}
relay:
  ping_interval: 0.25
""")
    with Relay(config, workdir) as process:
        yield process
    for sign in FAILURE_SIGNS:
        assert sign not in process.output(), process.output()


def stream(relay) -> bytes:
    with httpx.stream("POST", relay.url + "/v1/chat/completions", json={"model": "gpt-x", "messages": HI, "stream": True},
                      headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=20) as response:
        assert response.status_code == 200
        return response.read()  # a cut connection raises here


def test_a_stream_cut_by_the_provider_ends_with_an_openai_error(relay, upstream) -> None:
    upstream.set_script([Fault("cut_chunked", events=chat_events(finish=None, done=False)[:3])])
    chunks = chunks_of(stream(relay))
    assert isinstance(chunks[-1], dict) and set(chunks[-1]["error"]) >= {"message", "type", "code"}
    assert "[DONE]" not in chunks and PROVIDER_KEY not in str(chunks)


def test_silence_gets_keep_alive_comments_then_the_answer(relay, upstream) -> None:
    upstream.set_script([Fault("silent", wait=1.0, events=chat_events("Worth the wait."))])
    body = stream(relay)
    assert body.count(b": ping\n\n") >= 2 and body.rstrip().endswith(b"data: [DONE]")


def test_an_unreachable_provider_is_a_clean_openai_error(relay) -> None:
    client = openai.OpenAI(api_key=CLIENT_KEY, base_url=relay.url + "/v1", max_retries=0, timeout=20)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gone", messages=HI)
    assert raised.value.status_code == 529 and "cannot connect" in raised.value.body["message"]
    assert raised.value.response.headers["retry-after"] == "1"
