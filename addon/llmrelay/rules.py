"""Scenario rules: the right route for each request, chosen by what the request is, before
the model name is looked at.

```yaml
rules:
  - when: {kind: background}          # Claude Code's title and summary requests
    route: cheap                      # a key of models.routes, `passthrough`, or {provider, model}
  - when: {thinking: true}
    route: reasoner
  - when: {tokens_over: 60000}        # the local count_tokens estimate
    route: long-context
  - when: {server_tool: web_search}   # keeps Anthropic's server tools usable in a mixed setup
    route: passthrough
```

Rules:
- tried in order; the first whose every condition holds decides; none: the model routes;
- `model`: a glob on the client's model name (`claude-3-5-haiku*`); `family`: opus, sonnet
  or haiku; `thinking`: whether the request asks for thinking; `tokens_over`: the estimate of
  the input tokens; `server_tool`: a server tool whose type begins so (`web_search`);
  `images`: whether any message holds an image; `header`: request headers that must have
  these values; `kind`: `background` (no tools and a small output limit, or a title/summary
  prompt: Claude Code's side requests) or `subagent` (Claude Code's task agents);
- what cannot be told (an unparsed request) never matches;
- the estimate is counted once, only when a rule asks for it, and not at all for a body
  too small to be over the limit.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import msgspec

from . import tokens
from .protocols import anthropic as a

BACKGROUND_MAX_TOKENS = 1024
_SUBAGENT = "You are an agent for Claude Code"
_SIDE_PROMPTS = ("a concise", "title", "summar")
_RECENT_SERVER_TOOLS: list[tuple[msgspec.Raw, str, bool]] = []  # (tools, prefix asked, found), newest first


class Facts:
    """What the rules look at, each found once, when first asked."""

    def __init__(self, req: a.Request | None, headers: dict[str, str], body: bytes | None = None) -> None:
        self.req, self.headers, self.body = req, headers, body
        self._estimate: int | None = None

    @property
    def estimate(self) -> int:
        if self._estimate is None:
            try:  # the local count_tokens estimate, over the body as count_tokens reads it
                self._estimate = tokens.count_request(a.parse_count_tokens(self.body)) if self.body else 0
            except a.InvalidRequest:
                self._estimate = 0
        return self._estimate

    def over(self, limit: int) -> bool:
        # Counting takes milliseconds; a body under half the limit in bytes cannot be over
        # it (a token is a byte at least, the framing a few tokens a message).
        if self.body is not None and len(self.body) < limit // 2:
            return False
        return self.estimate > limit

    def thinking(self) -> bool:
        thinking = self.req.thinking if self.req is not None else None
        return thinking is not None and thinking.type != "disabled"

    def raw_tools(self) -> bytes:
        raw = bytes(self.req.tools) if self.req is not None and self.req.tools else b""
        return b"" if raw.strip() in (b"null", b"[]") else raw

    def server_tool(self, prefix: str) -> bool:
        tools = self.req.tools if self.req is not None else None
        if not tools:
            return False
        for seen, asked, found in _RECENT_SERVER_TOOLS:  # Claude Code sends the same ~60 KB every turn
            if asked == prefix and seen == tools:
                return found
        raw = bytes(tools)
        found = False
        if prefix.encode() in raw:  # (a search through 60 KB costs as much as comparing it 15 times)
            try:
                found = any((t.type or "").startswith(prefix) for t in a.parse_tools(raw))
            except a.InvalidRequest:
                pass
        _RECENT_SERVER_TOOLS.insert(0, (msgspec.Raw(raw), prefix, found))  # (a copy: the request's body is let go)
        del _RECENT_SERVER_TOOLS[8:]
        return found

    def images(self) -> bool:
        for message in self.req.messages if self.req is not None else ():
            content = message.content
            if isinstance(content, list):
                for block in content:
                    if isinstance(block, a.ImageBlock):
                        return True
                    if isinstance(block, a.ToolResultBlock) and isinstance(block.content, list):
                        if any(isinstance(part, a.ImageBlock) for part in block.content):
                            return True
        return False

    def kind(self) -> str | None:
        if self.req is None:
            return None
        system = a.system_text(self.req.system) if not isinstance(self.req.system, list) else " ".join(b.text for b in self.req.system)
        if _SUBAGENT in system:
            return "subagent"
        small = self.req.max_tokens is not None and self.req.max_tokens <= BACKGROUND_MAX_TOKENS
        if not self.raw_tools() and (small or any(word in system.lower() for word in _SIDE_PROMPTS)):
            return "background"
        return None


def matches(when: Any, model: str, facts: Facts) -> bool:
    if when.model is not None and not fnmatch.fnmatchcase(model, when.model):
        return False
    if when.family is not None and when.family not in model:
        return False
    if when.header and any(facts.headers.get(k.lower()) != v for k, v in when.header.items()):
        return False
    if facts.req is None and (when.thinking is not None or when.tokens_over is not None or when.server_tool
                              or when.images is not None or when.kind is not None):
        return False
    if when.thinking is not None and facts.thinking() != when.thinking:
        return False
    if when.images is not None and facts.images() != when.images:
        return False
    if when.server_tool is not None and not facts.server_tool(when.server_tool):
        return False
    if when.kind is not None and facts.kind() != when.kind:
        return False
    if when.tokens_over is not None and not facts.over(when.tokens_over):
        return False
    return True


def pick(rules: list[Any], model: str, req: a.Request | None, headers: dict[str, str], body: bytes | None = None) -> tuple[int, Any] | None:
    """The first rule that matches, as (its position, its route), or None."""
    facts = Facts(req, headers, body)
    for i, rule in enumerate(rules):
        if matches(rule.when, model, facts):
            return i, rule.route
    return None
