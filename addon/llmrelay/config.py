"""The relay's configuration: `config.yaml` parsed once into types, and routing by model name.

`${VAR}` (or `${VAR:-fallback}`) in any string reads the environment, so keys stay out of the
file. Every problem is reported as `<file>: <key.path>: <what is wrong>`; values are never
echoed, so a key cannot leak through an error message.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union
from urllib.parse import urlsplit

import yaml

from . import presets
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, TypeAdapter, ValidationError, field_validator, model_validator


class ConfigError(Exception):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Reasoning = Literal["none", "effort", "thinking", "openrouter"]


class Timeouts(_Strict):
    """Seconds the relay waits on a provider: to connect, from the request to the first byte
    of the answer, and between reads after that. A missed one ends the request with a clean
    error in the client's protocol."""

    connect: float = Field(default=10.0, gt=0)
    first_byte: float = Field(default=300.0, gt=0)
    idle: float = Field(default=300.0, gt=0)


class _Provider(_Strict):
    base_url: str
    api_key: SecretStr | None = None
    # A key pool: more keys for the same provider, used in turn and rotated on 429 and 5xx.
    api_keys: list[SecretStr] = []
    # false: ask the provider for one JSON answer; a streaming client still gets a stream.
    supports_streaming: bool = True
    headers: dict[str, str] = {}
    # The provider's output cap: larger requests are clamped (Claude Code asks for 32000+).
    max_output_tokens: int | None = Field(default=None, gt=0)
    timeouts: Timeouts = Timeouts()
    # xml: tools described in the system prompt and calls read back out of the text, for
    # models without function calling (small local models); native: the API's own tools.
    tool_format: Literal["native", "xml"] = "native"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return corrected_url(value)[0]


    @property
    def key(self) -> str | None:
        return self.api_key.get_secret_value() or None if self.api_key else None

    @cached_property
    def pool(self) -> list[str]:
        """Every key of the provider, `api_key` first."""
        keys = [self.key] if self.key else []
        return keys + [k.get_secret_value() for k in self.api_keys if k.get_secret_value()]

    @cached_property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @cached_property
    def target(self) -> tuple[str, str, int, str]:
        """scheme, host, port and path prefix, split once: the addon sets them per request."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, parts.hostname or "", port, parts.path


# An endpoint path written into a base_url (the relay appends its own) → what to cut.
_ENDPOINTS = ("/chat/completions", "/responses", "/v1/messages", "/messages", "/completions")


def corrected_url(value: str) -> tuple[str, str | None]:
    """A base_url without a trailing endpoint path or a doubled `/v1`, and what was changed."""
    url = value.rstrip("/")
    note = None
    for end in _ENDPOINTS:
        if url.endswith(end):
            url, note = url[: -len(end)], f"{value} ends with the endpoint path {end}, which the relay appends itself"
            break
    while "/v1/v1" in url:
        url, note = url.replace("/v1/v1", "/v1"), f"{value} has /v1 twice"
    return url, note


class AnthropicProvider(_Provider):
    """An API that speaks Anthropic Messages itself (Anthropic, Kimi, DeepSeek, GLM, MiniMax,
    OpenRouter, gateways). `base_url` is written as for the Anthropic SDK; `/v1/messages` is
    appended. What such providers reject is cleaned per provider."""

    type: Literal["anthropic"]
    auth: Literal["x-api-key", "bearer"] = "x-api-key"
    drop_fields: list[str] = []  # top-level request fields, e.g. context_management, output_config
    drop_betas: list[str] | Literal["all"] = []  # anthropic-beta values
    strip_cache_ttl: bool = False  # remove `ttl` from every cache_control
    count_tokens: bool = True  # has /v1/messages/count_tokens; else the local estimate answers


class OpenAIProvider(_Provider):
    type: Literal["openai"]
    # Which field carries the output limit; default: `max_completion_tokens` for OpenAI's own
    # API (its reasoning models reject `max_tokens`), `max_tokens` elsewhere (what most
    # compatible servers understand).
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    # How the provider is asked to reason when the client sends `thinking`:
    # effort → `reasoning_effort` (OpenAI, xAI, Groq); thinking → `thinking: {type}` (GLM,
    # Kimi, DeepSeek); openrouter → `reasoning: {effort | max_tokens}`; none → not asked.
    reasoning: Reasoning = "none"
    # Send earlier thinking back as `reasoning_content` on assistant turns. DeepSeek and Kimi
    # require it on turns with tool calls; default: on for their hosts only.
    reasoning_history: bool | None = None

    @cached_property
    def output_field(self) -> str:
        if self.max_tokens_field:
            return self.max_tokens_field
        official = self.host == "api.openai.com" or self.host.endswith(".openai.azure.com")
        return "max_completion_tokens" if official else "max_tokens"

    @cached_property
    def echoes_reasoning(self) -> bool:
        if self.reasoning_history is not None:
            return self.reasoning_history
        return any(name in self.host for name in ("deepseek", "moonshot", "kimi"))


Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]
Summary = Literal["auto", "concise", "detailed", "none"]
Verbosity = Literal["low", "medium", "high"]


class ResponsesProvider(_Provider):
    """OpenAI's Responses API with a key (`base_url` + `/responses`): OpenAI, xAI, OpenRouter,
    LM Studio, Ollama and others that serve it."""

    type: Literal["openai-responses"]
    # Asked of the model when the client asks for no thinking (None: the model's default);
    # a client's `thinking` chooses the effort itself.
    reasoning_effort: Effort | None = None
    reasoning_summary: Summary = "auto"  # summaries become the client's thinking blocks
    verbosity: Verbosity | None = None

    echoes_reasoning: ClassVar[bool] = False  # earlier reasoning goes back as signed reasoning items instead

    @cached_property
    def origin(self) -> str:
        """Whose encrypted reasoning this provider can read back (see `openai_responses`)."""
        from .protocols.openai_responses import origin

        return origin(self.type, self.base_url, getattr(self, "account", "") or "")

    @property
    def codex(self) -> bool:
        return False


class ChatGPTProvider(ResponsesProvider):
    """A ChatGPT Plus/Pro subscription through the Codex backend, signed in with
    `scripts/login --name <account>` (OAuth; the tokens live in the data dir)."""

    type: Literal["chatgpt"]  # type: ignore[assignment]
    base_url: str = "https://chatgpt.com/backend-api/codex"
    account: str | None = None  # which signed-in account; default: the provider's name
    issuer: str = "https://auth.openai.com"

    @field_validator("api_key")
    @classmethod
    def _no_key(cls, value: SecretStr | None) -> None:
        if value is not None and value.get_secret_value():
            raise ValueError("a chatgpt provider signs in with `scripts/login`, not with an api_key")
        return None

    @property
    def codex(self) -> bool:
        return True


class ClaudeCliProvider(_Strict):
    """The Claude Code CLI as a model: each request runs `claude -p` with the conversation on
    stdin (stream-json), on the machine's own Claude Code sign-in."""

    type: Literal["claude-cli"]
    binary: str = "claude"  # a path, or a name on PATH
    env: dict[str, str] = {}  # extra environment for the CLI
    allowed_tools: list[str] = []  # --allowedTools; none by default
    cwd: str | None = None  # working directory; default: a fresh temporary one per request
    max_turns: int | None = Field(default=None, gt=0)
    timeout: float = Field(default=600.0, gt=0)  # seconds; then the whole process group is killed
    permission_mode: Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"] | None = None
    concurrency: int = Field(default=2, gt=0)  # processes at once; more requests wait in a queue
    queue: int = Field(default=16, ge=0)  # requests that may wait; beyond it a 429
    system_prompt: Literal["append", "replace"] = "append"  # how the client's system prompt is passed
    show_tools: bool = False  # Claude Code's own tool use shown to the client as text
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = {}  # (unused: kept so every provider has the same keys)
    supports_streaming: bool = True

    key: ClassVar[None] = None
    max_output_tokens: ClassVar[None] = None

    @property
    def host(self) -> str:
        return "claude-cli"


