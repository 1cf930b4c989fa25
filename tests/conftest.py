from __future__ import annotations

from pathlib import Path

import pytest

from mock_openai import MockOpenAI
from relay_process import Relay

PROVIDER_KEY = "sk-provider-secret-0123456789"
CLIENT_KEY = "sk-ant-client-secret-0123456789"
# What must never appear in a relay's output (cancelled connections at shutdown are mitmproxy's
# own noise; these are ours).
FAILURE_SIGNS = ("Addon error", "has crashed", "llmrelay: translating", "llmrelay: reading", "llmrelay: answering", "DeprecationWarning")


@pytest.fixture(scope="session")
def mock() -> MockOpenAI:
    with MockOpenAI(api_key=PROVIDER_KEY) as server:
        yield server


@pytest.fixture
def provider(mock: MockOpenAI) -> MockOpenAI:
    """The session's mock provider, with a fresh script and request log for this test."""
    mock.set_script([])
    mock.requests.clear()
    return mock


def write_config(workdir: Path, mock: MockOpenAI) -> Path:
    """A relay configuration routing every model to the mock provider."""
    config = workdir / "config.yaml"
    config.write_text(
        f"""
providers:
  mock:
    type: openai
    base_url: {mock.base_url}
    api_key: {PROVIDER_KEY}
  mock-json:
    type: openai
    base_url: {mock.base_url}
    api_key: {PROVIDER_KEY}
    supports_streaming: false
models:
  default: {{provider: mock, model: gpt-4.1}}
  routes:
    claude-haiku-4-5: {{provider: mock, model: gpt-4.1-mini}}
    claude-json-only: {{provider: mock-json, model: gpt-4.1}}
    claude-sonnet-4-5: {{provider: mock, model: gpt-5, reasoning: effort}}
"""
    )
    return config


@pytest.fixture(scope="session")
def relay(mock: MockOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Relay:
    """mitmdump with the addon, routing every model to the mock provider."""
    workdir = tmp_path_factory.mktemp("relay")
    with Relay(write_config(workdir, mock), workdir) as process:
        yield process
    for sign in FAILURE_SIGNS:
        assert sign not in process.output(), process.output()


COMPAT_KEY = "sk-compat-secret-0123456789"


@pytest.fixture(scope="session")
def anthropic_api():
    """Stands in for api.anthropic.com: the passthrough target, which wants the client's key."""
    from mock_anthropic import MockAnthropic

    with MockAnthropic(api_key=CLIENT_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def compat():
    """An Anthropic-compatible provider that refuses what such providers refuse."""
    from mock_anthropic import MockAnthropic

    with MockAnthropic(
        api_key=COMPAT_KEY,
        bearer=True,
        reject_fields=["context_management", "output_config"],
        reject_betas=["context-management-2025-06-27"],
        reject_cache_ttl=True,
    ) as server:
        yield server


@pytest.fixture
def upstreams(mock, anthropic_api, compat):
    """All three upstreams with fresh scripts and request logs."""
    for server in (mock, anthropic_api, compat):
        server.set_script([])
        server.requests.clear()
    return mock, anthropic_api, compat


@pytest.fixture(scope="session")
def mixed_relay(mock, anthropic_api, compat, tmp_path_factory) -> Relay:
    """Unrouted models pass through to the Anthropic stand-in; others go to providers."""
    workdir = tmp_path_factory.mktemp("mixed")
    config = workdir / "config.yaml"
    config.write_text(
        f"""
providers:
  openai: {{type: openai, base_url: "{mock.base_url}", api_key: {PROVIDER_KEY}}}
  compat:
    type: anthropic
    base_url: {compat.base_url}
    api_key: {COMPAT_KEY}
    auth: bearer
    drop_fields: [context_management, output_config]
    drop_betas: [context-management-2025-06-27]
    strip_cache_ttl: true
  compat-json:
    type: anthropic
    base_url: {compat.base_url}
    api_key: {COMPAT_KEY}
    auth: bearer
    drop_fields: [context_management, output_config]
    drop_betas: all
    strip_cache_ttl: true
    supports_streaming: false
    count_tokens: false
models:
  default: passthrough
  routes:
    claude-haiku-4-5: {{provider: openai, model: gpt-4.1-mini}}
    claude-compat: {{provider: compat, model: kimi-k2}}
    claude-compat-json: {{provider: compat-json, model: kimi-k2}}
"""
    )
    with Relay(config, workdir, reverse=anthropic_api.base_url) as process:
        yield process
    for sign in FAILURE_SIGNS:
        assert sign not in process.output(), process.output()
