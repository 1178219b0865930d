"""The two LLaRA prompt families and how a text is laid out as token ids around them.

``paper`` (arXiv 2312.15503, eqs. 4-5):
    EBAE (passage side)  ``{text} The original sentence: </s>``  embedding = last hidden state at ``</s>``
    EBAR (query side)    ``{text} The next sentence: </s>``      embedding = last hidden state at ``</s>``
``flagembedding`` (the authors' released code, FlagEmbedding ``research/LLARA``):
    passage  ``"{text}", summarize the above passage within eight words: <s1>...<s8>``
    query    ``"{text}", predict the following passage within eight words: <s9>...<s16>``
    embedding = mean of the last hidden states of the eight marker tokens.

Queries may instead be laid out with the passage (EBAE) prompt (``query_prompt`` ``ebae`` in ``llara_config.json``,
:class:`QueryPrompt`): a symmetric model, which ``llara adapt`` chooses without labels where the adapted model's
EBAR side is the weaker one (:mod:`llara_cli.training.query_prompt_choice`). Adaptation itself always trains both
prompts.

``</s>`` means the model's own eos token. Suffixes are tokenized on their own (never merged with the text),
so the marker positions are known exactly; the text is truncated to fit ``max_length`` with the prompt.

Layouts (:class:`PromptLayout`, recorded as ``prompt_layout`` in ``llara_config.json``): ``2`` tokenizes each
suffix *with* its markers (or eos), exactly as the released code does (``pretrain/data.py``
``tokenizer(suffix, add_special_tokens=False)``), so the space before the first marker stays a token of its
own -- SentencePiece's lone ``▁`` (Llama-2 id 29871 in the released hard-coded ids), GPT-2 BPE's ``Ġ``.
``1`` (llara before layouts were versioned) tokenized ``suffix.rstrip()`` and dropped that token; model
directories saved without ``prompt_layout`` keep it, so they encode as they were trained.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from enum import Enum, IntEnum
from typing import NamedTuple, TypeVar

from llara_cli.choices import StrChoice
from llara_cli.errors import UsageError

E = TypeVar("E", bound=Enum)


MIN_MAX_LENGTH = 8  # tokens, prompt included: the least a --max-length / --*-max-length may be (the paper
# suffix alone takes ~6; a longer prompt is checked against the real budget where a text is laid out)


def check_max_length(value: int | None, option: str) -> int | None:
    """``value`` if it is None or at least :data:`MIN_MAX_LENGTH`; else a UsageError naming ``option``."""
    if value is not None and value < MIN_MAX_LENGTH:
        raise UsageError(f"{option} must be at least {MIN_MAX_LENGTH}, got {value}")
    return value


class PromptFamily(StrChoice):
    PAPER = "paper"
    FLAGEMBEDDING = "flagembedding"


class Side(str, Enum):
    """Which embedding a prompt yields: passages use EBAE (self), queries use EBAR (next)."""

    PASSAGE = "passage"
    QUERY = "query"


class QueryPrompt(StrChoice):
    """Which prompt a model's queries are laid out with."""

    EBAR = "ebar"  # the paper's: the query prompt, its embedding predicts the next passage
    EBAE = "ebae"  # the passage prompt: queries embedded as passages are (a symmetric model)


def parse_query_prompt(value: str | QueryPrompt) -> QueryPrompt:
    return parse_choice(QueryPrompt, value, "query prompt")


def prompted_side(side: Side, query_prompt: QueryPrompt) -> Side:
    """The side whose prompt a text of ``side`` is laid out with, for a model whose queries get ``query_prompt``."""
    return Side.PASSAGE if side is Side.QUERY and query_prompt is QueryPrompt.EBAE else side


class Segment(int, Enum):
    """Per-token role in a laid-out sequence; the joint attention mask is derived from these."""

    PAD = 0
    SHARED = 1  # prefix + text: visible to every later token
    FIRST_SUFFIX = 2  # the passage (EBAE) suffix
    SECOND_SUFFIX = 3  # the query (EBAR) suffix of a joint sequence: cannot see FIRST_SUFFIX


