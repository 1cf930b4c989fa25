"""Provider kinds, one module each, behind one small interface:

- `needs_request`: whether `forward` needs the whole Anthropic request parsed (translating
  kinds), or only its bytes, model and stream flag (kinds that speak Anthropic themselves);
- `counts_tokens(provider)`: whether count_tokens goes to the provider (else the relay's
  local estimate answers it);
- `forward(ask) -> Forward`: the provider request, and the exchange that will translate what
  comes back (see `exchange.Answers`).

`KINDS` maps a provider's configured `type` to its module; `relay.handle` holds no
per-provider branch.
"""

from __future__ import annotations

from types import ModuleType

from . import anthropic, chat, claude_cli, responses

KINDS: dict[str, ModuleType] = {
    "openai": chat,
    "anthropic": anthropic,
    "openai-responses": responses,
    "chatgpt": responses,
    "claude-cli": claude_cli,
}
