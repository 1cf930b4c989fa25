from __future__ import annotations

from pathlib import Path

import pytest

from mock_openai import MockOpenAI
from relay_process import Relay

PROVIDER_KEY = "sk-provider-secret-0123456789"
CLIENT_KEY = "sk-ant-client-secret-0123456789"


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
    # Cancelled connections at shutdown are mitmproxy's own noise; failures of ours are not.
    for sign in ("Addon error", "has crashed", "llmrelay: translating"):
        assert sign not in process.output(), process.output()
