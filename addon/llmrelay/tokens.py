"""A local answer to `POST /v1/messages/count_tokens`.

Claude's tokenizer is not public, so this counts with OpenAI's o200k BPE (bundled by
`bpe-openai`; `tiktoken` would download its tables at run time and fail offline) over exactly
what the model reads: the system prompt, every message's text, tool calls (name and input as
JSON), tool results, thinking, and each tool definition (name, description, schema as JSON),
plus the few framing tokens each message and tool costs. Images are sized from their PNG,
JPEG, GIF or WebP header by Anthropic's published rule, width × height / 750 tokens after
scaling to at most 1568 pixels on the long side; an image whose size cannot be read counts
as 1600 tokens (the largest an image can cost). Unlike bytes ÷ 4 it neither counts JSON
punctuation and base64 image data as text nor misses how densely code and schemas tokenize;
it is still an estimate, since Claude's own tokenizer splits text differently.
"""

from __future__ import annotations

import base64
import struct
from functools import cache
from typing import Any

import msgspec

from .protocols import anthropic as a

PER_MESSAGE = 4  # role and separators
PER_TOOL = 8  # the framing around each definition
MAX_IMAGE = 1600


@cache
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=())) if text else 0


def count_request(req: a.Request | a.CountTokensRequest) -> int:
    total = count(a.system_text(req.system))
    for message in req.messages:
        total += PER_MESSAGE + _content(message.content)
    for tool in req.tools or ():
        total += PER_TOOL + count(tool.name) + count(tool.description or "")
        if tool.input_schema:
            total += count(bytes(tool.input_schema).decode())
    return max(total, 1)


def _content(content: str | list[a.Block] | None) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count(content)
    return sum(_block(block) for block in content)


def _block(block: a.Block) -> int:
    if isinstance(block, a.TextBlock):
        return count(block.text)
    if isinstance(block, a.ToolUseBlock):
        return PER_TOOL + count(block.name) + count(bytes(block.input).decode())
    if isinstance(block, a.ToolResultBlock):
        return PER_TOOL + _content(block.content)
    if isinstance(block, a.ThinkingBlock):
        return count(block.thinking)
    if isinstance(block, a.ImageBlock):
        source = block.source
        return image_tokens(source.data) if isinstance(source, a.Base64Source) else MAX_IMAGE
    if isinstance(block, a.DocumentBlock):
        data = block.source.get("data")
        return count(data) if block.source.get("type") == "text" and isinstance(data, str) else MAX_IMAGE
    return count(msgspec.json.encode(block).decode())


def image_tokens(data: str) -> int:
    try:
        head = base64.b64decode(data[:64 * 1024 // 3 * 4], validate=False)
        size = image_size(head)
    except (ValueError, struct.error):
        size = None
    if size is None:
        return MAX_IMAGE
    width, height = size
    scale = min(1.0, 1568 / max(width, height, 1))
    return min(MAX_IMAGE, max(1, round(width * scale * height * scale / 750)))


def image_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from the first bytes of a PNG, GIF, WebP or JPEG file."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return struct.unpack(">II", head[16:24])
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", head[6:10])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = head[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", head[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return None
    if head[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(head):
            if head[i] != 0xFF:
                i += 1
                continue
            marker = head[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", head[i + 5 : i + 9])
                return w, h
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            i += 2 + struct.unpack(">H", head[i + 2 : i + 4])[0]
    return None
