"""The configuration file, edited while the relay runs (a real mitmdump, the mock provider)."""

from __future__ import annotations

import time

import anthropic

from conftest import CLIENT_KEY, PROVIDER_KEY
from relay_process import Relay

HELLO = [{"role": "user", "content": "Hello"}]


def config_text(mock, model: str) -> str:
    return (f"providers:\n  mock: {{type: openai, base_url: {mock.base_url}, api_key: {PROVIDER_KEY}}}\n"
            f"models:\n  default: {{provider: mock, model: {model}}}\n")


def sent_model(client, provider) -> str:
    client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
    return provider.requests[-1].body["model"]


def until(check, seconds: float = 6.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_an_edit_applies_to_new_requests_and_a_bad_edit_keeps_the_last_good_one(provider, tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(provider, "first-model"))
    with Relay(config, tmp_path) as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0)
        assert sent_model(client, provider) == "first-model"
        config.write_text(config_text(provider, "second-model-after-edit"))
        assert until(lambda: "reloaded" in relay.output())
        assert sent_model(client, provider) == "second-model-after-edit"

        config.write_text(config_text(provider, "x").replace("type: openai", "type: nonsense"))
        assert until(lambda: "cannot be used" in relay.output())
        assert "providers.mock" in relay.output() and "Traceback" not in relay.output()
        assert sent_model(client, provider) == "second-model-after-edit"


def test_every_translated_request_gets_a_line_in_the_terminal(provider, tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(provider, "upstream-model"))
    provider.set_script([{"text": "Hi.", "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}])
    with Relay(config, tmp_path) as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0)
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO)
        assert until(lambda: "llmrelay: claude-sonnet-4-5 → mock:upstream-model · 12 in / 3 out · ttft " in relay.output())
        line = next(l for l in relay.output().splitlines() if "llmrelay: claude-sonnet-4-5 →" in l)
        assert line.rstrip().endswith(" · 200") and " ms · " in line


def test_panels_show_each_exchange_in_the_terminal(provider, tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(provider, "upstream-model"))
    provider.set_script([{"text": "A panel answer.", "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}])
    with Relay(config, tmp_path, "--set", "adapter_panels=true") as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0)
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "Show me a panel"}])
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=10, messages=HELLO) as stream:
            stream.get_final_message()
        assert until(lambda: relay.output().count("A panel answer.") >= 2)
        out = relay.output()
    assert "claude-sonnet-4-5 → mock:upstream-model" in out and "last: Show me a panel" in out and "12 in / 3 out" in out
    assert "╭" in out and PROVIDER_KEY not in out
