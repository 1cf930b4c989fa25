"""Checks for tests/anthropic_oracle.py against every captured Anthropic Messages fixture.

The official SDK is the second opinion: each fixture body is served to
`anthropic.Anthropic` through an httpx.MockTransport, and what the SDK makes of
it (final message of `messages.stream`, result of `messages.create`, or the
body of the APIStatusError it raises) must equal the oracle's answer.
"""
import hashlib
import json
from pathlib import Path

import anthropic
import pytest

from sdk_http import anthropic_httpx as httpx
from tests.anthropic_oracle import message_from_events, read_message, sse_events

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic" / "responses"
FILES = sorted(FIXTURES.glob("*.json"))


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def drop_none(value):
    """What pydantic's model_dump(exclude_none=True) does, for plain data."""
    if isinstance(value, dict):
        return {k: drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_none(v) for v in value]
    return value


def sdk_reading(fx: dict) -> dict:
    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(fx["status"], headers={"content-type": fx["content_type"]}, content=fx["body"].encode())

    client = anthropic.Anthropic(
        api_key="test", max_retries=0, http_client=httpx.Client(transport=httpx.MockTransport(serve))
    )
    args = dict(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    try:
        if fx["stream"]:
            with client.messages.stream(**args) as stream:
                return stream.get_final_message().model_dump(exclude_none=True)
        return client.messages.create(**args).model_dump(exclude_none=True)
    except anthropic.APIStatusError as exc:
        assert exc.status_code == fx["status"]
        return exc.body


def test_fixtures_exist():
    assert len(FILES) >= 25


def test_no_duplicate_bodies():
    digests = [hashlib.sha256(load(p.stem)["body"].encode()).hexdigest() for p in FILES]
    assert len(set(digests)) == len(digests)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fixture_against_sdk(path):
    fx = json.loads(path.read_text(encoding="utf-8"))
    assert fx["protocol"] == "anthropic"
    assert set(fx["origin"]) == {"corpus_path", "repo", "path_in_repo", "commit", "license", "description"}
    assert fx["origin"]["license"] in {"MIT", "Apache-2.0"}
    if fx["status"] >= 400:
        assert path.stem.startswith(str(fx["status"]))
    else:
        assert path.stem.endswith("-stream" if fx["stream"] else "-json")

    msg = read_message(fx)

    if fx["status"] >= 400:
        assert msg["type"] == "error"
        assert msg["error"]["type"].endswith("_error") and msg["error"]["message"]
    else:
        assert msg["type"] == "message" and msg["role"] == "assistant"
        assert msg["stop_reason"] in {"end_turn", "tool_use", "pause_turn"}
        assert msg["usage"]["input_tokens"] > 0 and msg["usage"]["output_tokens"] > 0
        for block in msg["content"]:
            if block["type"] in ("tool_use", "server_tool_use"):
                assert isinstance(block["input"], dict)
                assert block["input"] or path.stem == "tool-use-empty-input-stream"
        if msg["stop_reason"] == "tool_use":
            assert msg["content"][-1]["type"] == "tool_use"

    sdk = sdk_reading(fx)
    ours = drop_none(msg)
    if fx["status"] < 400:
        assert sdk["content"] == ours["content"]
        assert sdk["stop_reason"] == ours["stop_reason"]
        assert sdk["usage"] == ours["usage"]
    assert sdk == ours


def test_thinking_signature_stream_exact():
    msg = read_message(load("thinking-signature-stream"))
    assert msg == {
        "model": "claude-haiku-4-5-20251001",
        "id": "msg_01Eg56TYRnKCEgWtZu2yjR1t",
        "type": "message",
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": "The user wants two names for a pet pelican, and they want me to be brief. "
                "I'll suggest two names that would suit a pelican well.\n\nSome good options:\n"
                "- Pelé (play on pelican)\n- Pouch (referencing their bill pouch)\n- Captain Beak\n"
                "- Squirt\n- Scoop\n- Wing\n\nLet me give two brief, catchy names:",
                "signature": "EuYDCmMIDBgCKkC05Zda4P+Cdk/LQKE+Aol4ZY3EY4wLDrf8XcApz2PiqrxiRjS7uY1kGtZ63vVlaVmtuIpdsHbk"
                "dfGHb9AsBYw+MhljbGF1ZGUtaGFpa3UtNC01LTIwMjUxMDAxOAASDAXGiw23anViCe75HBoMATySwgVJ0A405/0FIjDbVX0l"
                "An7rEq/ejcuOZWDihLSbS9KGihD2QsWmXzp2Ly5ZD5vtKOcKvhEDQ0PCeVkqsALmnx7FhoJ7TQQyomwwFY+zA/Sft9n7u3lN"
                "E/RzbZMF4jmvo9i1vtNLETK18iSdCAhSy+NJLFRK/vcw6sVaDNrEMGgIadv5iZ0Jmx+iHyR8sXbasYDMbN07/ype7JGpKxHC"
                "dQOrNA7plS39Yy5l7hqJz4ueYoCpMxc+IkNY+TCyMpKwGxYqKSUdElyLr0Ko3vXtdLJBTJQuMtU+cz+UPHkpTbGRPntg/hBv"
                "NztCjlqqeM6PKoE8rsDJMx0+q1eOrFPC9SYgCZqSGHlSHoOexnfkrN2aTlZjcBcFblXq76bKF1YHINp3uL+jByhp91XFSkhF"
                "+b43BC9PDtRUYKw3wT+IZlEI6V3GppKBDSa8L0Sgm8m1Bb2PYvi3oIv+LDpUImrMckjemNZmBeGcEZQ4FjZiGAE=",
            },
            {
                "type": "text",
                "text": '1. **Pouch** - references their iconic bill pouch\n2. **Pelé** - playful take on "pelican"',
            },
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "stop_details": None,
        "usage": {
            "input_tokens": 46,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 133,
            "service_tier": "standard",
            "inference_geo": "not_available",
        },
    }


