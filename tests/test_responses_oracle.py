"""Checks for tests/responses_oracle.py against every captured Responses API fixture, with
the values read by eye from each capture."""
import json
import re
from pathlib import Path

import pytest

from tests.responses_oracle import read_responses, response_events

FIXTURES = Path(__file__).parent / "fixtures" / "openai-responses"
FILES = sorted(FIXTURES.glob("*.json"))
README = (FIXTURES.parent / "README.md").read_text(encoding="utf-8")


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def usage(input_tokens, output_tokens, cached=0, reasoning=0) -> dict:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cached_tokens": cached,
            "reasoning_tokens": reasoning}


STREET_HEADINGS = ["**Providing street crossing instructions**", "**Explaining street crossing safety**",
                   "**Sharing street crossing safety tips**", "**Providing safe crossing advice**"]
FLORENCE_THOUGHT = ("**Getting weather info**\n\nI need to respond to the user's question about the weather in "
                    "Florence, Italy. I'll use the weather tool, which requires the location string. According to "
                    "the instructions, I can call functions.weather directly since I only need one tool for this "
                    "task. There's no need for parallel execution here. I'll call the tool to retrieve the current "
                    "weather information for Florence and see what it returns!")
CALCULATOR_THOUGHT = ("**Calculating step-by-step using calculator**\n\nI'll compute 12 plus 7, then multiply the "
                      "result by 3, and finally multiply that by 10, reporting the final product.")

# name -> (text, reasoning, [(call_id, name, arguments)], finish_reason, usage); reasoning
# given as a callable checks a long text by its parts.
EXPECTED = {
    "basic-json": ("pong", "", [], "end_turn", usage(11, 5)),
    "basic-stream": ("pong", "", [], "end_turn", usage(11, 5)),
    "tool-use-stream": ("", "", [("call_sVidsfFJ6zlzRpelrPkTPlpd", "multiply", '{"a":1231,"b":2331}')],
                        "tool_use", usage(58, 23)),
    "text-after-tool-output-stream": ("1231 × 2331 = **2,869,461**", "", [], "end_turn", usage(94, 18)),
    "reasoning-summary-stream": (
        lambda text: text.startswith("I'm not a road safety professional, but here are some generally accepted "
                                     "guidelines that might help you cross the street safely:\n\n1. Before")
        and text.endswith("familiarize yourself with the rules specific to your area. Stay safe!")
        and len(text) == 1251,
        lambda thought: [p for p in thought.split("\n\n") if p.startswith("**")] == STREET_HEADINGS
        and thought.endswith("It will be clear and easy to understand!") and len(thought) == 2028,
        [], "end_turn", usage(13, 1680, reasoning=1408)),
    "encrypted-reasoning-required-tool-stream": (
        "", "", [("call_CWXgs68YprAjp6t0371hiPOI", "final_result", '{"result":6666}')], "tool_use",
        usage(53, 469, reasoning=448)),
    "reasoning-summary-tool-call-stream": (
        "", FLORENCE_THOUGHT, [("call_zgUaIBRPTwxxOusyyKw5NVMH", "weather", '{"location":"Florence, Italy"}')],
        "tool_use", usage(63, 121, reasoning=64)),
    "reasoning-summary-text-after-tool-output-stream": (
        "Right now in Florence, Italy, it’s about 40°C (104°F). Would you like a forecast or details like wind "
        "and humidity?",
        lambda thought: thought.startswith("**Finalizing the response**\n\nI can mention the time of day, but since "
                                           "that wasn't provided, I'll just stick with \"right now.\"")
        and thought.endswith("without unnecessary complexity. Let’s get this right!") and len(thought) == 417,
        [], "end_turn", usage(92, 456, reasoning=384)),
    "codex-max-encrypted-reasoning-tool-stream": (
        "", CALCULATOR_THOUGHT, [("call_AB6AaRZ1FYZB2RwS6A5vbdqn", "calculator", '{"a":12,"b":7,"op":"add"}')],
        "tool_use", usage(134, 28)),
    "codex-max-second-tool-stream": (
        "", "", [("call_Q6pW65MUgW9vF59BmItYGos3", "calculator", '{"a":19,"b":3,"op":"multiply"}')], "tool_use",
        usage(221, 26)),
    "codex-max-third-tool-stream": (
        "", "", [("call_Zl5vIMnD7dVAjgU6FkhmiCZh", "calculator", '{"a":57,"b":10,"op":"multiply"}')], "tool_use",
        usage(260, 26)),
    "codex-max-text-after-tools-stream": ("The final result is **570**.", "", [], "end_turn", usage(299, 12)),
    "openrouter-raw-reasoning-text-stream": (
        "4", 'The user asks: "What is 2+2?" They expect a straightforward answer: 4. Just answer 4.', [], "end_turn",
        usage(78, 37, reasoning=22)),
    "deepseek-reasoning-text-tool-stream": (
        "", "The user asks about temperature in Tokyo. I'll call the tool.",
        [("call_00_xjY8Z2BvSlzgEmmw0DtH0464", "get_temperature", '{"city": "Tokyo"}')], "tool_use",
        usage(366, 59, cached=256, reasoning=14)),
    "deepseek-text-after-tool-output-stream": (
        "The current temperature in Tokyo is **21.0°C**.", "", [], "end_turn", usage(440, 14, cached=384)),
}


