"""The local count_tokens estimate counts everything the model reads."""

from __future__ import annotations

import base64
import json
import struct
import zlib

from llmrelay import tokens
from llmrelay.protocols import anthropic as a


def png(width: int, height: int) -> str:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + chunk).decode()


def count(**body) -> int:
    return tokens.count_request(a.parse_count_tokens(json.dumps({"model": "m", **body})))


def test_every_part_of_the_request_counts() -> None:
    base = count(messages=[{"role": "user", "content": "hello"}])
    assert count(messages=[{"role": "user", "content": "hello"}], system="You are a careful assistant.") > base
    assert count(messages=[{"role": "user", "content": "hello"}], tools=[{"name": "Bash", "description": "Run a shell command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]) > base + 15
    with_call = count(
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": "ls -la /usr/local/lib"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "bin lib share include " * 20}]},
        ]
    )
    assert with_call > base + 80


def test_text_counts_like_a_tokenizer_not_like_bytes() -> None:
    assert tokens.count("hello world") == 2
    code = "def f(x):\n    return [i * i for i in range(x) if i % 2]\n" * 10
    assert abs(tokens.count(code) - len(code) / 4) > 10  # bytes/4 would be the same for anything


def test_images_are_sized_from_their_header() -> None:
    assert tokens.image_size(base64.b64decode(png(800, 600))) == (800, 600)
    assert tokens.image_tokens(png(750, 100)) == 100
    assert tokens.image_tokens(png(4000, 3000)) == tokens.MAX_IMAGE  # scaled down, then capped
    assert tokens.image_tokens("not base64 at all") == tokens.MAX_IMAGE
