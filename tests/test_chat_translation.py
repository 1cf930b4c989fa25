"""Real provider answers (tests/fixtures/openai-chat) through the Chat → Anthropic translator.

Each capture is translated whole and split at every awkward boundary, every split must give
the same events, the events must follow the Anthropic stream grammar, and what the official
SDK rebuilds from them must be what the provider said (read independently by tests/oracle.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anthropic
import pytest

from anthropic_view import check_events, sdk_message
from llmrelay.config import OpenAIProvider as Provider, Route
from llmrelay.providers.chat import Exchange
from llmrelay.translate.chat_response import ChatTranslator
from oracle import read_chat

FIXTURES = sorted(Path(__file__).parent.joinpath("fixtures", "openai-chat").glob("*.json"))
ANSWERS = [f for f in FIXTURES if json.loads(f.read_text())["status"] == 200]
STREAMS = [f for f in ANSWERS if json.loads(f.read_text())["stream"]]
ERRORS = [f for f in FIXTURES if f not in ANSWERS]

# What each finish_reason must become, written out here rather than imported.
EXPECTED_STOP = {None: "end_turn", "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def translate(pieces: list[bytes]) -> list[dict[str, Any]]:
    translator = ChatTranslator(model="claude-test")
    events = [event for piece in pieces for event in translator.feed(piece)]
    return events + translator.finish()


def same_ids(events: list[dict[str, Any]]) -> str:
    """The events as text with generated ids numbered in order of appearance."""
    text = json.dumps(events)
    seen: dict[str, str] = {}
    return re.sub(r"(msg|toolu)_[A-Za-z0-9]{24}", lambda m: seen.setdefault(m.group(0), f"<id{len(seen)}>"), text)


def splits(body: bytes) -> dict[str, list[bytes]]:
    lines = body.splitlines(keepends=True)
    crlf = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    cr = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
    # Cut inside every multi-byte UTF-8 character: after each lead byte.
    cuts = [i + 1 for i, byte in enumerate(body) if byte >= 0xC0]
    inside = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
    return {
        "bytes": [body[i : i + 1] for i in range(len(body))],
        "lines": lines,
        "crlf-bytes": [crlf[i : i + 1] for i in range(len(crlf))],
        "cr-pairs": [cr[i : i + 2] for i in range(0, len(cr), 2)],
        "inside-characters": inside,
    }


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.stem)
def test_every_split_gives_the_same_events(path: Path) -> None:
    body = load(path)["body"].encode()
    whole = translate([body])
    check_events(whole)
    expected = same_ids(whole)
    for name, pieces in splits(body).items():
        assert same_ids(translate(pieces)) == expected, f"split by {name}"


def expected_text_and_thinking(said: Any) -> tuple[str, str]:
    text, thinking = said.text + said.refusal, said.reasoning
    start = text.lstrip()
    if start.startswith("<think>") and "</think>" in start:  # reasoning inside the text (Groq raw)
        inner, _, rest = start[len("<think>") :].partition("</think>")
        return rest.lstrip("\n"), thinking + inner
    return text, thinking


@pytest.mark.parametrize("stream", [True, False], ids=["stream-client", "json-client"])
@pytest.mark.parametrize("path", ANSWERS, ids=lambda p: p.stem)
def test_the_sdk_reads_what_the_provider_said(path: Path, stream: bool) -> None:
    fixture = load(path)
    said = read_chat(fixture)
    exchange = Exchange(
        client_model="claude-test",
        route=Route(provider="p", model="m"),
        provider=Provider(type="openai", base_url="http://p.test/v1"),
        client_stream=stream,
        tool_names={},
        input_estimate=5,
        secrets=[],
    )
    reply = exchange.reply(200, {"content-type": fixture["content_type"]}, fixture["body"].encode())
    message = sdk_message(reply.status, reply.body, reply.headers["content-type"], stream=stream)

    text, thinking = expected_text_and_thinking(said)
    assert "".join(b.text for b in message.content if b.type == "text") == text
    assert "".join(b.thinking for b in message.content if b.type == "thinking") == thinking

    calls = [b for b in message.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [(name, parsed if parsed is not None else {}) for _, name, _, parsed in said.tool_calls]
    for call, (upstream_id, *_) in zip(calls, said.tool_calls):
        if upstream_id and re.fullmatch(r"[A-Za-z0-9_-]+", upstream_id):
            assert call.id == upstream_id
        else:
            assert re.fullmatch(r"toolu_[A-Za-z0-9]{24}", call.id)
    assert len({c.id for c in calls}) == len(calls)

    expected_stop = "tool_use" if said.tool_calls and said.finish_reason != "length" else EXPECTED_STOP[said.finish_reason]
    assert message.stop_reason == expected_stop

    if said.usage:
        cached = (said.usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        assert message.usage.output_tokens == said.usage["completion_tokens"]
        assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == said.usage["prompt_tokens"]
        assert (message.usage.cache_read_input_tokens or 0) == cached
    assert message.model == "claude-test"
    assert re.fullmatch(r"msg_[A-Za-z0-9]{24}", message.id)


ERROR_CLASSES = {400: anthropic.BadRequestError, 401: anthropic.AuthenticationError, 404: anthropic.NotFoundError}


@pytest.mark.parametrize("path", ERRORS, ids=lambda p: p.stem)
def test_provider_errors_reach_the_sdk_as_anthropic_errors(path: Path) -> None:
    fixture = load(path)
    said = read_chat(fixture)
    exchange = Exchange("claude-test", Route(provider="p", model="m"), Provider(type="openai", base_url="https://api.openai.com/v1"), False, {}, 5, [])
    reply = exchange.reply(fixture["status"], {"content-type": fixture["content_type"]}, fixture["body"].encode())
    body = json.loads(reply.body)
    assert body["type"] == "error"
    with pytest.raises(ERROR_CLASSES[fixture["status"]]) as raised:
        sdk_message(reply.status, reply.body, reply.headers["content-type"], stream=False)
    error = raised.value.body["error"]
    assert error["message"] == "api.openai.com: " + said.error["message"]
    assert error["type"] == {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}[fixture["status"]]