def check(said, expected) -> None:
    text, thought, calls, finish_reason, counts = expected
    assert text(said.text) if callable(text) else said.text == text
    assert thought(said.reasoning) if callable(thought) else said.reasoning == thought
    assert [call[:3] for call in said.tool_calls] == calls
    assert all(parsed == json.loads(arguments) for _, _, arguments, parsed in said.tool_calls)
    assert said.finish_reason == finish_reason and said.usage == counts
    assert said.refusal == "" and said.error is None and said.done


def test_every_fixture_is_expected_and_listed():
    assert {p.stem for p in FILES} == set(EXPECTED)
    for path in FILES:
        assert f"`openai-responses/{path.name}`" in README


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fixture_provenance(path):
    fixture = json.loads(path.read_text(encoding="utf-8"))
    assert fixture["protocol"] == "openai-responses" and fixture["status"] == 200
    assert set(fixture["origin"]) == {"corpus_path", "repo", "path_in_repo", "commit", "license", "description"}
    assert fixture["origin"]["license"] in {"MIT", "Apache-2.0"}
    assert re.fullmatch(r"[0-9a-f]{40}", fixture["origin"]["commit"])
    assert fixture["stream"] is path.stem.endswith("-stream")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reading(name):
    check(read_responses(load(name)), EXPECTED[name])


# The rules for what the Codex backend sends, checked by rewriting real captures into it.


def rewrite(fixture: dict, change) -> dict:
    """The fixture with each event passed through `change` (which may edit it in place)."""
    events = response_events(fixture["body"])
    for event in events:
        change(event)
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return {**fixture, "body": body}


def empty_completed_output(event: dict) -> None:
    if event["type"] == "response.completed":
        event["response"]["output"] = []


def empty_done_items(event: dict) -> None:
    """What a backend that streams only deltas sends: done items and events without text."""
    item = event.get("item")
    if event["type"] == "response.output_item.done":
        for part in item.get("content") or []:
            part["text"] = ""
        for part in item.get("summary") or []:
            part["text"] = ""
        if "arguments" in item:
            item["arguments"] = ""
    empty_completed_output(event)


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith("-stream")))
def test_items_from_done_events_when_completed_output_is_empty(name):
    check(read_responses(rewrite(load(name), empty_completed_output)), EXPECTED[name])


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith("-stream")))
def test_text_from_deltas_when_done_items_are_empty(name):
    check(read_responses(rewrite(load(name), empty_done_items)), EXPECTED[name])


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n.endswith("-stream")))
def test_items_from_done_events_alone(name):
    """The minimal stream Codex-style clients accept: items only in output_item.done."""
    def bare(event: dict) -> None:
        empty_completed_output(event)
        if event["type"].endswith(".delta") or event["type"] == "response.output_item.added":
            event["type"] = "response.ignored"
    check(read_responses(rewrite(load(name), bare)), EXPECTED[name])


