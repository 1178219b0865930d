"""Stop-word removal for the BoW targets, ported from the released ``--remove_stop_words``.

FlagEmbedding ``research/LLARA/pretrain/data.py`` turns each target text into
``' '.join(word for word in re.sub(r'[\\W_]+', ' ', text).split() if word.lower() not in stop_words)`` with
NLTK's English list plus ``! , . ?``, then tokenizes it. The list ships with llara
(``llara_cli/data/stopwords_english.txt``, package data): nothing is downloaded at run time.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from functools import lru_cache
from importlib import resources

STOP_WORDS_FILE = "stopwords_english.txt"
COMMENT = "#"
NON_WORD_RUN = re.compile(r"[\W_]+")  # pretrain/data.py: re.sub(r'[\W_]+', ' ', text)


@lru_cache(maxsize=1)
def english_stop_words() -> frozenset[str]:
    """The shipped list (lower case), read once from the package."""
    text = resources.files("llara_cli.data").joinpath(STOP_WORDS_FILE).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith(COMMENT))


def remove_stop_words(text: str, stop_words: Collection[str] | None = None) -> str:
    """``text`` with every non-word run made a space and the stop words dropped (the released cleaning)."""
    stop_words = english_stop_words() if stop_words is None else stop_words
    return " ".join(word for word in NON_WORD_RUN.sub(" ", text).split() if word.lower() not in stop_words)


class StopWordTargets:
    """Rebuilds a side's BoW target ids without stop words: decode, clean, tokenize again (no special tokens)."""

    def __init__(self, tokenizer, stop_words: Collection[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.stop_words = english_stop_words() if stop_words is None else frozenset(stop_words)

    def __call__(self, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        texts = [remove_stop_words(self.tokenizer.decode(list(ids)), self.stop_words) if ids else "" for ids in rows]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [list(ids) if text else [] for text, ids in zip(texts, encoded)]