class Budget(_Strict):
    """A route's daily limit (UTC days), from the usage records and `prices`; reached, its
    requests get a 429 `rate_limit_error` until the day ends."""

    tokens_per_day: int | None = Field(default=None, gt=0)  # input (cached included) and output tokens
    usd_per_day: float | None = Field(default=None, gt=0)  # needs a price for the route's model


class Route(_Strict):
    provider: str
    model: str
    # Per-model overrides of the provider's settings of the same names.
    max_output_tokens: int | None = Field(default=None, gt=0)
    reasoning: Reasoning | None = None
    reasoning_effort: Effort | None = None
    reasoning_summary: Summary | None = None
    verbosity: Verbosity | None = None
    tool_format: Literal["native", "xml"] | None = None
    budget: Budget | None = None
    # Tried in order when this route's provider fails before its answer began (it cannot
    # connect, times out before the first byte, answers 429 or 5xx).
    fallbacks: list[Route] = []


Provider = Annotated[Union[OpenAIProvider, AnthropicProvider, ResponsesProvider, ChatGPTProvider, ClaudeCliProvider],
                     Field(discriminator="type")]


class Models(_Strict):
    # "passthrough": models without a route go to the reverse-mode target unchanged, with the
    # client's own credentials (for example Anthropic itself).
    default: Route | Literal["passthrough"]
    routes: dict[str, Route] = {}
    # true: every request goes to `default`, whatever model the client names.
    force: bool = False