def test_parallel_tool_use_stream_exact():
    msg = read_message(load("parallel-tool-use-stream"))
    assert msg["content"] == [
        {"type": "text", "text": "I'll add and multiply the numbers 2 and 3 for you."},
        {"type": "tool_use", "id": "toolu_01UYxUYC2zRPY8wiutnF48eP", "name": "add",
         "input": {"a": 2, "b": 3}, "caller": {"type": "direct"}},
        {"type": "tool_use", "id": "toolu_01VaRx1jpWCvPhi7L4kywAcd", "name": "multiply",
         "input": {"a": 2, "b": 3}, "caller": {"type": "direct"}},
    ]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"]["input_tokens"] == 502 and msg["usage"]["output_tokens"] == 137


def test_compatible_provider_usage_from_message_delta():
    msg = read_message(load("compatible-provider-input-tokens-in-message-delta-stream"))
    assert msg == {
        "content": [{"text": "pong", "type": "text"}],
        "id": "msg_3196a1cc08de4d76b85b8f5777c0d42b",
        "model": "claude-opus-4-5-20251101",
        "role": "assistant",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "type": "message",
        "usage": {"input_tokens": 61, "output_tokens": 2},  # message_start said 43
    }


def test_web_search_pause_turn_stream():
    msg = read_message(load("web-search-pause-turn-stream"))
    kinds = [b["type"] for b in msg["content"]]
    assert kinds[:4] == ["thinking", "text", "server_tool_use", "web_search_tool_result"]
    assert kinds.count("server_tool_use") == 11 and kinds.count("web_search_tool_result") == 10
    assert kinds[-1] == "server_tool_use"  # its result opens the continuation
    assert msg["content"][2]["input"] == {"query": "San Francisco weather today"}
    assert msg["stop_reason"] == "pause_turn"
    assert msg["usage"]["output_tokens_details"] == {"thinking_tokens": 261}
    assert msg["usage"]["server_tool_use"] == {"web_search_requests": 10, "web_fetch_requests": 0}
    follow = read_message(load("web-search-after-pause-turn-citations-stream"))
    assert follow["content"][0]["type"] == "web_search_tool_result"
    assert follow["content"][0]["tool_use_id"] == msg["content"][-1]["id"]


