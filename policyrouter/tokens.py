"""Offline token counting and input truncation.

No tokenizer file is downloaded at run time (tiktoken fetches its encodings on first
use, which a production host behind an egress firewall cannot do). Counts here are
**estimates for every model**: ASCII text at 3.5 characters per token (slightly more
tokens than OpenAI's o200k/cl100k encoders give for English prose and code, so worst-case
budget reservations err on the safe side), every other character as one token (CJK
scripts tokenize at roughly one token per character), plus a fixed per-message overhead
of 4 tokens and 3 for the reply priming, as OpenAI's chat format adds. Providers report
exact usage afterwards; cost is always settled from that. Pass ``token_counter=`` to
``Router`` to plug in an exact tokenizer you ship yourself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from policyrouter.types import Message

CHARS_PER_TOKEN = 3.5
MESSAGE_OVERHEAD = 4
MAX_COUNT = 2**53  # no count above this is believed (nor held exactly by a float)
REPLY_OVERHEAD = 3

TokenCounter = Callable[[str], int]


def count_text(text: str) -> int:
    """Estimated tokens of ``text``."""
    if not text:
        return 0
    if text.isascii():
        return math.ceil(len(text) / CHARS_PER_TOKEN)
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    return math.ceil((len(text) - non_ascii) / CHARS_PER_TOKEN) + non_ascii


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return "" if content is None else str(content)


def count_messages(messages: Sequence[Message], system: str | None = None, counter: TokenCounter = count_text) -> int:
    """Estimated prompt tokens of a chat request."""
    total = REPLY_OVERHEAD
    if system:
        total += MESSAGE_OVERHEAD + counter(system)
    for m in messages:
        total += MESSAGE_OVERHEAD + counter(content_text(m.get("content")))
    return total


def _cut(text: str, keep_tokens: int, strategy: str) -> str:
    """Cut ``text`` to about ``keep_tokens`` tokens (by characters, conservatively)."""
    if keep_tokens <= 0:
        return ""
    keep_chars = int(keep_tokens * CHARS_PER_TOKEN) if text.isascii() else keep_tokens
    if len(text) <= keep_chars:
        return text
    if strategy == "truncate_start":  # drop the start, keep the end
        return text[len(text) - keep_chars :]
    if strategy == "truncate_end":  # keep the start
        return text[:keep_chars]
    marker = " [...] "
    half = max(0, (keep_chars - len(marker)) // 2)
    return text[:half] + marker + text[len(text) - half :]


def truncate(
    messages: Sequence[Message],
    system: str | None,
    max_tokens: int,
    strategy: str,
    counter: TokenCounter = count_text,
) -> tuple[list[Message], int]:
    """Fit a chat under ``max_tokens``; system messages are always kept.

    Older non-system messages are dropped first (never the last one); then the last
    message's text is cut at the start, middle or end. Returns the messages and their
    new count.
    """
    msgs = list(messages)
    count = count_messages(msgs, system, counter)
    while count > max_tokens:
        others = [i for i, m in enumerate(msgs) if m.get("role") != "system"]
        if len(others) > 1:
            del msgs[others[0]]
            count = count_messages(msgs, system, counter)
            continue
        if not others:
            break
        i = others[0]
        text = content_text(msgs[i].get("content"))
        over = count - max_tokens
        keep = max(0, counter(text) - over - 1)
        msgs[i] = {**msgs[i], "content": _cut(text, keep, strategy)}
        new_count = count_messages(msgs, system, counter)
        if new_count >= count:  # cannot shrink further
            break
        count = new_count
    return msgs, count