class PromptLayout(IntEnum):
    """How the suffix before the markers (or eos) is tokenized; see the module docstring."""

    STRIPPED = 1  # ``suffix.rstrip()`` + markers: llara models saved before the layout was versioned
    RELEASED = 2  # ``suffix + markers`` tokenized whole, as the released code: the trailing space token kept


CURRENT_LAYOUT = PromptLayout.RELEASED  # new configs (raw HF models, aliases) get this one
LEGACY_LAYOUT = PromptLayout.STRIPPED  # what a llara_config.json without ``prompt_layout`` was trained with

FLAG_MARKERS_PER_SIDE = 8
FLAG_MARKER_TOKENS = tuple(f"<s{index}>" for index in range(1, 2 * FLAG_MARKERS_PER_SIDE + 1))
EOS_PLACEHOLDER = "</s>"


@dataclass(frozen=True)
class PromptTemplate:
    """A family's text template; ``markers`` are pooled, or the trailing eos when there are none."""

    family: PromptFamily
    prefix: str
    passage_suffix: str
    query_suffix: str
    passage_markers: tuple[str, ...]
    query_markers: tuple[str, ...]

    @property
    def added_tokens(self) -> tuple[str, ...]:
        return self.passage_markers + self.query_markers

    def suffix(self, side: Side) -> str:
        return self.passage_suffix if side is Side.PASSAGE else self.query_suffix

    def markers(self, side: Side) -> tuple[str, ...]:
        return self.passage_markers if side is Side.PASSAGE else self.query_markers

    def render(self, text: str, side: Side) -> str:
        """The prompt as a readable string (for docs and logs; encoding works on token ids)."""
        markers = "".join(self.markers(side)) or EOS_PLACEHOLDER
        return f"{self.prefix}{text}{self.suffix(side)}{markers}"


TEMPLATES: dict[PromptFamily, PromptTemplate] = {
    PromptFamily.PAPER: PromptTemplate(
        family=PromptFamily.PAPER,
        prefix="",
        passage_suffix=" The original sentence: ",
        query_suffix=" The next sentence: ",
        passage_markers=(),
        query_markers=(),
    ),
    PromptFamily.FLAGEMBEDDING: PromptTemplate(
        family=PromptFamily.FLAGEMBEDDING,
        prefix='"',
        passage_suffix='", summarize the above passage within eight words: ',
        query_suffix='", predict the following passage within eight words: ',
        passage_markers=FLAG_MARKER_TOKENS[:FLAG_MARKERS_PER_SIDE],
        query_markers=FLAG_MARKER_TOKENS[FLAG_MARKERS_PER_SIDE:],
    ),
}


def parse_choice(choices: type[E], value: str | E, what: str) -> E:
    """``value`` as a member of the str enum ``choices``; a UsageError listing them otherwise."""
    try:
        return choices(value)
    except ValueError:
        known = ", ".join(choice.value for choice in choices)
        raise UsageError(f"unknown {what} {value!r}: choose one of {known}") from None


def parse_family(name: str | PromptFamily) -> PromptFamily:
    return parse_choice(PromptFamily, name, "prompt family")


def parse_layout(value: int | PromptLayout) -> PromptLayout:
    try:
        return PromptLayout(int(value))
    except (TypeError, ValueError):
        known = ", ".join(str(layout.value) for layout in PromptLayout)
        raise UsageError(f"unknown prompt_layout {value!r} (known: {known}; written by a newer llara?)") from None


def detect_family(vocabulary: Collection[str]) -> PromptFamily | None:
    """The family a tokenizer implies by itself: ``flagembedding`` when it holds all sixteen markers, else None."""
    return PromptFamily.FLAGEMBEDDING if all(marker in vocabulary for marker in FLAG_MARKER_TOKENS) else None


