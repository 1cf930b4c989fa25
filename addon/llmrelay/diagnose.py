"""The start-up report: what would make the first request fail, said before it is sent.

Rules:
- each provider: its key present (an unset `${VAR}` named), then, off the request path and
  with a short timeout, one cheap request (`GET …/models`) saying whether it is reachable and
  takes the key, and which routed models it does not list; a `chatgpt` provider: whether its
  account is signed in (and on which plan), or the `scripts/login` to run;
- which route each Claude Code model name of the moment takes (`CLAUDE_MODELS`);
- `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`, `ANTHROPIC_AUTH_TOKEN` in this environment or in
  Claude Code's settings that would send Claude Code elsewhere, or make it use Anthropic's
  login instead of the relay;
- what the configuration loader corrected (a base_url with an endpoint path or `/v1` twice).

`static(config, relay_url)` gives the lines that need no network; `probe(...)` the
providers' lines. Nothing here changes anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import oauth
from .config import Config

# Names Claude Code sends (its defaults and its /model picker), newest first.
CLAUDE_MODELS = ("claude-opus-5-5", "claude-opus-4-8", "claude-sonnet-5", "claude-sonnet-4-5", "claude-haiku-4-5")
ENV_NAMES = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")

# An HTTP GET the relay supplies: url, headers → (status, body); raises on network failure.
Get = Callable[[str, dict[str, str]], Awaitable[tuple[int, bytes]]]


def static(config: Config, relay_url: str, settings: Path | None = None, data_dir: Path | None = None) -> list[str]:
    lines = list(config._notes)
    for where, name in config._unset.items():
        lines.append(f"{where}: {name} is not set, so it is empty" + (" (requests to this provider will be refused)" if where.endswith("api_key") else ""))
    for name, provider in config.providers.items():
        if provider.type in ("openai", "anthropic", "openai-responses") and not provider.key and not _local(provider.base_url):
            if not any(where.startswith(f"providers.{name}.") for where in config._unset):
                lines.append(f"providers.{name}: no api_key")
        if provider.type == "chatgpt" and data_dir is not None:
            lines.append(f"providers.{name}: {_signed_in(provider.account or name, provider.issuer, data_dir)}")
    taken = []
    for model in CLAUDE_MODELS:
        route = config.route(model)
        taken.append(f"{model} → {route.provider}:{route.model}" if route else f"{model} → passthrough")
    lines.append("Claude Code's models: " + "; ".join(taken))
    lines += conflicts(relay_url, settings)
    return lines


def _signed_in(account: str, issuer: str, data_dir: Path) -> str:
    try:
        tokens = oauth.load(data_dir, account, issuer)
    except oauth.AuthError as e:
        return str(e)
    except OSError as e:
        return f"ChatGPT account {account!r}: its token file cannot be read ({e.strerror})"
    if tokens is None:
        return f"ChatGPT account {account!r} is not signed in; {oauth.signin_hint(account, data_dir, issuer)}"
    plan = oauth.profile(tokens)["plan"]
    return f"ChatGPT account {account!r} signed in" + (f" (plan {plan})" if plan else "")


def conflicts(relay_url: str, settings: Path | None = None) -> list[str]:
    """What in the environment or Claude Code's settings points Claude Code elsewhere."""
    found = []
    sources: list[tuple[str, dict[str, Any]]] = [("this environment", dict(os.environ))]
    path = settings or Path(os.environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude") / "settings.json"
    try:
        data = json.loads(path.read_text())
        env = data.get("env") if isinstance(data, dict) else None
        if isinstance(env, dict):
            sources.append((str(path), env))
    except (OSError, ValueError):
        pass
    for where, env in sources:
        base = env.get("ANTHROPIC_BASE_URL")
        if isinstance(base, str) and base and not base.rstrip("/").startswith(relay_url.rstrip("/")):
            found.append(f"ANTHROPIC_BASE_URL in {where} is {base}: Claude Code started with it does not use this relay ({relay_url})")
        if isinstance(base, str) and base.rstrip("/").endswith("/v1"):
            found.append(f"ANTHROPIC_BASE_URL in {where} ends with /v1: Claude Code adds /v1 itself (the relay takes /v1/v1/... too)")
        if env.get("ANTHROPIC_API_KEY") and env.get("ANTHROPIC_AUTH_TOKEN"):
            found.append(f"{where} sets both ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN: Claude Code sends both; set one")
    return found


async def probe(config: Config, get: Get, timeout: float = 5.0) -> list[str]:
    """One cheap request per provider with a key: reachable, key taken, models listed."""
    import asyncio

    async def one(name: str, provider: Any) -> str | None:
        if provider.type not in ("openai", "anthropic", "openai-responses"):
            return None
        url, headers = _models_request(provider)
        try:
            async with asyncio.timeout(timeout):
                status, body = await get(url, headers)
        except TimeoutError:
            return f"providers.{name}: no answer from {provider.host} within {timeout:g} s"
        except Exception as e:  # what the relay's own leg raises: connect, dns, tls
            return f"providers.{name}: unreachable ({e})"
        if status in (401, 403):
            return f"providers.{name}: {provider.host} refused the key (HTTP {status})"
        if status >= 400:
            return f"providers.{name}: reachable; {url} answered HTTP {status} (no model list to check routes against)"
        listed = _model_ids(body)
        routed = sorted({r.model for r in _routes(config) if r.provider == name})
        missing = [m for m in routed if listed and m not in listed]
        line = f"providers.{name}: reachable, key accepted, {len(listed)} models"
        if missing:
            line += f"; routed models it does not list: {', '.join(missing)}"
        return line

    lines = await asyncio.gather(*(one(name, p) for name, p in config.providers.items()))
    return [line for line in lines if line]


def _routes(config: Config) -> list[Any]:
    routes = list(config.models.routes.values())
    if not isinstance(config.models.default, str):
        routes.append(config.models.default)
    return routes


def _models_request(provider: Any) -> tuple[str, dict[str, str]]:
    if provider.type == "anthropic":
        headers = {"anthropic-version": "2023-06-01"}
        if provider.key:
            headers["authorization" if provider.auth == "bearer" else "x-api-key"] = ("Bearer " if provider.auth == "bearer" else "") + provider.key
        return provider.base_url + "/v1/models", headers
    headers = {"authorization": "Bearer " + provider.key} if provider.key else {}
    return provider.base_url + "/models", {**headers, **provider.headers}


def _model_ids(body: bytes) -> set[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return set()
    entries = data.get("data") if isinstance(data, dict) else data
    return {e.get("id") for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)} if isinstance(entries, list) else set()


def _local(url: str) -> bool:
    return any(host in url for host in ("://127.0.0.1", "://localhost", "://[::1]", "://0.0.0.0"))
