"""Usage accounting: one JSON line per request, in a file per day.

    <data dir>/usage/YYYY-MM-DD.jsonl    every request the relay routed to a provider
    <data dir>/errors/YYYY-MM-DD.jsonl   the ones that ended in an error, again

A record holds when, which models and provider, the tokens, time to first token (the first
read of the provider's answer; `null` when the provider answered with an error, or not at all),
total time, status and error type; never a prompt, an answer or a key. The status is what the
client was told: an error inside a stream keeps its 200 with the error's type, a client that
went away is 499 `client_disconnected`, and an answer replayed from a recording is marked
`replayed` and left out of the totals.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

# Record field → price key (US dollars per million tokens). Reasoning tokens are part of the
# output tokens, so they are not priced again.
PRICED = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_input_tokens": "cache_read",
    "cache_creation_input_tokens": "cache_creation",
}
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "reasoning_tokens")


def record(exchange: Any, status: int, error_type: str | None = None, *, replayed: bool = False) -> dict[str, Any]:
    ended = time.monotonic()
    usage = exchange.usage or {}
    # `first_byte`: when the provider's answer began, unless it was an error (none: no
    # first token to time); a replayed answer came whole.
    first = exchange.first_byte or (ended if replayed else None)
    out: dict[str, Any] = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "client_model": exchange.client_model,
        "provider": exchange.route.provider,
        "model": exchange.route.model,
        "stream": exchange.client_stream,
    }
    for name in TOKEN_FIELDS:
        value = usage.get(name) if name != "reasoning_tokens" else getattr(exchange, "reasoning_tokens", 0)
        out[name] = value if isinstance(value, int) else 0
    out |= {
        "ttft_ms": round((first - exchange.started) * 1000, 1) if first is not None else None,
        "total_ms": round((ended - exchange.started) * 1000, 1),
        "status": status,
        "error_type": error_type,
    }
    rule = getattr(exchange, "rule", None)
    if rule:  # the scenario rule that chose the route
        out["rule"] = rule
    failures = getattr(exchange, "failures", None)
    if failures:  # the providers tried before the one that answered
        out["failed"] = list(failures)
    limits = getattr(exchange, "limits", None)
    if limits:  # a subscription's usage windows (the Codex backend's x-codex-* headers)
        out["limits"] = limits
    if replayed:  # answered from a recording (--server-replay): nothing was spent
        out["replayed"] = True
    return out


def limits_summary(limits: dict[str, str]) -> str:
    """`plus 5h 12% · 7d 40%` from the Codex backend's usage headers."""
    parts = [limits.get("x-codex-plan-type", "")]
    for window in ("primary", "secondary"):
        used = limits.get(f"x-codex-{window}-used-percent")
        minutes = limits.get(f"x-codex-{window}-window-minutes")
        if used is None:
            continue
        span = ""
        if minutes and minutes.isdigit():
            m = int(minutes)
            span = f"{m // 1440}d " if m % 1440 == 0 else f"{m // 60}h " if m % 60 == 0 else f"{m}min "
        try:
            parts.append(f"{span}{float(used):g}%")
        except ValueError:
            continue  # not a number: nothing to show
    return " ".join(part for part in parts if part)


def summary(entry: dict[str, Any]) -> str:
    """`claude-x → provider:model · 120 in / 30 out · ttft 210 ms · 1.4 s · 200` (no ttft for
    an error answer)"""
    tokens = f"{entry['input_tokens'] + entry['cache_read_input_tokens']} in / {entry['output_tokens']} out"
    status = f"{entry['status']} {entry['error_type']}" if entry["error_type"] else str(entry["status"])
    route = f"{entry['client_model']} → {entry['provider']}:{entry['model']}"
    if entry.get("rule"):
        route += f" ({entry['rule']})"
    replayed = " · replayed" if entry.get("replayed") else ""
    limits = f" · {limits_summary(entry['limits'])}" if entry.get("limits") else ""
    if entry.get("failed"):
        limits += " · after " + "; ".join(entry["failed"])
    total = entry["total_ms"]
    took = f"{total / 1000:.1f} s" if total >= 1000 else f"{total:.0f} ms"
    return f"{route} · {tokens}{ttft(entry)} · {took} · {status}{limits}{replayed}"