class Price(_Strict):
    """US dollars per million tokens, for `scripts/usage`."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_creation: float = 0.0


class Relay(_Strict):
    """Who may call the relay, and how it keeps a streaming client's connection alive."""

    # Inbound keys: callers must send one, as `x-api-key` or `Authorization: Bearer`.
    # Required before the relay listens beyond loopback.
    keys: list[SecretStr] = []
    keys_file: str | None = None  # more keys, one a line (`#` comments)
    # Browser origins that may call the relay (a request with any other Origin is refused).
    allowed_origins: list[str] = []
    # Host names the relay answers to besides its listening address, localhost and 127.0.0.1
    # (a request for any other Host is refused: DNS rebinding).
    allowed_hosts: list[str] = []
    # Seconds of silence after which a streaming client gets a `ping` event.
    ping_interval: float = Field(default=5.0, gt=0, le=60)
    max_request_mb: float = Field(default=32.0, gt=0)  # larger request bodies get a 413
    # Seconds a provider that failed is skipped while its routes have fallbacks (a 429's
    # retry-after, when longer, up to five minutes).
    cool_down: float = Field(default=30.0, ge=0)

    @cached_property
    def inbound_keys(self) -> frozenset[str]:
        found = {key.get_secret_value() for key in self.keys if key.get_secret_value()}
        if self.keys_file:
            path = Path(self.keys_file).expanduser()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise ConfigError(f"relay.keys_file: cannot read {path}: {e.strerror}") from None
            found |= {line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")}
        return frozenset(found)


class When(_Strict):
    """A scenario rule's conditions (see `rules`): every one given must hold."""

    model: str | None = None  # a glob on the client's model name
    family: Literal["opus", "sonnet", "haiku"] | None = None
    thinking: bool | None = None
    tokens_over: int | None = Field(default=None, ge=0)
    server_tool: str | None = None  # e.g. web_search
    images: bool | None = None
    kind: Literal["background", "subagent"] | None = None
    header: dict[str, str] = {}


class Rule(_Strict):
    when: When
    route: str | Route  # a key of models.routes, `passthrough`, or a route written out


class Config(_Strict):
    providers: dict[str, Provider]
    # For the start-up report: where an unset environment variable gave its fallback (key
    # path → variable name), and what was corrected in the file.
    _unset: dict[str, str] = PrivateAttr(default_factory=dict)
    _notes: list[str] = PrivateAttr(default_factory=list)
    models: Models
    prices: dict[str, Price] = {}  # upstream model name → price
    relay: Relay = Relay()
    rules: list[Rule] = []  # tried before the model routes (`rules.py`)

    @model_validator(mode="after")
    def _known_providers(self) -> Config:
        for name, provider in self.providers.items():
            if isinstance(provider, ChatGPTProvider):
                if provider.account is None:
                    provider.account = name
                if not _ACCOUNT.fullmatch(provider.account):
                    where = f"providers.{name}.account" if provider.account != name else f"providers.{name}"
                    raise ValueError(f"{where}: an account name takes letters, digits, '_', '.' and '-' only "
                                     "(it names the account's token file); set `account:`")
        named = [("models.default", self.models.default)] if isinstance(self.models.default, Route) else []
        named += [(f"models.routes.{key}", route) for key, route in self.models.routes.items()]
        for where, route in named:
            if route.tool_format == "xml" and route.provider in self.providers and self.providers[route.provider].type != "openai":
                raise ValueError(f"{where}.tool_format: xml is for providers of type openai (Chat Completions)")
        for name, provider in self.providers.items():
            if getattr(provider, "tool_format", "native") == "xml" and provider.type != "openai":
                raise ValueError(f"providers.{name}.tool_format: xml is for providers of type openai (Chat Completions)")
        for i, rule in enumerate(self.rules):
            if isinstance(rule.route, Route):
                named.append((f"rules.{i}.route", rule.route))
            elif rule.route != "passthrough" and rule.route not in self.models.routes:
                raise ValueError(f"rules.{i}.route: {rule.route!r} is not a key of models.routes (or passthrough)")
        named += [(f"{where}.fallbacks.{i}", fallback) for where, route in list(named) for i, fallback in enumerate(route.fallbacks)]
        for where, route in named:
            if route.provider not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none"
                raise ValueError(f"{where}.provider: unknown provider {route.provider!r} (known: {known})")
        return self

    def route(self, model: str) -> Route | None:
        """None means pass through.

        Rules, tried in order:
        - `models.force`: always `default`;
        - the exact name;
        - the longest route key that begins the name (`claude-haiku-4-5` takes
          `claude-haiku-4-5-20251001`);
        - a family key, `opus`, `sonnet` or `haiku`, for any Claude model of that family
          (`claude-opus-4-8[1m]`, `claude-sonnet-5`, `claude-3-5-haiku-20241022`): Claude
          Code's model names change with every release, families do not;
        - a provider's own model name that a route sends to (`--model deepseek-chat` when a
          route goes to `deepseek-chat`): that route (not for Claude names, which belong to
          the rules above and to `default`);
        - `provider/model` or `provider,model` naming a configured provider: that model there;
        - `default`.
        """
        models = self.models
        default = models.default if isinstance(models.default, Route) else None
        if models.force:
            return default
        if model in models.routes:
            return models.routes[model]
        best = max((key for key in models.routes if model.startswith(key)), key=len, default=None)
        if best is not None:
            return models.routes[best]
        family = _family(model)
        if family and family in models.routes:
            return models.routes[family]
        named = self._named(model)
        return named if named is not None else default

    def routed(self, model: str, req: Any = None, headers: dict[str, str] | None = None,
               body: bytes | None = None) -> tuple[Route | None, int | None]:
        """The route for a request: a scenario rule's (and which rule), else `route(model)`."""
        if self.rules:
            from .rules import pick

            found = pick(self.rules, model, req, headers or {}, body)
            if found is not None:
                i, target = found
                if target == "passthrough":
                    return None, i
                return (target if isinstance(target, Route) else self.models.routes[target]), i
        return self.route(model), None

    def _named(self, model: str) -> Route | None:
        routes = [*self.models.routes.values(), *([self.models.default] if isinstance(self.models.default, Route) else [])]
        found = None if "claude" in model else next((route for route in routes if route.model == model), None)
        if found is not None:
            return found
        for sep in ("/", ","):
            provider, found_sep, rest = model.partition(sep)
            if found_sep and rest and provider in self.providers:
                return Route(provider=provider, model=rest)
        return None

    @cached_property
    def secrets(self) -> tuple[str, ...]:
        """Every provider key and inbound key, to scrub from anything the relay shows or keeps."""
        provider_keys = [k for p in self.providers.values() for k in getattr(p, "pool", ())]
        header_values = [v for p in self.providers.values() for v in p.headers.values() if len(v) >= 16]
        header_values += [v for p in self.providers.values() for v in getattr(p, "env", {}).values() if len(v) >= 16]
        return tuple(dict.fromkeys([*provider_keys, *header_values, *self.relay.inbound_keys]))


FAMILIES = ("opus", "sonnet", "haiku")


def _family(model: str) -> str | None:
    """The Claude family a model name belongs to, if any."""
    if "claude" not in model:
        return None
    return next((family for family in FAMILIES if family in model), None)


_ACCOUNT = re.compile(r"[A-Za-z0-9_.-]+")
PROVIDER_TYPES = ("openai", "anthropic", "openai-responses", "chatgpt", "claude-cli")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, where: str, unset: dict[str, str] | None = None) -> Any:
    """`${VAR}` replaced from the environment; `unset` collects where an unset variable gave
    its fallback (`${OPENAI_API_KEY:-}`), for the start-up report."""
    if isinstance(node, dict):
        return {key: _interpolate(value, f"{where}.{key}" if where else str(key), unset) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, f"{where}.{i}", unset) for i, value in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def value_of(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None and fallback is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        if value is None and unset is not None:
            unset[where] = name
        return value if value is not None else fallback

    return _ENV.sub(value_of, node)


def parse_config(data: Any, source: str = "config") -> Config:
    unset: dict[str, str] = {}
    try:
        if isinstance(data, dict) and isinstance(data.get("providers"), dict):
            try:
                data = {**data, "providers": presets.apply(data["providers"])}
            except ValueError as e:
                raise ConfigError(str(e)) from None
        data = _interpolate(data, "", unset)
        notes = []
        for name, provider in (data.get("providers") or {}).items() if isinstance(data, dict) else ():
            url = provider.get("base_url") if isinstance(provider, dict) else None
            if isinstance(url, str) and corrected_url(url)[1]:
                notes.append(f"providers.{name}.base_url: {corrected_url(url)[1]}; using {corrected_url(url)[0]}")
        config = Config.model_validate(data)
        config.relay.inbound_keys  # reads the keys file now: a problem there stops start-up
        config._unset, config._notes = unset, notes
        return config
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except ValidationError as e:
        problems = []
        for err in e.errors(include_input=False, include_url=False):
            loc = list(err["loc"])
            if len(loc) > 2 and loc[0] == "providers" and loc[2] in PROVIDER_TYPES:
                del loc[2]  # the union's tag, which pydantic puts in the path
            where = ".".join(str(part) for part in loc)
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}: {where + ': ' if where else ''}{message}")
        raise ConfigError("\n".join(problems)) from None


_PRICES = TypeAdapter(dict[str, Price])


def load_config(path: str | Path) -> Config:
    return parse_config(_read(Path(path)), str(path))


def load_prices(path: str | Path) -> dict[str, Price]:
    """The price table alone (for `scripts/usage`): the providers' keys need not be set."""
    data = _read(Path(path))
    try:
        return _PRICES.validate_python(_interpolate(data.get("prices") or {}, "prices"))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except ValidationError as e:
        first = e.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in ("prices", *first["loc"]))
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        # Only the problem and the position: the parser's excerpt of the line could hold a key.
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', None) or 'parse error'}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with `providers` and `models`")
    return data
