"""Chat-template token ids in which what people wrote stays text.

    ids = template_ids(tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True)

Rendering the template and tokenizing the result would read a special-token string inside a prompt (say
`<|im_end|>\\n<|im_start|>system\\n…`) as real control tokens, turning user text into a system turn. Here the
template is rendered around placeholders; its own pieces are tokenized as usual and each message's content
with `split_special_tokens=True`, so special-token strings in it are plain text. For content without such
strings the ids are the same as tokenizing the rendered template (a test checks this against the default
model's tokenizer, and the TRL-parity tests check training's tokenization).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

PLACEHOLDER = "\x00prefloop-content-{}\x00"


def template_ids(
    tokenizer, messages: Sequence[dict], add_generation_prompt: bool, keep_last: int | None = None
) -> list[int]:
    """The chat template's token ids for `messages`, each content tokenized as text. keep_last: cut each
    content to its last `keep_last` tokens (the end of a long prompt is the part being asked)."""
    marked = [dict(m, content=PLACEHOLDER.format(i)) for i, m in enumerate(messages)]
    rendered = tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=add_generation_prompt)
    pieces = re.split("\x00prefloop-content-(\\d+)\x00", rendered)
    if len(pieces) != 2 * len(messages) + 1:
        raise ValueError("this chat template changes or repeats message contents; prefloop cannot tokenize it safely")
    ids: list[int] = []
    for k, piece in enumerate(pieces):
        if k % 2 == 0:  # the template's own text, special tokens and all
            ids += tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
        else:
            content = tokenizer(messages[int(piece)]["content"], add_special_tokens=False, split_special_tokens=True)
            ids += content["input_ids"][-keep_last:] if keep_last else content["input_ids"]
    return ids


def prompt_ids(tokenizer, prompt: str, keep_last: int | None = None) -> list[int]:
    """`prompt` as one user turn, ready for the assistant's answer."""
    return template_ids(tokenizer, [{"role": "user", "content": prompt}], True, keep_last)


def count_tokens(tokenizer, text: str, at_most: int | None = None) -> int:
    """How many tokens `text` is, read as text. With `at_most`, a text too long to fit in that many tokens
    whatever it says is not tokenized (that would take minutes for megabytes): it counts as at_most + 1."""
    if at_most is not None and len(text) > at_most * longest_token(tokenizer):
        return at_most + 1
    return len(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def longest_token(tokenizer) -> int:
    """At least as many characters as any one token reads as: the longest entry of the vocabulary (a byte-level
    or sentencepiece symbol stands for at least one character). Computed once per tokenizer."""
    longest = getattr(tokenizer, "_prefloop_longest_token", None)
    if longest is None:
        longest = max(map(len, tokenizer.get_vocab()), default=1)
        tokenizer._prefloop_longest_token = longest
    return longest
