"""The start-up report through a real mitmdump: what would make the first request fail."""

from __future__ import annotations

import json
import time

from conftest import PROVIDER_KEY
from llmrelay import oauth
from mock_issuer import MockIssuer
from mock_openai import MockOpenAI
from relay_process import Relay, free_port


def report(relay, needle: str, seconds: float = 10.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if needle in relay.output():
            return relay.output()
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in the report:\n{relay.output()}")


def test_the_report_names_what_will_fail(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": "https://elsewhere.example/v1"}}))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with MockOpenAI(api_key=PROVIDER_KEY, models=["gpt-4.1"]) as good, MockOpenAI(api_key="sk-other") as refusing:
        config = tmp_path / "config.yaml"
        config.write_text(f"""
providers:
  good: {{type: openai, base_url: {good.base_url}/chat/completions, api_key: {PROVIDER_KEY}}}
  refusing: {{type: openai, base_url: {refusing.base_url}, api_key: {PROVIDER_KEY}}}
  down: {{type: openai, base_url: http://127.0.0.1:{free_port()}/v1, api_key: {PROVIDER_KEY}}}
  empty: {{type: openai, base_url: https://api.example.com/v1, api_key: "${{NOT_SET_KEY:-}}"}}
  plus: {{type: chatgpt, account: work, base_url: http://127.0.0.1:{free_port()}}}
  unsigned: {{type: chatgpt, account: nobody, base_url: http://127.0.0.1:{free_port()}}}
models:
  default: {{provider: good, model: gpt-4.1}}
  routes:
    sonnet: {{provider: good, model: not-listed-model}}
""")
        with MockIssuer() as issuer:
            oauth.save(tmp_path / "data", "work", oauth.tokens_from(issuer.grant()))
        with Relay(config, tmp_path) as relay:
            out = report(relay, "providers.down:")
            out = report(relay, "providers.refusing:")
            out = report(relay, "providers.good: reachable")
    assert "providers.good: reachable, key accepted, 1 models; routed models it does not list: not-listed-model" in out
    assert "providers.refusing: 127.0.0.1 refused the key (HTTP 401)" in out
    assert "providers.down: unreachable" in out
    assert "providers.empty.api_key: NOT_SET_KEY is not set" in out
    assert "providers.good.base_url: " in out and "ends with the endpoint path /chat/completions" in out
    assert "claude-sonnet-5 → good:not-listed-model" in out and "claude-opus-5-5 → good:gpt-4.1" in out
    assert "https://elsewhere.example/v1: Claude Code started with it does not use this relay" in out
    assert "ends with /v1" in out
    assert "providers.plus: ChatGPT account 'work' signed in (plan plus)" in out
    assert ("providers.unsigned: ChatGPT account 'nobody' is not signed in; run "
            f"`scripts/login --name nobody --data-dir {tmp_path / 'data'}`") in out
    assert PROVIDER_KEY not in out and "Traceback" not in out and "eyJ" not in out


def test_a_base_url_written_with_v1_still_reaches_the_relay(relay, provider) -> None:
    import httpx

    provider.set_script([{"text": "Found it."}])
    body = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    answer = httpx.post(relay.url + "/v1/v1/messages", json=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200 and answer.json()["content"][0]["text"] == "Found it."