def test_web_search_stream_citations():
    msg = read_message(load("web-search-citations-stream"))
    cited = [b for b in msg["content"] if b.get("citations")]
    assert sum(len(b["citations"]) for b in cited) == 9
    assert {c["type"] for b in cited for c in b["citations"]} == {"web_search_result_location"}
    assert msg["usage"]["server_tool_use"] == {"web_search_requests": 2}
    assert msg["usage"]["input_tokens"] == 31772  # message_delta overrides message_start's 2050


def test_redacted_thinking_json():
    msg = read_message(load("redacted-thinking-json"))
    assert [b["type"] for b in msg["content"]] == ["redacted_thinking", "text"]
    assert msg["content"][0]["data"].startswith("EvgFCkYIBxgCKkBm")


def test_error_bodies():
    assert read_message(load("404-model-not-found")) == {
        "error": {"message": "model: claude-sonet-4-5", "type": "not_found_error"},
        "request_id": "req_011CdufXo8Y2LVfY2veyuQWG",
        "type": "error",
    }
    assert read_message(load("429-rate-limit"))["error"]["type"] == "rate_limit_error"


# SSE framing the captures do not show, derived from a real body.

def test_crlf_cr_and_padding_give_the_same_message():
    fx = load("parallel-tool-use-stream")
    want = read_message(fx)
    for variant in (
        fx["body"].replace("\n", "\r\n"),
        fx["body"].replace("\n", "\r"),
        fx["body"].replace("data: ", "data:").rstrip("\n"),
        fx["body"].replace("data: ", "data:    ").replace("\n", "\r\n"),
        ": comment\n\n" + fx["body"].replace("event: ", "id: 1\nevent: "),
    ):
        assert read_message({**fx, "body": variant}) == want


def test_multiline_data_is_joined():
    body = 'data: {"type":"message_start","message":\ndata: {"id":"m","content":[],"usage":{}}}\n\n'
    assert sse_events(body) == [{"type": "message_start", "message": {"id": "m", "content": [], "usage": {}}}]


def test_error_event_mid_stream():
    events = sse_events(load("minimal-text-ping-stream")["body"])
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert message_from_events(events[:3] + [error] + events[3:]) == error


def test_tool_without_parameters_stream():
    # a tool with an empty input_schema: the only input_json_delta is ""
    msg = read_message(load("tool-use-empty-input-stream"))
    assert msg["content"] == [{"type": "tool_use", "id": "toolu_01CzN6riCPqw4pVSuTd9Dwn7",
                               "name": "pelican_name_generator", "input": {}, "caller": {"type": "direct"}}]
    assert msg["stop_reason"] == "tool_use" and msg["stop_details"] is None


def test_empty_tool_input_becomes_empty_object():
    events = [
        {"type": "message_start", "message": {"id": "m", "content": [], "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "t", "name": "n", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 3, "input_tokens": None}},
    ]
    msg = message_from_events(events)
    assert msg["content"][0]["input"] == {}
    assert msg["usage"] == {"input_tokens": 1, "output_tokens": 3}
    assert msg["stop_reason"] == "tool_use" and msg["stop_sequence"] is None


def test_unknown_delta_type_is_refused():
    events = sse_events(load("minimal-text-ping-stream")["body"])
    bad = {"type": "content_block_delta", "index": 0, "delta": {"type": "mystery_delta"}}
    with pytest.raises(ValueError):
        message_from_events(events[:2] + [bad])