def ttft(entry: dict[str, Any]) -> str:
    """` · ttft 210 ms`, or nothing for an answer that had no first token."""
    return "" if entry.get("ttft_ms") is None else f" · ttft {entry['ttft_ms']:.0f} ms"


def failed(entry: dict[str, Any]) -> bool:
    """An error status, or an error that ended a stream begun with 200."""
    return entry.get("status", 200) >= 400 or bool(entry.get("error_type"))


class UsageLog:
    """Appends records; the day's files stay open (one write per record, no open per record)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self._files: dict[tuple[str, str], Any] = {}

    def write(self, entry: dict[str, Any]) -> None:
        day = entry["time"][:10]
        line = orjson.dumps(entry) + b"\n"
        kinds = ("usage", "errors") if failed(entry) else ("usage",)
        for kind in kinds:
            f = self._files.get((kind, day))
            if f is None:
                if any(open_day != day for _, open_day in self._files):
                    self.close()  # a new day: the old day's files are done
                path = self.folder / kind / f"{day}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                f = self._files[(kind, day)] = path.open("ab", buffering=0)
            f.write(line)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def read(folder: str | Path, kind: str = "usage") -> list[dict[str, Any]]:
    entries = []
    for path in sorted((Path(folder).expanduser() / kind).glob("*.jsonl")):
        entries += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return entries


def totals(entries: Iterable[dict[str, Any]], key: str, prices: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Sums per value of `key` ("day", "model", "provider"); cost where the upstream model has
    a price (US dollars per million tokens of each kind)."""
    out: dict[str, dict[str, float]] = {}
    for entry in entries:
        if entry.get("replayed"):
            continue  # answered from a recording: no tokens were spent
        name = entry["time"][:10] if key == "day" else str(entry.get(key))
        row = out.setdefault(name, {"requests": 0, "errors": 0, **{f: 0 for f in TOKEN_FIELDS}, "cost": 0.0})
        row["requests"] += 1
        row["errors"] += 1 if failed(entry) else 0
        for field in TOKEN_FIELDS:
            row[field] += entry.get(field) or 0
        price = prices.get(entry.get("model", ""))
        if price:
            row["cost"] += sum((entry.get(field) or 0) * price.get(kind, 0.0) for field, kind in PRICED.items()) / 1e6
    return out


class Spending:
    """What each (provider, model) has spent today (UTC), for route budgets: read once from
    today's records, then kept up as requests are recorded."""

    def __init__(self, folder: str | Path | None, prices: dict[str, Any]) -> None:
        self.folder, self.prices = folder, prices
        self.day = ""
        self.spent: dict[tuple[str, str], list[float]] = {}  # → [tokens, usd]

    def _today(self) -> None:
        day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        if day == self.day:
            return
        self.day, self.spent = day, {}
        path = Path(self.folder).expanduser() / "usage" / f"{day}.jsonl" if self.folder else None
        if path is not None and path.exists():
            for line in path.read_bytes().splitlines():
                if line.strip():
                    self.add(orjson.loads(line))

    def add(self, entry: dict[str, Any]) -> None:
        if entry.get("replayed"):
            return
        if self.day:
            self._today()
        tokens = sum(entry.get(f) or 0 for f in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
        price = self.prices.get(entry.get("model", ""))
        usd = sum((entry.get(f) or 0) * getattr(price, kind, 0.0) for f, kind in PRICED.items()) / 1e6 if price else 0.0
        row = self.spent.setdefault((entry.get("provider"), entry.get("model")), [0, 0.0])
        row[0] += tokens
        row[1] += usd

    def over(self, provider: str, model: str, budget: Any) -> str | None:
        """What limit the route has reached today, in words, or None."""
        self._today()
        tokens, usd = self.spent.get((provider, model), (0, 0.0))
        if budget.tokens_per_day is not None and tokens >= budget.tokens_per_day:
            return f"{tokens:,.0f} of its {budget.tokens_per_day:,} tokens a day"
        if budget.usd_per_day is not None and usd >= budget.usd_per_day:
            return f"${usd:.2f} of its ${budget.usd_per_day:.2f} a day"
        return None


def seconds_to_midnight() -> int:
    now = datetime.datetime.now(datetime.timezone.utc)
    tomorrow = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(int((tomorrow - now).total_seconds()), 1)