def family_for(requested: PromptFamily | None, own: PromptFamily | None, *, model: str,
               own_source: str, default: PromptFamily = PromptFamily.PAPER) -> PromptFamily:
    """The family to use: the model's ``own`` (its saved config, or its markers) unless none; else ``requested``,
    else ``default`` (``paper``: a plain model is used as it is, with no untrained marker tokens; ``llara adapt``,
    which trains them, asks for ``flagembedding``). A ``requested`` family that contradicts the model's own is a
    UsageError (one line).
    """
    if own is not None and requested is not None and requested is not own:
        raise UsageError(f"model {model} is a {own.value}-family model ({own_source}); "
                         f"it cannot be used with --prompt-family {requested.value}: drop the option")
    return own or requested or default


class PromptedSequence(NamedTuple):
    """One laid-out sequence: token ids, their segments, and the positions pooled for each side."""

    input_ids: list[int]
    segment_ids: list[int]
    pool_positions: dict[Side, list[int]]
    text_span: tuple[int, int]  # [start, end) of the text tokens, for the optional LM loss
    truncated: bool


@dataclass(frozen=True)
class PromptFormat:
    """A template bound to a tokenizer: the token ids around the text, fixed once."""

    template: PromptTemplate
    prefix_ids: tuple[int, ...]
    suffix_ids: dict[Side, tuple[int, ...]]
    pool_offsets: dict[Side, tuple[int, ...]]  # positions inside the suffix whose states are pooled
    query_prompt: QueryPrompt = QueryPrompt.EBAR  # the prompt :meth:`single` lays queries out with

    @property
    def family(self) -> PromptFamily:
        return self.template.family

    @classmethod
    def from_tokenizer(cls, template: PromptTemplate, tokenizer, layout: int | PromptLayout = CURRENT_LAYOUT,
                       query_prompt: str | QueryPrompt = QueryPrompt.EBAR) -> PromptFormat:
        """Tokenize the template's fixed parts; the markers (or eos) must already be single tokens.

        The prefix is ``tokenizer(prefix)`` with the tokenizer's own leading specials (Llama's ``<s>``), as the
        released ``prefix_ids``; the suffix follows ``layout``. ``query_prompt`` is the prompt :meth:`single`
        gives queries (:meth:`joint`, adaptation's layout, always has both).
        """
        layout = parse_layout(layout)
        prefix_ids = tuple(_leading_special_ids(tokenizer)) + tuple(_encode(tokenizer, template.prefix))
        suffix_ids: dict[Side, tuple[int, ...]] = {}
        pool_offsets: dict[Side, tuple[int, ...]] = {}
        for side in Side:
            pooled = tuple(_marker_ids(tokenizer, template.markers(side)))
            words = tuple(_suffix_words(tokenizer, template, side, pooled, layout))
            suffix_ids[side] = words + pooled
            pool_offsets[side] = tuple(range(len(words), len(words) + len(pooled)))
        return cls(template, prefix_ids, suffix_ids, pool_offsets, parse_query_prompt(query_prompt))

    def with_query_prompt(self, query_prompt: str | QueryPrompt) -> PromptFormat:
        """This format with queries laid out with ``query_prompt``."""
        return replace(self, query_prompt=parse_query_prompt(query_prompt))

    def prompt_length(self, *, joint: bool) -> int:
        suffixes = self.suffix_ids.values() if joint else [max(self.suffix_ids.values(), key=len)]
        return len(self.prefix_ids) + sum(len(ids) for ids in suffixes)

    def text_budget(self, max_length: int, *, joint: bool) -> int:
        """How many text tokens fit in ``max_length`` beside the prompt; a non-positive budget is an error."""
        budget = max_length - self.prompt_length(joint=joint)
        if budget <= 0:
            raise UsageError(
                f"--max-length {max_length} is too short for the {self.family.value} prompt "
                f"({self.prompt_length(joint=joint)} tokens without any text)"
            )
        return budget

    def single(self, text_ids: list[int], side: Side, max_length: int) -> PromptedSequence:
        """``prefix + text + suffix``: one embedding, the model's ordinary causal attention. The suffix is the
        prompt of :func:`prompted_side` (a query's own, or the passage's for an ``ebae`` model); the pooled
        positions are keyed by ``side``."""
        budget = self.text_budget(max_length, joint=False)
        kept = text_ids[:budget]
        start = len(self.prefix_ids)
        suffix_start = start + len(kept)
        prompted = prompted_side(side, self.query_prompt)
        input_ids = [*self.prefix_ids, *kept, *self.suffix_ids[prompted]]
        segment_ids = [Segment.SHARED] * suffix_start + [Segment.FIRST_SUFFIX] * len(self.suffix_ids[prompted])
        positions = {side: [suffix_start + offset for offset in self.pool_offsets[prompted]]}
        return PromptedSequence(input_ids, segment_ids, positions, (start, suffix_start), len(kept) < len(text_ids))

    def joint(self, text_ids: list[int], max_length: int) -> PromptedSequence:
        """``prefix + text + passage suffix + query suffix``: both embeddings from one forward pass.

        The query suffix is marked SECOND_SUFFIX so the joint mask hides the passage suffix from it.
        """
        budget = self.text_budget(max_length, joint=True)
        kept = text_ids[:budget]
        start = len(self.prefix_ids)
        first_start = start + len(kept)
        second_start = first_start + len(self.suffix_ids[Side.PASSAGE])
        input_ids = [*self.prefix_ids, *kept, *self.suffix_ids[Side.PASSAGE], *self.suffix_ids[Side.QUERY]]
        segment_ids = (
            [Segment.SHARED] * first_start
            + [Segment.FIRST_SUFFIX] * len(self.suffix_ids[Side.PASSAGE])
            + [Segment.SECOND_SUFFIX] * len(self.suffix_ids[Side.QUERY])
        )
        positions = {
            Side.PASSAGE: [first_start + offset for offset in self.pool_offsets[Side.PASSAGE]],
            Side.QUERY: [second_start + offset for offset in self.pool_offsets[Side.QUERY]],
        }
        return PromptedSequence(input_ids, segment_ids, positions, (start, first_start), len(kept) < len(text_ids))


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _suffix_words(tokenizer, template: PromptTemplate, side: Side, pooled: tuple[int, ...],
                  layout: PromptLayout) -> list[int]:
    """The suffix tokens before the pooled ones: ``suffix + markers`` tokenized whole, minus the markers."""
    suffix = template.suffix(side)
    if layout is PromptLayout.STRIPPED:
        return _encode(tokenizer, suffix.rstrip())
    marker_text = "".join(template.markers(side)) or tokenizer.eos_token
    whole = _encode(tokenizer, suffix + marker_text)
    if whole[len(whole) - len(pooled):] == list(pooled):
        return whole[:len(whole) - len(pooled)]
    return _encode(tokenizer, suffix)  # a tokenizer that does not split its eos out of text: same pieces


