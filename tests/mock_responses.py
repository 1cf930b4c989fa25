"""Scripted mocks of the OpenAI Responses API and of the ChatGPT Codex backend.

They stand in for api.openai.com/v1/responses and chatgpt.com/backend-api/codex/responses
in end-to-end tests, so they speak the exact wire format (the response object, the SSE
event sequence with `sequence_number`s, sent with chunked transfer encoding one event per
write, each backend's own error bodies) and refuse what the real endpoints refuse: a
translator bug shows up as a failed request here, not in production.

The server itself (asyncio loop in a thread or a process, keep-alive HTTP/1.1, request
recording, the script cursor) is MockOpenAI's; these classes replace only the protocol.

In process::

    with MockResponses([{"text": "hi"}], api_key="sk-test") as mock:
        ...  # openai.OpenAI(base_url=mock.base_url, api_key="sk-test"); inspect mock.requests
    with MockCodex([{"text": "hi"}], issuer=issuer) as mock:
        ...  # POST mock.base_url + "/responses" with the Codex headers

As a subprocess (prints ``READY <port>`` once listening)::

    python tests/mock_responses.py --port 0 [--script turns.json] [--api-key K]
        [--codex --account-id A --token T ...] [--no-repeat-last] [--log]

A script is a list of turns, one consumed per accepted request (the last one repeats when
exhausted unless ``repeat_last`` is false):

* ``{"text"?, "refusal"?, "reasoning"?: str | [str], "tool_calls"?: [{"call_id"?, "name",
  "arguments"}], "status"?: "completed" | "incomplete", "incomplete_reason"?, "failed"?:
  {"code", "message"}, "usage"?, "chunks"?, "interval_ms"?, "delay_ms"?, "headers"?}``
  rendered as a response object, or as its event stream when the request streams (the
  Codex backend always streams). ``reasoning`` is the summary (a list gives one summary
  part each; ``[]`` a reasoning item with no summary); its item carries
  ``encrypted_content`` when the request's ``include`` asks for it. ``arguments`` may be
  an object (sent as JSON) or a string (sent as is). ``usage`` overrides the counted
  usage; it may use the shorthands ``cached_tokens`` and ``reasoning_tokens``.
  ``incomplete_reason`` defaults to ``max_output_tokens``. ``failed`` ends the stream
  with ``response.failed`` after whatever else the turn says;
* ``{"usage_limit": {"resets_in_seconds", "plan_type"?}}`` (Codex only): the 429 of an
  exhausted ChatGPT plan, with its ``x-codex-*`` headers;
* ``{"error_status": int, "error_body"?: {...}, "headers"?}``;
* ``{"raw_sse": str, "status"?, "headers"?, "interval_ms"?}`` replays exact stream bytes;
* ``{"raw_body": str, "status"?, "content_type"?, "headers"?}`` replays an exact body;
* in process, a callable ``(request_json) -> turn``.

Each recorded request (``mock.requests``) also lists the ``encrypted_content`` values its
input sent back (``returned_encrypted``); ``mock.issued_encrypted`` holds every value the
mock handed out, and a value it never issued is refused as the real API refuses it.

Error bodies quoted from real traffic, as reported by the clients that met them:
``Unknown parameter``, ``No tool output found for function call``, ``No tool call found
for function call output``, the ``max_output_tokens`` minimum, ``invalid_encrypted_content``,
``Item with id … not found`` (a 404: the SDK reports it as "Error: 404 Item with id …"),
every Codex ``{"detail": …}`` body, the 401 ``token_expired`` and the 429 usage limit.
The other messages follow the API's own patterns.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import re
import secrets
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson

from mock_openai import (ALNUM, DEFAULT_CHUNKS, MockOpenAI, RecordedRequest, RequestRejected, Turn, _as_bytes,
                         _reason, default_error_body, load_script_file, send_body, send_chunked, spawn_mock,
                         split_sse, split_text)

KNOWN_FIELDS = frozenset(
    "model input instructions stream stream_options store background tools tool_choice parallel_tool_calls "
    "max_output_tokens max_tool_calls temperature top_p top_logprobs reasoning include text truncation user "
    "safety_identifier prompt_cache_key prompt_cache_retention metadata previous_response_id conversation "
    "service_tier prompt".split()
)
# What Codex itself sends (codex-rs ResponsesApiRequest); anything else is "Unsupported parameter".
CODEX_FIELDS = frozenset(
    "model instructions input tools tool_choice parallel_tool_calls reasoning store stream include "
    "prompt_cache_key text service_tier client_metadata".split()
)
# The models the backend offered ChatGPT accounts in 2026-08; others get a 400.
CODEX_MODELS = ("gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.5", "gpt-5.4", "gpt-5.4-mini",
                "gpt-5.3-codex-spark", "codex-auto-review")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
CODEX_EFFORTS = EFFORTS + ("max", "ultra")
SUMMARIES = ("auto", "concise", "detailed")
CODEX_SUMMARIES = SUMMARIES + ("none",)
INCLUDES = ("reasoning.encrypted_content", "message.output_text.logprobs", "message.input_image.image_url",
            "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
            "computer_call_output.output.image_url", "code_interpreter_call.outputs")
ROLES = ("user", "assistant", "system", "developer")
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", "item_reference")
INPUT_PARTS = ("input_text", "input_image", "input_file")
OUTPUT_PARTS = ("output_text", "refusal")
TOOL_CHOICE_MODES = ("auto", "none", "required")
NUMBER_RANGES = {"temperature": (0, 2), "top_p": (0, 1)}
BOOLEANS = ("stream", "store", "background", "parallel_tool_calls")
STRINGS = ("instructions", "user", "safety_identifier", "prompt_cache_key", "previous_response_id")
ENUMS = {"truncation": ("auto", "disabled"), "service_tier": ("auto", "default", "flex", "scale", "priority"),
         "prompt_cache_retention": ("in-memory", "24h")}
TOOL_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
IMAGE_URL_RE = re.compile(r"(data:image/[\w.+-]+;base64,[A-Za-z0-9+/=]+|https?://\S+)")
MIN_OUTPUT_TOKENS = 16
TOKEN_EXPIRED = {"error": {"message": "Provided authentication token is expired. Please try signing in again.",
                           "type": None, "code": "token_expired", "param": None}, "status": 401}
NOT_PERSISTED = ("Item with id '{}' not found. Items are not persisted when `store` is set to false. Try again "
                 "with `store` set to true, or remove this item from your input.")


# --------------------------------------------------------------------------- errors


class Refused(RequestRejected):
    """A refusal with a body of its own (the Codex backend's `{"detail": ...}` and 401)."""

    def __init__(self, status: int, body: dict):
        super().__init__(str(body), status=status)
        self.body = body


def detail(message: str, status: int = 400) -> Refused:
    """The Codex backend's FastAPI-style refusal."""
    return Refused(status, {"detail": message})


def _invalid(param: str, message: str, code: str | None = "invalid_value", status: int = 400) -> RequestRejected:
    return RequestRejected(message, param=param, code=code, status=status)


def _missing(param: str) -> RequestRejected:
    return _invalid(param, f"Missing required parameter: '{param}'.", "missing_required_parameter")


def _invalid_type(param: str, expected: str, got: Any) -> RequestRejected:
    return _invalid(param, f"Invalid type for '{param}': expected {expected}, but got {_json_type(got)} instead.",
                    "invalid_type")


def _not_supported(param: str, value: Any, supported: Iterable[str]) -> RequestRejected:
    names = [f"'{s}'" for s in supported]
    listed = ", ".join(names[:-1]) + f", and {names[-1]}" if len(names) > 2 else " and ".join(names)
    return _invalid(param, f"Invalid value: {_shown(value)}. Supported values are: {listed}.")


def _shown(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else orjson.dumps(value).decode()


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
             float: "a decimal", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _no_output(call_id: str) -> RequestRejected:
    return _invalid("input", f"No tool output found for function call {call_id}.", None)


# ----------------------------------------------------------------------- validation


def validate_request(body: dict, codex: bool = False, models: Iterable[str] | None = None) -> None:
    """Raise RequestRejected (or Refused) for what the endpoint refuses, one error at a time.

    Codex's own rules come first, in this order (the backend's real order is not known):
    stream, store, instructions, input a list, unsupported fields, system messages, the
    model, item ids. Then the checks both share (the engine behind both), whose errors
    are OpenAI-style."""
    if codex:
        _codex_rules(body, models)
    else:
        for key in body:
            if key not in KNOWN_FIELDS:
                raise _invalid(key, f"Unknown parameter: '{key}'.", "unknown_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing("model")
    _validate_scalars(body)
    if "input" not in body:
        raise _missing("input")
    _validate_input(body["input"], store=body.get("store", True) is not False)
    names = _validate_tools(body.get("tools"))
    _validate_tool_choice(body.get("tool_choice"), names)
    _validate_reasoning(body.get("reasoning"), codex)
    _validate_include(body.get("include"))
    _validate_text(body.get("text"))


def _codex_rules(body: dict, models: Iterable[str] | None) -> None:
    if body.get("stream") is not True:
        raise detail("Stream must be set to true")
    if body.get("store", True) is not False:  # the field defaults to true
        raise detail("Store must be set to false")
    instructions = body.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():  # blank refused too (CC-Adapter)
        raise detail("Instructions are required")
    if not isinstance(body.get("input"), list):
        raise detail("Input must be a list")
    for key in body:
        if key not in CODEX_FIELDS:
            raise detail(f"Unsupported parameter: {key}")
    for item in body["input"]:
        if isinstance(item, dict) and item.get("role") == "system":
            raise detail("System messages are not allowed")
    if models is not None and body.get("model") not in models:
        raise detail(f"The '{body.get('model')}' model is not supported when using Codex with a ChatGPT account.")
    for item in body["input"]:
        if isinstance(item, dict) and (item.get("id") is not None or item.get("type") == "item_reference"):
            raise _invalid("input", NOT_PERSISTED.format(item.get("id")), None, status=404)


def _validate_scalars(body: dict) -> None:
    for key in BOOLEANS:
        if body.get(key) is not None and not isinstance(body[key], bool):
            raise _invalid_type(key, "a boolean", body[key])
    for key in STRINGS:
        if body.get(key) is not None and not isinstance(body[key], str):
            raise _invalid_type(key, "a string", body[key])
    for key, values in ENUMS.items():
        if body.get(key) is not None and body[key] not in values:
            raise _not_supported(key, body[key], values)
    for key, low in (("max_output_tokens", MIN_OUTPUT_TOKENS), ("max_tool_calls", 1)):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid_type(key, "an integer", value)
        if value < low:
            raise _invalid(key, f"Invalid '{key}': integer below minimum value. Expected a value >= {low}, but "
                                f"got {value} instead.", "integer_below_min_value")
    for key, (low, high) in NUMBER_RANGES.items():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _invalid_type(key, "a decimal", value)
        if value < low:
            raise _invalid(key, f"Invalid '{key}': decimal below minimum value. Expected a value >= {low}, but "
                                f"got {value} instead.", "decimal_below_min_value")
        if value > high:
            raise _invalid(key, f"Invalid '{key}': decimal above maximum value. Expected a value <= {high}, but "
                                f"got {value} instead.", "decimal_above_max_value")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise _invalid_type("metadata", "an object of strings", metadata)
        if len(metadata) > 16:
            raise _invalid("metadata", "Invalid 'metadata': too many properties. Expected an object with at most "
                                       f"16 properties, but got an object with {len(metadata)} properties instead.",
                           "object_above_max_properties")
    options = body.get("stream_options")
    if options is not None:
        if body.get("stream") is not True:
            raise _invalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is "
                                             "enabled.")
        if not isinstance(options, dict) or not isinstance(options.get("include_obfuscation", True), bool):
            raise _invalid_type("stream_options", "an object", options)


def _validate_input(value: Any, store: bool) -> None:
    """Item shapes, and every function_call answered (by call_id) before the next user message."""
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _invalid_type("input", "one of a string or array of input items", value)
    pending: dict[str, None] = {}  # call ids of function calls not yet answered
    calls: set[str] = set()
    for i, item in enumerate(value):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise _invalid_type(at, "an object", item)
        kind = item.get("type", "message" if "role" in item else None)  # a bare {role, content} is a message
        if kind not in ITEM_TYPES:
            raise _not_supported(f"{at}.type", kind, ITEM_TYPES)
        if kind == "message":
            if item.get("role") == "user" and pending:
                raise _no_output(next(iter(pending)))
            _validate_message(item, at)
        elif kind == "function_call":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _missing(f"{at}.call_id")
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise _missing(f"{at}.name")
            if not isinstance(item.get("arguments"), str):
                raise _invalid_type(f"{at}.arguments", "a string", item.get("arguments"))
            pending[call_id] = None
            calls.add(call_id)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _missing(f"{at}.call_id")
            if call_id not in calls:
                raise _invalid("input", f"No tool call found for function call output with call_id {call_id}.", None)
            _validate_tool_output(item.get("output"), f"{at}.output")
            pending.pop(call_id, None)
        elif kind == "reasoning":
            _validate_reasoning_item(item, at, store)
        elif not isinstance(item.get("id"), str):
            raise _missing(f"{at}.id")
    if pending:
        raise _no_output(next(iter(pending)))


def _validate_message(item: dict, at: str) -> None:
    role = item.get("role")
    if role not in ROLES:
        raise _not_supported(f"{at}.role", role, ROLES)
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid_type(f"{at}.content", "one of a string or array of input content parts", content)
    allowed = OUTPUT_PARTS if role == "assistant" else INPUT_PARTS
    for k, part in enumerate(content):
        part_at = f"{at}.content[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            raise _not_supported(f"{part_at}.type", kind, allowed)
        _validate_part(part, part_at)


def _validate_part(part: dict, at: str) -> None:
    kind = part["type"]
    key = {"input_text": "text", "output_text": "text", "refusal": "refusal"}.get(kind)
    if key and not isinstance(part.get(key), str):
        raise _missing(f"{at}.{key}")
    if kind == "input_image":
        url, file_id = part.get("image_url"), part.get("file_id")
        if url is None and file_id is None:
            raise _invalid(at, f"Invalid '{at}': an input_image needs an 'image_url' or a 'file_id'.")
        if url is not None and (not isinstance(url, str) or not IMAGE_URL_RE.fullmatch(url)):
            raise _invalid(f"{at}.image_url", f"Invalid '{at}.image_url'. Expected a valid URL or a base64-encoded "
                                              "data URL with an image MIME type, but got a value with an invalid "
                                              "format.", "invalid_value")
        if part.get("detail") not in (None, "low", "high", "auto"):
            raise _not_supported(f"{at}.detail", part["detail"], ("low", "high", "auto"))
    elif kind == "input_file" and not any(isinstance(part.get(k), str) for k in ("file_id", "file_data", "file_url")):
        raise _invalid(at, f"Invalid '{at}': an input_file needs a 'file_id', 'file_data' or 'file_url'.")


def _validate_tool_output(output: Any, at: str) -> None:
    if isinstance(output, str):
        return
    if not isinstance(output, list):
        raise _invalid_type(at, "one of a string or array of content parts", output)
    for k, part in enumerate(output):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in INPUT_PARTS:
            raise _not_supported(f"{at}[{k}].type", kind, INPUT_PARTS)
        _validate_part(part, f"{at}[{k}]")


def _validate_reasoning_item(item: dict, at: str, store: bool) -> None:
    summary = item.get("summary")
    if not isinstance(summary, list):
        raise _missing(f"{at}.summary") if summary is None else _invalid_type(f"{at}.summary", "an array", summary)
    for k, part in enumerate(summary):
        if not isinstance(part, dict) or part.get("type") != "summary_text" or not isinstance(part.get("text"), str):
            raise _not_supported(f"{at}.summary[{k}].type", part.get("type") if isinstance(part, dict) else part,
                                 ("summary_text",))
    encrypted = item.get("encrypted_content")
    if encrypted is not None and not isinstance(encrypted, str):
        raise _invalid_type(f"{at}.encrypted_content", "a string", encrypted)
    # Without storage an id refers to nothing; the encrypted content is what carries the reasoning.
    if not store and item.get("id") is not None and encrypted is None:
        raise _invalid("input", NOT_PERSISTED.format(item["id"]), None, status=404)


def _validate_tools(tools: Any) -> set[str]:
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise _invalid_type("tools", "an array", tools)
    names = set()
    for j, tool in enumerate(tools):
        at = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _not_supported(f"{at}.type", tool.get("type") if isinstance(tool, dict) else tool, ("function",))
        name = tool.get("name")
        if not isinstance(name, str):
            raise _missing(f"{at}.name")
        if not TOOL_NAME_RE.fullmatch(name):
            raise _invalid(f"{at}.name", f"Invalid '{at}.name': string does not match pattern. Expected a string "
                                         "that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.")
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _invalid_type(f"{at}.parameters", "an object", parameters)
        if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
            raise _invalid_type(f"{at}.strict", "a boolean", tool["strict"])
        if tool.get("description") is not None and not isinstance(tool["description"], str):
            raise _invalid_type(f"{at}.description", "a string", tool["description"])
        names.add(name)
    return names


def _validate_tool_choice(choice: Any, names: set[str]) -> None:
    if choice is None or choice in TOOL_CHOICE_MODES:
        return
    if isinstance(choice, dict) and choice.get("type") == "function":
        if choice.get("name") in names:
            return
        raise _invalid("tool_choice", f"Tool choice '{choice.get('name')}' not found in 'tools' parameter.")
    raise _not_supported("tool_choice", choice, TOOL_CHOICE_MODES)


def _validate_reasoning(reasoning: Any, codex: bool) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise _invalid_type("reasoning", "an object", reasoning)
    for key, values in (("effort", CODEX_EFFORTS if codex else EFFORTS),
                        ("summary", CODEX_SUMMARIES if codex else SUMMARIES)):
        if reasoning.get(key) is not None and reasoning[key] not in values:
            raise _not_supported(f"reasoning.{key}", reasoning[key], values)


def _validate_include(include: Any) -> None:
    if include is None:
        return
    if not isinstance(include, list):
        raise _invalid_type("include", "an array", include)
    for k, value in enumerate(include):
        if value not in INCLUDES:
            raise _not_supported(f"include[{k}]", value, INCLUDES)


def _validate_text(text: Any) -> None:
    if text is None:
        return
    if not isinstance(text, dict):
        raise _invalid_type("text", "an object", text)
    if text.get("verbosity") is not None and text["verbosity"] not in ("low", "medium", "high"):
        raise _not_supported("text.verbosity", text["verbosity"], ("low", "medium", "high"))
    fmt = text.get("format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_schema", "json_object")):
        raise _not_supported("text.format.type", fmt.get("type") if isinstance(fmt, dict) else fmt,
                             ("text", "json_schema", "json_object"))


def encrypted_in(body: Any) -> list[str]:
    """The encrypted_content values a request's reasoning items send back."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    return [item["encrypted_content"] for item in items if isinstance(item, dict)
            and item.get("type") == "reasoning" and isinstance(item.get("encrypted_content"), str)]


# ------------------------------------------------------------------------ rendering


def hex_id(prefix: str) -> str:
    """Ids shaped like the API's (resp_, msg_, rs_, fc_ + hex)."""
    return prefix + secrets.token_hex(25)


def new_encrypted() -> str:
    """A blob shaped like the API's (a Fernet token: gAAAAAB + urlsafe base64)."""
    return "gAAAAAB" + base64.urlsafe_b64encode(os.urandom(120)).decode()


def _arguments(call: dict) -> str:
    arguments = call.get("arguments", {})
    return arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()


def _summary_parts(turn: dict) -> list[str] | None:
    """The reasoning summary parts, or None when the turn has no reasoning item."""
    reasoning = turn.get("reasoning")
    if reasoning is None or reasoning == "":
        return None
    return [reasoning] if isinstance(reasoning, str) else list(reasoning)


def build_items(turn: dict, request: dict, issue: Callable[[], str]) -> list[dict]:
    """The output items a turn describes, as they stand once finished."""
    items: list[dict] = []
    status = "incomplete" if turn.get("status") == "incomplete" else "completed"
    summary = _summary_parts(turn)
    if summary is not None:
        item = {"id": hex_id("rs_"), "type": "reasoning",
                "summary": [{"type": "summary_text", "text": text} for text in summary]}
        if "reasoning.encrypted_content" in (request.get("include") or ()):
            item["encrypted_content"] = issue()
        items.append(item)
    content = []
    if turn.get("text"):
        content.append({"type": "output_text", "annotations": [], "logprobs": [], "text": turn["text"]})
    if turn.get("refusal"):
        content.append({"type": "refusal", "refusal": turn["refusal"]})
    if content:
        items.append({"id": hex_id("msg_"), "type": "message", "status": status, "content": content,
                      "role": "assistant"})
    for call in turn.get("tool_calls") or ():
        call_id = call.get("call_id") or "call_" + secrets.token_urlsafe(18)
        items.append({"id": hex_id("fc_"), "type": "function_call", "status": "completed",
                      "arguments": _arguments(call), "call_id": call_id, "name": call["name"]})
    return items


def build_usage(turn: dict, prompt_bytes: int, items: list[dict]) -> dict:
    """Rough token counts (about 4 bytes a token), overridable by the turn's `usage`."""
    said = reasoned = 0
    for item in items:
        if item["type"] == "reasoning":
            reasoned += sum(len(p["text"]) for p in item["summary"])
        elif item["type"] == "message":
            said += sum(len(p.get("text") or p.get("refusal") or "") for p in item["content"])
        else:
            said += len(item["arguments"])
    reasoning = (reasoned + 3) // 4
    usage = {"input_tokens": max(1, prompt_bytes // 4), "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": (said + 3) // 4 + reasoning, "output_tokens_details": {"reasoning_tokens": reasoning}}
    override = dict(turn.get("usage") or {})
    if "cached_tokens" in override:
        usage["input_tokens_details"] = {"cached_tokens": override.pop("cached_tokens")}
    if "reasoning_tokens" in override:
        usage["output_tokens_details"] = {"reasoning_tokens": override.pop("reasoning_tokens")}
    usage.update(override)
    usage.setdefault("total_tokens", usage["input_tokens"] + usage["output_tokens"])
    return usage


def response_object(request: dict, base: dict, status: str, output: list[dict], usage: dict | None,
                    **ending: Any) -> dict:
    """The response object, echoing the request's settings as the API does."""
    reasoning = request.get("reasoning") or {}
    return {"id": base["id"], "object": "response", "created_at": base["created_at"], "status": status,
            "background": False,
            "error": ending.get("error"), "incomplete_details": ending.get("incomplete_details"),
            "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
            "max_tool_calls": request.get("max_tool_calls"), "model": request["model"], "output": output,
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": request.get("previous_response_id"),
            "prompt_cache_key": request.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": request.get("safety_identifier"),
            "service_tier": request.get("service_tier") or "default", "store": request.get("store", True),
            "temperature": request.get("temperature", 1.0),
            "text": request.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
            "top_logprobs": 0, "top_p": request.get("top_p", 1.0), "truncation": request.get("truncation", "disabled"),
            "usage": usage, "user": request.get("user"), "metadata": request.get("metadata") or {}}


def _ending(turn: dict) -> tuple[str, dict]:
    """The final status and the response fields that go with it."""
    if turn.get("failed"):
        failed = turn["failed"]
        return "failed", {"error": {"code": failed.get("code", "server_error"),
                                    "message": failed.get("message", "The model failed to respond.")}}
    if turn.get("status") == "incomplete":
        return "incomplete", {"incomplete_details": {"reason": turn.get("incomplete_reason", "max_output_tokens")}}
    return "completed", {}


def render_response(turn: dict, request: dict, prompt_bytes: int, issue: Callable[[], str]) -> dict:
    """A non-streamed response object."""
    items = build_items(turn, request, issue)
    status, ending = _ending(turn)
    usage = None if status == "failed" else build_usage(turn, prompt_bytes, items)
    base = {"id": hex_id("resp_"), "created_at": int(time.time())}
    return response_object(request, base, status, [] if status == "failed" else items, usage, **ending)


class _Stream:
    """Events numbered in order, each framed `event: <type>\\ndata: <json>\\n\\n`."""

    def __init__(self, obfuscate: bool):
        self.obfuscate = obfuscate
        self.events: list[bytes] = []

    def add(self, kind: str, **fields: Any) -> None:
        data = {"type": kind, **fields, "sequence_number": len(self.events)}
        if self.obfuscate and kind.endswith(".delta"):
            # The API pads deltas with random characters so their sizes do not reveal the tokens.
            data["obfuscation"] = "".join(random.choices(ALNUM, k=random.randint(1, 15)))
        self.events.append(b"event: %b\ndata: %b\n\n" % (kind.encode(), orjson.dumps(data)))


def render_stream_events(turn: dict, request: dict, prompt_bytes: int, issue: Callable[[], str],
                         completed_output: bool = True) -> list[bytes]:
    """The events of a streamed response, in the order the API sends them. Without
    `completed_output` the terminal event carries `output: []`, as the Codex backend's does."""
    items = build_items(turn, request, issue)
    parts = int(turn.get("chunks", DEFAULT_CHUNKS))
    status, ending = _ending(turn)
    base = {"id": hex_id("resp_"), "created_at": int(time.time())}
    obfuscate = (request.get("stream_options") or {}).get("include_obfuscation", True)
    out = _Stream(obfuscate)
    opening = response_object(request, base, "in_progress", [], None)
    out.add("response.created", response=opening)
    out.add("response.in_progress", response=opening)
    for index, item in enumerate(items):
        ids = {"item_id": item["id"], "output_index": index}
        if item["type"] == "reasoning":
            out.add("response.output_item.added", output_index=index, item={**item, "summary": []})
            for k, part in enumerate(item["summary"]):
                out.add("response.reasoning_summary_part.added", **ids, summary_index=k,
                        part={"type": "summary_text", "text": ""})
                for piece in split_text(part["text"], parts):
                    out.add("response.reasoning_summary_text.delta", **ids, summary_index=k, delta=piece)
                out.add("response.reasoning_summary_text.done", **ids, summary_index=k, text=part["text"])
                out.add("response.reasoning_summary_part.done", **ids, summary_index=k, part=part)
        elif item["type"] == "message":
            out.add("response.output_item.added", output_index=index,
                    item={**item, "status": "in_progress", "content": []})
            for k, part in enumerate(item["content"]):
                at = {**ids, "content_index": k}
                if part["type"] == "output_text":
                    out.add("response.content_part.added", **at, part={**part, "text": ""})
                    for piece in split_text(part["text"], parts):
                        out.add("response.output_text.delta", **at, delta=piece, logprobs=[])
                    out.add("response.output_text.done", **at, text=part["text"], logprobs=[])
                else:
                    out.add("response.content_part.added", **at, part={**part, "refusal": ""})
                    for piece in split_text(part["refusal"], parts):
                        out.add("response.refusal.delta", **at, delta=piece)
                    out.add("response.refusal.done", **at, refusal=part["refusal"])
                out.add("response.content_part.done", **at, part=part)
        else:
            out.add("response.output_item.added", output_index=index,
                    item={**item, "status": "in_progress", "arguments": ""})
            for piece in split_text(item["arguments"], parts):
                out.add("response.function_call_arguments.delta", **ids, delta=piece)
            out.add("response.function_call_arguments.done", **ids, arguments=item["arguments"])
        out.add("response.output_item.done", output_index=index, item=item)
    usage = None if status == "failed" else build_usage(turn, prompt_bytes, items)
    output = items if completed_output and status != "failed" else []
    out.add(f"response.{status}", response=response_object(request, base, status, output, usage, **ending))
    return out.events


def _is_delta(event: bytes) -> bool:
    """A generated-token event: only these wait the turn's interval."""
    return event[:event.find(b"\n")].endswith(b".delta")


# --------------------------------------------------------------------------- server


@dataclass
class ResponsesRequest(RecordedRequest):
    """A recorded request, with the encrypted reasoning its input sent back."""

    returned_encrypted: list[str] = field(default_factory=list)


class MockResponses(MockOpenAI):
    """A scripted OpenAI Responses API on 127.0.0.1: `POST <any base>/responses`. Lifecycle,
    `requests`, `set_script` and `turns_used` as in MockOpenAI."""

    codex = False

    def __init__(self, turns: Iterable[Turn] = (), *, api_key: str | None = "sk-test", port: int = 0,
                 check_encrypted: bool = True, repeat_last: bool = True, log: bool = False):
        """`api_key`: require `Authorization: Bearer <api_key>` (None: no auth).
        `check_encrypted`: refuse reasoning `encrypted_content` this mock never issued."""
        super().__init__(turns, port=port, api_key=api_key, repeat_last=repeat_last, log=log)
        self.check_encrypted = check_encrypted
        self.issued_encrypted: set[str] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _issue(self) -> str:
        value = new_encrypted()
        self.issued_encrypted.add(value)
        return value

    def _record(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Any:
        body = super()._record(method, path, headers, raw)
        plain = self.requests[-1]
        self.requests[-1] = ResponsesRequest(plain.method, plain.path, plain.headers, plain.body, plain.raw,
                                             encrypted_in(body))
        return body

    def _routed(self, method: str, path: str) -> bool:
        return method == "POST" and path.endswith("/responses")

    def _not_found(self, method: str, path: str) -> RequestRejected:
        return RequestRejected(f"Invalid URL ({method} {path})", status=404)

    def _check_headers(self, headers: dict[str, str]) -> None:
        self._check_auth(headers)

    def _validate(self, body: dict) -> None:
        validate_request(body)

    async def _serve(self, writer: asyncio.StreamWriter, method: str, path: str, headers: dict[str, str],
                     raw: bytes) -> None:
        body = self._record(method, path, headers, raw)
        try:
            if not self._routed(method, path):
                raise self._not_found(method, path)
            self._check_headers(headers)
            if not isinstance(body, dict):
                raise RequestRejected("We could not parse the JSON body of your request. The OpenAI API expects a "
                                      "JSON payload, but what was sent was not valid JSON.")
            self._validate(body)
            if self.check_encrypted:
                for value in self.requests[-1].returned_encrypted:
                    if value not in self.issued_encrypted:
                        raise _invalid(None, f"The encrypted content {value[:4]}...{value[-4:]} could not be "
                                             "verified. Reason: Encrypted content could not be decrypted or parsed.",
                                       "invalid_encrypted_content")
            turn = self._next_turn(body)
        except RequestRejected as rejected:
            return await send_body(writer, rejected.status, orjson.dumps(rejected.body), "application/json",
                                   self._error_headers())
        except Exception as exc:  # a broken script or callable turn: make it loud, keep serving
            traceback.print_exc()
            return await send_body(writer, 500, orjson.dumps(self._error_body(500, f"mock error: {exc!r}")),
                                   "application/json")
        await self._play(writer, turn, body, len(raw))

    def _error_headers(self) -> dict[str, str]:
        return {}

    def _error_body(self, status: int, message: str | None = None) -> dict:
        body = default_error_body(status)
        if message:
            body["error"]["message"] = message
        return body

    def _answer_headers(self) -> dict[str, str]:
        return {}

    async def _play(self, writer: asyncio.StreamWriter, turn: dict, request: dict, prompt_bytes: int) -> None:
        """Send the response a turn describes."""
        if turn.get("delay_ms"):
            await asyncio.sleep(turn["delay_ms"] / 1000)
        headers = {**self._answer_headers(), **(turn.get("headers") or {})}
        interval_s = turn.get("interval_ms", 0) / 1000
        if "usage_limit" in turn:
            await self._usage_limit(writer, turn["usage_limit"], turn.get("headers") or {})
        elif "error_status" in turn:
            status = turn["error_status"]
            body = turn.get("error_body") or self._error_body(status)
            await send_body(writer, status, orjson.dumps(body), "application/json", headers)
        elif "raw_body" in turn:
            await send_body(writer, turn.get("status", 200), _as_bytes(turn["raw_body"]),
                            turn.get("content_type", "application/json"), headers)
        elif "raw_sse" in turn:
            await send_chunked(writer, turn.get("status", 200), split_sse(_as_bytes(turn["raw_sse"])),
                               interval_s, headers)
        elif self.codex or request.get("stream"):
            events = render_stream_events(turn, request, prompt_bytes, self._issue, completed_output=not self.codex)
            await send_chunked(writer, 200, events, interval_s, headers, paced=_is_delta)
        else:
            body = orjson.dumps(render_response(turn, request, prompt_bytes, self._issue))
            await send_body(writer, 200, body, "application/json", headers)

    async def _usage_limit(self, writer: asyncio.StreamWriter, limit: dict, headers: dict) -> None:
        # A broken script: make it loud, as for any other (the public API has no plan limits).
        print("mock_responses: usage_limit turns are the Codex backend's; use MockCodex", file=sys.stderr)
        body = self._error_body(500, "mock error: usage_limit turns need MockCodex")
        await send_body(writer, 500, orjson.dumps(body), "application/json")


class MockCodex(MockResponses):
    """A scripted ChatGPT Codex backend on 127.0.0.1: `POST /backend-api/codex/responses`."""

    codex = True
    path = "/backend-api/codex/responses"

    def __init__(self, turns: Iterable[Turn] = (), *, issuer: Any, port: int = 0,
                 models: Iterable[str] | None = CODEX_MODELS, plan_type: str = "plus",
                 rate_limits: dict[str, str] | None = None, check_encrypted: bool = True,
                 repeat_last: bool = True, log: bool = False):
        """`issuer`: has `.is_live(token) -> bool` and `.account_id`; a request needs a live
        bearer token, that `chatgpt-account-id` and an `originator` header.
        `models`: the models a ChatGPT account may use (None: any).
        `rate_limits`: `x-codex-*` headers sent with every answer, over the defaults."""
        super().__init__(turns, api_key=None, port=port, check_encrypted=check_encrypted,
                         repeat_last=repeat_last, log=log)
        self.issuer = issuer
        self.models = None if models is None else list(models)
        self.plan_type = plan_type
        self.rate_limits = rate_limits or {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backend-api/codex"

    def _routed(self, method: str, path: str) -> bool:
        return method == "POST" and path == self.path

    def _not_found(self, method: str, path: str) -> RequestRejected:
        return detail("Not Found", status=404)

    def _check_headers(self, headers: dict[str, str]) -> None:
        bearer = headers.get("authorization", "")
        token = bearer[7:] if bearer.startswith("Bearer ") else ""
        if not token or not self.issuer.is_live(token):  # asked each time: tokens expire while served
            raise Refused(401, TOKEN_EXPIRED)
        # 403, not 401: the token is good, and a client that refreshes on 401 would refresh
        # in a loop, when only sending the account the token belongs to can help.
        if headers.get("chatgpt-account-id") != self.issuer.account_id:
            raise detail("The chatgpt-account-id header does not match the token's account", status=403)
        # Clients sending an originator the backend does not know have been refused with 403;
        # a missing one is taken as unknown.
        if not headers.get("originator"):
            raise detail("Missing originator header", status=403)

    def _validate(self, body: dict) -> None:
        validate_request(body, codex=True, models=self.models)

    def _error_body(self, status: int, message: str | None = None) -> dict:
        return {"detail": message or _reason(status)}

    def _limit_headers(self, used_percent: float = 12, reset_after: int = 3600) -> dict[str, str]:
        now = int(time.time())
        headers = {
            "x-codex-active-limit": "codex", "x-codex-plan-type": self.plan_type,
            "x-codex-primary-used-percent": str(used_percent), "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-after-seconds": str(reset_after), "x-codex-primary-reset-at": str(now + reset_after),
            "x-codex-secondary-used-percent": "3", "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-after-seconds": "400000", "x-codex-secondary-reset-at": str(now + 400000),
            "x-codex-primary-over-secondary-limit-percent": "0", "x-codex-credits-has-credits": "False",
            "x-codex-credits-balance": "0", "x-codex-credits-unlimited": "False",
        }
        headers.update(self.rate_limits)
        return headers

    def _answer_headers(self) -> dict[str, str]:
        return self._limit_headers()

    def _error_headers(self) -> dict[str, str]:
        return self._limit_headers()

    async def _usage_limit(self, writer: asyncio.StreamWriter, limit: dict, headers: dict) -> None:
        wait = int(limit.get("resets_in_seconds", 3600))
        plan = limit.get("plan_type", self.plan_type)
        body = {"error": {"type": "usage_limit_reached", "message": "The usage limit has been reached",
                          "plan_type": plan, "resets_at": int(time.time()) + wait, "eligible_promo": None,
                          "resets_in_seconds": wait}}
        sent = {**self._limit_headers(used_percent=100, reset_after=wait), "x-codex-plan-type": plan, **headers}
        await send_body(writer, 429, orjson.dumps(body), "application/json", sent)


class StaticIssuer:
    """A token issuer for the subprocess mode: these tokens are live, for this account."""

    def __init__(self, tokens: Iterable[str], account_id: str):
        self.tokens = set(tokens)
        self.account_id = account_id

    def is_live(self, token: str) -> bool:
        return token in self.tokens


# ----------------------------------------------------------------------- subprocess


def spawn_mock_responses(*args: str, python: str = sys.executable) -> tuple[subprocess.Popen, int]:
    """This mock as a subprocess; `args` are extra CLI flags, e.g. ("--codex", "--token", "t")."""
    return spawn_mock(Path(__file__).resolve(), *args, python=python)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted mock OpenAI Responses API / ChatGPT Codex backend.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--script", help="JSON file: a list of turns, or {turns, api_key, account_id, tokens}")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (Responses API)")
    parser.add_argument("--codex", action="store_true", help="be the ChatGPT Codex backend")
    parser.add_argument("--account-id", help="the ChatGPT account id the tokens belong to (Codex)")
    parser.add_argument("--token", action="append", default=[], help="a live access token (Codex)")
    parser.add_argument("--no-repeat-last", action="store_true", help="answer 500 once the script is exhausted")
    parser.add_argument("--log", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    config = load_script_file(args.script) if args.script else {}
    options = {"port": args.port, "log": args.log,
               "repeat_last": config.get("repeat_last", True) and not args.no_repeat_last}
    if args.codex:
        issuer = StaticIssuer([*config.get("tokens", ()), *args.token],
                              args.account_id or config.get("account_id", "account-mock"))
        mock: MockResponses = MockCodex(config.get("turns", ()), issuer=issuer, **options)
    else:
        mock = MockResponses(config.get("turns", ()), api_key=args.api_key or config.get("api_key", "sk-test"),
                             **options)
    mock.serve_as_process()


if __name__ == "__main__":
    main()