def test_items_in_output_index_order():
    """OpenRouter finishes the reasoning item (index 0) after the message (index 1)."""
    events = [e["type"] + f"@{e.get('output_index')}" for e in response_events(
        load("openrouter-raw-reasoning-text-stream")["body"]) if e["type"] == "response.output_item.done"]
    assert events == ["response.output_item.done@1", "response.output_item.done@0"]
    said = read_responses(rewrite(load("openrouter-raw-reasoning-text-stream"), empty_completed_output))
    assert said.text == "4" and said.reasoning.startswith("The user asks")


def test_only_added_items_and_deltas():
    """No done events and no terminal output: the items announced, filled by their deltas."""
    def drop(events):
        return [e for e in events if e["type"] != "response.output_item.done"]
    fixture = rewrite(load("tool-use-stream"), empty_completed_output)
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in drop(response_events(fixture["body"])))
    said = read_responses({**fixture, "body": body})
    assert said.tool_calls == [("call_sVidsfFJ6zlzRpelrPkTPlpd", "multiply", '{"a":1231,"b":2331}',
                                {"a": 1231, "b": 2331})]


def test_parallel_calls_in_output_index_order():
    calls = [{"type": "function_call", "call_id": f"call_{i}", "name": "f", "arguments": "{}"} for i in (0, 1)]
    events = [{"type": "response.output_item.done", "output_index": 1, "item": calls[1]},
              {"type": "response.output_item.done", "output_index": 0, "item": calls[0]},
              {"type": "response.completed", "response": {"status": "completed", "output": []}}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    said = read_responses({"stream": True, "body": body})
    assert [call[0] for call in said.tool_calls] == ["call_0", "call_1"] and said.finish_reason == "tool_use"


# Endings the captures do not have, on small hand-written answers.


def answer(status: str, **extra) -> dict:
    response = {"object": "response", "status": status, "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Half"}]}],
        "usage": {"input_tokens": 3, "output_tokens": 16}, **extra}
    return {"stream": False, "body": json.dumps(response)}


def test_incomplete_endings():
    said = read_responses(answer("incomplete", incomplete_details={"reason": "max_output_tokens"}))
    assert (said.text, said.finish_reason, said.usage) == ("Half", "max_tokens", usage(3, 16))
    said = read_responses(answer("incomplete", incomplete_details={"reason": "content_filter"}))
    assert said.finish_reason == "refusal"


def test_failed_stream_and_refusal():
    error = {"code": "rate_limit_exceeded", "message": "Rate limit reached. Please try again in 11.054s."}
    events = [{"type": "response.created", "response": {"id": "resp_1", "status": "in_progress", "output": []}},
              {"type": "response.output_item.added", "output_index": 0, "item": {
                  "type": "message", "role": "assistant", "content": []}},
              {"type": "response.refusal.delta", "output_index": 0, "content_index": 0, "delta": "I can't"},
              {"type": "response.refusal.delta", "output_index": 0, "content_index": 0, "delta": " help."},
              {"type": "response.failed", "response": {"id": "resp_1", "status": "failed", "error": error,
                                                       "output": [], "usage": None}}]
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    said = read_responses({"stream": True, "body": body})
    assert said.refusal == "I can't help." and said.text == ""
    assert said.error == error and said.finish_reason is None and said.usage is None and said.done


def test_stream_without_terminal_event_is_not_done():
    body = load("basic-stream")["body"].split("event: response.completed")[0]
    said = read_responses({"stream": True, "body": body})
    assert said.text == "pong" and not said.done and said.finish_reason is None


def test_error_body():
    body = {"error": {"message": "Unknown parameter: 'x'.", "type": "invalid_request_error", "param": "x",
                      "code": "unknown_parameter"}}
    said = read_responses({"stream": False, "body": json.dumps(body)})
    assert said.error == body["error"] and not said.done


def test_unknown_item_is_refused():
    body = json.dumps({"status": "completed", "output": [{"type": "web_search_call", "id": "ws_1"}]})
    with pytest.raises(ValueError, match="web_search_call"):
        read_responses({"stream": False, "body": body})
