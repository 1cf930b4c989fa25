"""Scenario rules: the route chosen by what the request is, tried before the model routes."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from conftest import CLIENT_KEY, PROVIDER_KEY
from llmrelay import usage
from llmrelay.config import parse_config
from llmrelay.protocols import anthropic as a
from mock_anthropic import MockAnthropic, api_key_of
from relay_process import Relay

CONFIG = {
    "providers": {"p": {"type": "openai", "base_url": "https://p.test/v1"}},
    "models": {"default": {"provider": "p", "model": "general"},
               "routes": {"cheap": {"provider": "p", "model": "cheap"}, "reasoner": {"provider": "p", "model": "reasoner"},
                          "long": {"provider": "p", "model": "long"}, "vision": {"provider": "p", "model": "vision"},
                          "agents": {"provider": "p", "model": "agents"}, "team": {"provider": "p", "model": "team"}}},
    "rules": [
        {"when": {"header": {"x-team": "research"}}, "route": "team"},
        {"when": {"server_tool": "web_search"}, "route": "passthrough"},
        {"when": {"kind": "subagent"}, "route": "agents"},
        {"when": {"kind": "background"}, "route": "cheap"},
        {"when": {"thinking": True}, "route": "reasoner"},
        {"when": {"tokens_over": 2000}, "route": "long"},
        {"when": {"images": True}, "route": "vision"},
        {"when": {"model": "claude-3-5-haiku*"}, "route": {"provider": "p", "model": "written-out"}},
    ],
}
TOOL = {"name": "Bash", "description": "Run", "input_schema": {"type": "object"}}
PNG = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}


def request(**extra) -> tuple[a.Request, bytes]:
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 32000, "tools": [TOOL], "messages": [{"role": "user", "content": "hi"}], **extra}).encode()
    return a.parse_request(body), body


CASES = {
    "none matches": (request(), {}, "general"),
    "header": (request(), {"x-team": "research"}, "team"),
    "web search": (request(tools=[TOOL, {"type": "web_search_20250305", "name": "web_search"}]), {}, None),
    "subagent": (request(system="You are an agent for Claude Code, Anthropic's official CLI."), {}, "agents"),
    "background": (request(tools=[], max_tokens=512, system="Write a concise title"), {}, "cheap"),
    "thinking": (request(thinking={"type": "enabled", "budget_tokens": 4000}), {}, "reasoner"),
    "long": (request(messages=[{"role": "user", "content": "word " * 5000}]), {}, "long"),
    "images": (request(messages=[{"role": "user", "content": [PNG, {"type": "text", "text": "what?"}]}]), {}, "vision"),
    "model glob": (request(model="claude-3-5-haiku-20241022"), {}, "written-out"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_rule_kind(name: str) -> None:
    (req, body), headers, model = CASES[name]
    route, rule = parse_config(CONFIG).routed(req.model, req, headers, body)
    assert (route.model if route else None) == model
    assert (rule is None) == (name == "none matches")


def test_a_server_tool_is_told_apart_turn_after_turn_as_the_tools_change() -> None:
    conf = parse_config(CONFIG)
    plain, searching = request(), request(tools=[TOOL, {"type": "web_search_20250305", "name": "web_search"}])
    mentioned = request(tools=[{**TOOL, "description": "not web_search itself"}])
    for (req, body), expected in [(searching, None), (plain, "general"), (searching, None), (mentioned, "general"),
                                  (mentioned, "general"), (searching, None)]:
        route, _ = conf.routed(req.model, req, {}, body)
        assert (route.model if route else None) == expected


def test_a_rule_naming_an_unknown_route_stops_the_configuration() -> None:
    with pytest.raises(Exception, match="rules.0.route: 'nowhere' is not a key of models.routes"):
        parse_config({**CONFIG, "rules": [{"when": {"thinking": True}, "route": "nowhere"}]})


def test_rules_through_mitmdump_with_web_search_kept_on_anthropic(tmp_path, provider) -> None:
    with MockAnthropic(api_key=CLIENT_KEY) as anthropic_api:
        config = _config(tmp_path, provider, """
    reasoner: {provider: mock, model: o-reasoner}
rules:
  - when: {server_tool: web_search}
    route: passthrough
  - when: {thinking: true}
    route: reasoner
""")
        with Relay(config, tmp_path, reverse=anthropic_api.base_url.removesuffix("/v1")) as relay:
            client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0)
            client.messages.create(model="claude-sonnet-4-5", max_tokens=5000, messages=[{"role": "user", "content": "think"}],
                                   thinking={"type": "enabled", "budget_tokens": 2000})
            assert provider.requests[-1].body["model"] == "o-reasoner"
            anthropic_api.set_script([{"text": "Searched on Anthropic."}])
            answer = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "news?"}],
                                            tools=[{"type": "web_search_20250305", "name": "web_search"}])
            assert answer.content[0].text == "Searched on Anthropic."
            assert api_key_of(anthropic_api.requests[-1].headers) == CLIENT_KEY  # the client's own key, to Anthropic
            record = relay.records(1, where=lambda r: r.get("rule") == "rules.1")[-1]
            assert record["rule"] == "rules.1" and "(rules.1)" in usage.summary(record)


def test_a_header_added_by_mitmproxys_modify_headers_is_seen_by_the_rules(tmp_path, provider) -> None:
    # mitmproxy's own header rewriting runs after the relay's `requestheaders` hook: with it
    # set, each request is taken once its head is final, as the client's addons left it.
    config = _config(tmp_path, provider, """
    team: {provider: mock, model: team-model}
rules:
  - when: {header: {x-team: research}}
    route: team
""")
    provider.set_script([{"text": "For the team."}])
    with Relay(config, tmp_path, "--set", "modify_headers=/~q/x-team/research") as relay:
        client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=relay.url, max_retries=0)
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as answer:
            assert answer.get_final_text() == "For the team."
        assert provider.requests[-1].body["model"] == "team-model"


def _config(tmp_path, provider, routes_and_rules: str):
    """A config file: the mock provider, a default model, and the routes and rules given."""
    config = tmp_path / "config.yaml"
    config.write_text(f"""
providers:
  mock: {{type: openai, base_url: {provider.base_url}, api_key: {PROVIDER_KEY}}}
models:
  default: {{provider: mock, model: general}}
  routes:""" + routes_and_rules)
    return config
