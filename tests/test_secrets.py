"""Secrets exist only on the wire: a mixed session through a real mitmdump, then a search of
everything the relay kept or showed for any key.

The session covers routed requests (stream and JSON), passthrough with the client's own key,
requests the relay answers itself (count_tokens, models, unknown paths, bad requests, a
wrong inbound key), a provider that echoes the key it was sent, and a request still in
flight when the relay is stopped with Ctrl-C. Then the flow file (`-w`), the terminal at
`flow_detail=3`, the data directory and every answer the clients got must hold none of the
provider key, the client's key or the inbound key.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx

from conftest import CLIENT_KEY, PROVIDER_KEY
from faulty_upstream import Fault, FaultyUpstream
from mock_anthropic import MockAnthropic
from relay_process import Relay

INBOUND = "llmrelay-inbound-secret-0123456789"
KEYS = (PROVIDER_KEY, CLIENT_KEY, INBOUND)
HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def test_no_key_is_kept_anywhere_after_a_mixed_session(mock, tmp_path) -> None:
    mock.set_script([{"text": "routed answer"}])
    with FaultyUpstream() as faulty, MockAnthropic(api_key=CLIENT_KEY) as anthropic_api:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"""
providers:
  openai: {{type: openai, base_url: "{mock.base_url}", api_key: {PROVIDER_KEY}}}
  echoing: {{type: openai, base_url: "{faulty.base_url}", api_key: {PROVIDER_KEY}}}
models:
  default: passthrough
  routes:
    claude-haiku-4-5: {{provider: openai, model: gpt-4.1-mini}}
    claude-echo: {{provider: echoing, model: m}}
relay:
  keys: [{INBOUND}]
"""
        )
        flows = tmp_path / "session.flow"
        relay = Relay(config, tmp_path, "-w", str(flows), "--set", "flow_detail=3", reverse=anthropic_api.base_url)
        answers: list[str] = []
        with relay:
            ours = {"x-api-key": INBOUND, **HEADERS}
            body = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
            with httpx.Client(base_url=relay.url, timeout=20) as client:
                for extra in ({}, {"stream": True}):
                    answer = client.post("/v1/messages", json={**body, **extra}, headers=ours)
                    assert answer.status_code == 200
                    answers.append(answer.text)
                # Passthrough: the inbound key beside the client's own Anthropic key.
                passthrough = {**HEADERS, "x-llmrelay-key": INBOUND, "x-api-key": CLIENT_KEY}
                answer = client.post("/v1/messages", json={**body, "model": "claude-opus-4-1"}, headers=passthrough)
                assert answer.status_code == 200 and anthropic_api.requests[-1].headers["x-api-key"] == CLIENT_KEY
                answers.append(answer.text)
                # Answered by the relay itself.
                for method, path, content, headers in [
                    ("POST", "/v1/messages/count_tokens", body, ours),
                    ("GET", "/v1/models", None, ours),
                    ("POST", "/v1/messages/batches", body, ours),
                    ("POST", "/v1/messages", {"model": "claude-haiku-4-5"}, ours),
                    ("POST", "/v1/messages", body, {**HEADERS, "x-api-key": CLIENT_KEY}),  # not an inbound key
                ]:
                    answer = client.request(method, path, json=content, headers=headers)
                    assert answer.status_code < 500
                    answers.append(answer.text + str(answer.headers))
                # A provider that echoes the key it was sent.
                faulty.set_script([Fault("echo_key")])
                answer = client.post("/v1/messages", json={**body, "model": "claude-echo"}, headers=ours)
                assert answer.status_code == 401 and PROVIDER_KEY in faulty.requests[0].headers["authorization"]
                answers.append(answer.text + str(answer.headers))

            # A request still in flight when the relay is stopped.
            faulty.set_script([Fault("silent", wait=30)])
            in_flight = threading.Thread(target=_ask_quietly, args=(relay.url, {**body, "model": "claude-echo", "stream": True}, ours), daemon=True)
            in_flight.start()
            deadline = time.monotonic() + 10
            while not faulty.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert faulty.requests, "the in-flight request never reached the provider"
            relay.process.send_signal(signal.SIGINT)  # Ctrl-C
            relay.process.wait(20)

        kept = {
            "flow file": flows.read_bytes(),
            "terminal": relay.log.read_bytes(),
            "data dir": b"".join(p.read_bytes() for p in relay.data.rglob("*") if p.is_file()),
            "answers": "".join(answers).encode(),
        }
        assert b"claude-echo" in kept["flow file"] and b"claude-opus-4-1" in kept["flow file"]  # the session is there
        assert kept["flow file"].count(b"/v1/chat/completions") >= 3  # in-flight flow included
        for where, data in kept.items():
            for key in KEYS:
                assert key.encode() not in data, f"a key in the {where}"


def _ask_quietly(url: str, body: dict, headers: dict) -> None:
    try:
        httpx.post(url + "/v1/messages", json=body, headers=headers, timeout=30)
    except httpx.HTTPError:
        pass  # the relay went away: that is the point