def _leading_special_ids(tokenizer) -> list[int]:
    """The special tokens the tokenizer puts before a text (e.g. Llama's ``<s>``), found by comparison."""
    probe = "a"
    with_special = list(tokenizer(probe)["input_ids"])
    without_special = _encode(tokenizer, probe)
    for start in range(len(with_special) - len(without_special) + 1):
        if with_special[start:start + len(without_special)] == without_special:
            return with_special[:start]
    return []


def _marker_ids(tokenizer, markers: tuple[str, ...]) -> list[int]:
    if not markers:
        if tokenizer.eos_token_id is None:
            raise UsageError("the tokenizer has no eos token, which the paper prompt family pools")
        return [tokenizer.eos_token_id]
    ids = tokenizer.convert_tokens_to_ids(list(markers))
    missing = [marker for marker, token_id in zip(markers, ids) if token_id is None or token_id == tokenizer.unk_token_id]
    if missing:
        raise UsageError(f"the tokenizer lacks the marker tokens {', '.join(missing)}; add them with add_marker_tokens")
    return list(ids)


def add_marker_tokens(tokenizer, model, template: PromptTemplate) -> int:
    """Add the family's marker tokens that are missing (only those) and resize the embeddings; returns how many.

    ``model`` None adds them to the tokenizer only (weights not loaded yet: the caller resizes them later).
    """
    vocabulary = tokenizer.get_vocab()
    missing = [token for token in template.added_tokens if token not in vocabulary]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        if model is not None:
            model.resize_token_embeddings(len(tokenizer))
    return len(missing)
