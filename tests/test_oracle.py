"""Checks for tests/oracle.py against every captured OpenAI Chat Completions fixture."""
import json
from pathlib import Path

import pytest

from tests.oracle import Said, read_chat, sse_events

FIXTURES = Path(__file__).parent / "fixtures" / "openai-chat"
FILES = sorted(FIXTURES.glob("*.json"))


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def test_fixtures_exist():
    assert len(FILES) >= 60


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fixture_sanity(path):
    fx = json.loads(path.read_text(encoding="utf-8"))
    assert fx["protocol"] == "openai-chat"
    assert set(fx["origin"]) == {"corpus_path", "repo", "path_in_repo", "commit", "license", "description"}
    assert fx["origin"]["license"] in {"MIT", "Apache-2.0"}

    said = read_chat(fx)
    assert isinstance(said, Said)

    if fx["status"] >= 400:
        assert said.error and said.error["message"]
        assert not (said.text or said.tool_calls or said.finish_reason)
        return

    assert said.error is None
    assert said.done is fx["stream"]  # every captured stream ends with data: [DONE]
    assert said.finish_reason in {"stop", "length", "tool_calls"}
    assert isinstance(said.usage, dict)
    assert said.usage["prompt_tokens"] > 0 and said.usage["completion_tokens"] > 0

    if said.finish_reason == "tool_calls":
        assert said.tool_calls
        for call_id, name, args, parsed in said.tool_calls:
            assert call_id is not None and name
            assert isinstance(parsed, dict), args
        ids = [c[0] for c in said.tool_calls if c[0]]
        assert len(ids) == len(set(ids))
    else:
        assert not said.tool_calls
        assert said.text or said.refusal


@pytest.mark.parametrize("path", [p for p in FILES if '"stream": true' in p.read_text()], ids=lambda p: p.stem)
def test_no_delta_has_both_reasoning_fields(path):
    # The oracle concatenates reasoning_content and reasoning; that is only
    # right while no provider sends both (which would likely be duplicates).
    for _, data in sse_events(json.loads(path.read_text(encoding="utf-8"))["body"]):
        if data.strip() == "[DONE]":
            continue
        for choice in json.loads(data).get("choices") or []:
            delta = choice.get("delta") or {}
            assert not (delta.get("reasoning_content") and delta.get("reasoning"))


# --- exact values, checked by reading the captures by hand ---------------------------

def test_short_text_exact():
    said = read_chat(load("openai-short-text-logprobs-stream"))
    assert said.text == "Foo!"
    assert said.reasoning == "" and said.refusal == "" and said.tool_calls == []
    assert said.finish_reason == "stop" and said.done
    assert said.usage == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                          "completion_tokens_details": {"reasoning_tokens": 0}}


def test_finish_length():
    said = read_chat(load("openai-finish-length-stream"))
    assert said.finish_reason == "length"
    assert said.text == '{"'
    assert said.usage["completion_tokens"] == 1


def test_refusal_exact():
    said = read_chat(load("openai-refusal-stream"))
    assert said.refusal == "I'm sorry, I can't assist with that request."
    assert said.text == ""


def test_kimi_parallel_tools_with_whitespace_text_between_calls():
    said = read_chat(load("kimi-k2.5-parallel-tools-stream"))
    assert said.tool_calls == [
        ("functions.add:0", "add", '{"a": 2, "b": 3}', {"a": 2, "b": 3}),
        ("functions.multiply:1", "multiply", '{"a": 2, "b": 3}', {"a": 2, "b": 3}),
    ]
    # Kimi sends " " content between and after the tool calls.
    assert said.text == " I'll add and multiply 2 and 3 for you at the same time.   "
    assert said.reasoning.startswith("The user wants me to")
    assert said.finish_reason == "tool_calls"
    assert said.usage["completion_tokens_details"]["reasoning_tokens"] == 87


def test_xai_whole_calls_json():
    said = read_chat(load("xai-grok-4-parallel-tools-json"))
    assert [(c[1], c[3]) for c in said.tool_calls] == [("add", {"a": 2, "b": 3}), ("multiply", {"a": 2, "b": 3})]
    assert said.text == "" and not said.done


def test_mistral_tool_call_without_index():
    said = read_chat(load("mistral-whole-tool-call-no-index-stream"))
    assert said.tool_calls == [("gSIMJiOkT", "weather", '{"location": "San Francisco"}', {"location": "San Francisco"})]
    assert said.finish_reason == "tool_calls"
    assert said.usage == {"prompt_tokens": 124, "total_tokens": 146, "completion_tokens": 22}


def test_gemini_empty_id_is_reported_as_said():
    said = read_chat(load("gemini-tool-call-empty-id-no-index-json"))
    assert said.tool_calls == [("", "get_current_time", "{}", {})]


def test_mistral_typed_parts():
    said = read_chat(load("mistral-magistral-thinking-and-text-parts-stream"))
    assert said.reasoning == "The user is asking for 2+2. This is basic arithmetic. 2+2=4."
    assert said.text == "2 + 2 = 4"


def test_groq_think_tags_stay_in_text_and_x_groq_usage():
    said = read_chat(load("groq-deepseek-r1-think-tags-in-content-stream"))
    assert said.text.startswith("<think>\nOkay") and "</think>" in said.text
    assert said.reasoning == ""
    assert said.usage["prompt_tokens"] == 21 and said.usage["completion_tokens"] == 988


def test_openai_404():
    said = read_chat(load("openai-404-model-not-found"))
    assert said.error["code"] == "model_not_found"


# --- framing the corpus does not contain: synthetic, to pin the oracle's rules -------

def test_crlf_comments_event_lines_and_stream_error():
    body = (
        ": keep-alive\r\n\r\n"
        'event: message\r\ndata: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\r\n\r\n'
        'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\\"x\\""}}]}}]}\r\n\r\n'
        'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":":1}"}}]}}]}\r\n\r\n'
        'data: {"error":{"message":"overloaded","type":"server_error"}}\r\n\r\n'
    )
    said = read_chat({"stream": True, "body": body})
    assert said.text == "Hi"
    assert said.tool_calls == [("a", "f", '{"x":1}', {"x": 1})]
    assert said.error == {"message": "overloaded", "type": "server_error"}
    assert not said.done and said.finish_reason is None


def test_event_error_and_invalid_arguments():
    body = (
        'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{"}}]}}]}\n\n'
        'event: error\ndata: {"message":"boom"}\n\n'
    )
    said = read_chat({"stream": True, "body": body})
    assert said.tool_calls == [("a", "f", "{", None)]
    assert said.error == {"message": "boom"}
