"""The HTTP client package each official SDK is built on, for tests that hand it a client.

anthropic 1.x and openai 3.x moved from `httpx` to its successor `httpx2` (the same API under
another name); anthropic accepts only its own package's clients. Python 3.11, with mitmproxy
11, keeps the older SDKs on `httpx`; newer Pythons get the current SDKs. Tests build SDK
clients from these modules, so both stacks run the same tests.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _package_of(sdk: str) -> ModuleType:
    base = importlib.import_module(f"{sdk}._base_client")
    module = getattr(base, "httpx2", None) or getattr(base, "httpx")
    assert isinstance(module, ModuleType), f"{sdk} is built on neither httpx nor httpx2"
    return module


anthropic_httpx = _package_of("anthropic")
openai_httpx = _package_of("openai")
