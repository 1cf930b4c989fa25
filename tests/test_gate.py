"""Callers the user allows, and no one else, through a real mitmdump.

A web page can POST to 127.0.0.1 across sites, or point a name of its own at 127.0.0.1 and
read the answers (DNS rebinding); a relay reachable from the network can be used by anyone
on it. None of those requests may reach a provider.
"""

from __future__ import annotations

import subprocess

import anthropic
import httpx
import pytest

from conftest import PROVIDER_KEY
from relay_process import MITMDUMP, ROOT, Relay

INBOUND = "llmrelay-inbound-key-0123456789"
FROM_FILE = "llmrelay-key-from-a-file-0123456789"
BODY = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def guarded(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gate")
    keys = workdir / "keys"
    keys.write_text(f"# one key a line\n{FROM_FILE}\n")
    config = workdir / "config.yaml"
    config.write_text(
        f"""
providers:
  mock: {{type: openai, base_url: "{mock.base_url}", api_key: {PROVIDER_KEY}}}
models:
  default: {{provider: mock, model: gpt-4.1}}
relay:
  keys: [{INBOUND}]
  keys_file: {keys}
  allowed_origins: [https://my-tool.example]
  allowed_hosts: [relay.internal]
"""
    )
    with Relay(config, workdir) as process:
        yield process


def post(relay, headers: dict[str, str], json=BODY, content=None) -> httpx.Response:
    return httpx.post(relay.url + "/v1/messages", json=None if content is not None else json, content=content,
                      headers={"anthropic-version": "2023-06-01", **headers}, timeout=10)


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": INBOUND}, {"authorization": f"Bearer {INBOUND}"}, {"x-llmrelay-key": INBOUND, "x-api-key": "sk-ant-own"},
     {"x-api-key": FROM_FILE}],
    ids=["x-api-key", "bearer", "x-llmrelay-key", "from-the-keys-file"],
)
def test_an_inbound_key_lets_a_caller_in(guarded, provider, headers) -> None:
    provider.set_script([{"text": "welcome"}])
    answer = post(guarded, headers)
    assert answer.status_code == 200 and answer.json()["content"][0]["text"] == "welcome"


def test_the_sdk_sends_the_inbound_key_as_it_sends_any_key(guarded, provider) -> None:
    provider.set_script([{"text": "welcome"}])
    client = anthropic.Anthropic(api_key=INBOUND, base_url=guarded.url, max_retries=0)
    assert client.messages.create(**BODY).content[0].text == "welcome"


REFUSED = {
    "no key": ({}, 401, "authentication_error"),
    "a wrong key": ({"x-api-key": "sk-ant-guess"}, 401, "authentication_error"),
    "dns rebinding": ({"x-api-key": INBOUND, "host": "attacker.example:8082"}, 403, "permission_error"),
    "cross-site page": ({"x-api-key": INBOUND, "origin": "https://attacker.example"}, 403, "permission_error"),
    "a simple cross-site POST": ({"origin": "https://attacker.example", "content-type": "text/plain"}, 403, "permission_error"),
    "text/plain": ({"x-api-key": INBOUND, "content-type": "text/plain"}, 415, "invalid_request_error"),
    "a form": ({"x-api-key": INBOUND, "content-type": "application/x-www-form-urlencoded"}, 415, "invalid_request_error"),
}


@pytest.mark.parametrize("headers, status, error_type", REFUSED.values(), ids=REFUSED.keys())
def test_callers_not_allowed_never_reach_the_provider(guarded, provider, headers, status, error_type) -> None:
    provider.set_script([{"text": "must not be spent"}])
    content = b'{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}'
    answer = post(guarded, {"content-type": "application/json", **headers}, content=content)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["type"] == error_type
    assert not provider.requests


def test_allowed_origins_and_hosts_and_open_paths(guarded, provider) -> None:
    provider.set_script([{"text": "ok"}])
    assert post(guarded, {"x-api-key": INBOUND, "origin": "https://my-tool.example"}).status_code == 200
    assert post(guarded, {"x-api-key": INBOUND, "host": "relay.internal:8082"}).status_code == 200
    assert post(guarded, {"x-api-key": INBOUND, "host": "localhost:8082"}).status_code == 200
    assert httpx.get(guarded.url + "/health").status_code == 200  # tells nothing: no key needed
    assert httpx.get(guarded.url + "/v1/models").status_code == 401


def test_the_relay_will_not_listen_beyond_loopback_without_keys(mock, tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"providers:\n  mock: {{type: openai, base_url: '{mock.base_url}'}}\nmodels:\n  default: {{provider: mock, model: m}}\n")
    run = subprocess.run(
        [str(MITMDUMP), "-s", str(ROOT / "addon" / "adapter.py"), "--mode", "reverse:http://127.0.0.1:9",
         "--set", "connection_strategy=lazy", "--set", f"confdir={tmp_path / 'mitmproxy'}",
         "--set", f"adapter_config={config}", "--set", f"adapter_data_dir={tmp_path / 'data'}", "-p", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert run.returncode != 0
    assert "refusing to listen on every interface without inbound keys" in run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
