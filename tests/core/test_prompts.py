from __future__ import annotations

import pytest

from llara_cli.core.prompts import (
    FLAG_MARKER_TOKENS,
    TEMPLATES,
    PromptFamily,
    PromptFormat,
    QueryPrompt,
    Segment,
    Side,
    add_marker_tokens,
    parse_family,
    parse_query_prompt,
)
from llara_cli.errors import UsageError
from tests.conftest import build_tiny_model, build_tiny_tokenizer


@pytest.fixture
def paper_format(tiny_tokenizer):
    return PromptFormat.from_tokenizer(TEMPLATES[PromptFamily.PAPER], tiny_tokenizer)


def test_paper_prompt_renders_the_papers_templates():
    template = TEMPLATES[PromptFamily.PAPER]
    assert template.render("Hello.", Side.PASSAGE) == "Hello. The original sentence: </s>"
    assert template.render("Hello.", Side.QUERY) == "Hello. The next sentence: </s>"


def test_flagembedding_prompt_renders_the_released_templates():
    template = TEMPLATES[PromptFamily.FLAGEMBEDDING]
    assert template.render("x", Side.PASSAGE) == (
        '"x", summarize the above passage within eight words: <s1><s2><s3><s4><s5><s6><s7><s8>'
    )
    assert template.render("x", Side.QUERY) == (
        '"x", predict the following passage within eight words: <s9><s10><s11><s12><s13><s14><s15><s16>'
    )


def test_paper_single_sequence_ends_with_eos_and_pools_it(paper_format, tiny_tokenizer):
    text_ids = tiny_tokenizer("the cell", add_special_tokens=False)["input_ids"]
    sequence = paper_format.single(text_ids, Side.PASSAGE, max_length=64)
    assert sequence.input_ids[0] == tiny_tokenizer.bos_token_id
    assert sequence.input_ids[-1] == tiny_tokenizer.eos_token_id
    assert sequence.pool_positions == {Side.PASSAGE: [len(sequence.input_ids) - 1]}
    decoded = tiny_tokenizer.decode(sequence.input_ids)
    assert decoded == "<s> the cell The original sentence : </s>"


def test_joint_sequence_holds_both_suffixes_with_their_segments(paper_format, tiny_tokenizer):
    text_ids = tiny_tokenizer("the cell", add_special_tokens=False)["input_ids"]
    sequence = paper_format.joint(text_ids, max_length=64)
    assert tiny_tokenizer.decode(sequence.input_ids) == (
        "<s> the cell The original sentence : </s> The next sentence : </s>"
    )
    segments = [Segment(segment) for segment in sequence.segment_ids]
    assert segments == [Segment.SHARED] * 3 + [Segment.FIRST_SUFFIX] * 5 + [Segment.SECOND_SUFFIX] * 5
    assert sequence.pool_positions == {Side.PASSAGE: [7], Side.QUERY: [12]}
    assert sequence.text_span == (1, 3)


def test_text_is_truncated_to_fit_the_prompt(paper_format):
    sequence = paper_format.single(list(range(10, 110)), Side.QUERY, max_length=20)
    assert len(sequence.input_ids) == 20 and sequence.truncated


def test_max_length_shorter_than_the_prompt_is_a_clear_error(paper_format):
    with pytest.raises(UsageError, match="too short for the paper prompt"):
        paper_format.joint([10, 11], max_length=8)


def test_flagembedding_family_adds_exactly_sixteen_marker_tokens():
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    before = model.get_input_embeddings().weight.shape[0]
    template = TEMPLATES[PromptFamily.FLAGEMBEDDING]
    assert add_marker_tokens(tokenizer, model, template) == 16
    assert model.get_input_embeddings().weight.shape[0] == before + 16
    assert add_marker_tokens(tokenizer, model, template) == 0  # only when missing
    prompt_format = PromptFormat.from_tokenizer(template, tokenizer)
    markers = tokenizer.convert_tokens_to_ids(list(FLAG_MARKER_TOKENS))
    passage = prompt_format.single([10, 11], Side.PASSAGE, 64)
    assert [passage.input_ids[position] for position in passage.pool_positions[Side.PASSAGE]] == markers[:8]
    joint = prompt_format.joint([10, 11], 64)
    assert [joint.input_ids[position] for position in joint.pool_positions[Side.QUERY]] == markers[8:]


def test_missing_markers_are_reported(tiny_tokenizer):
    with pytest.raises(UsageError, match="lacks the marker tokens"):
        PromptFormat.from_tokenizer(TEMPLATES[PromptFamily.FLAGEMBEDDING], tiny_tokenizer)


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(UsageError, match="paper, flagembedding"):
        parse_family("bert")


def test_ebae_query_prompt_lays_queries_out_as_passages_and_keys_them_as_queries(tiny_tokenizer):
    paper = PromptFormat.from_tokenizer(TEMPLATES[PromptFamily.PAPER], tiny_tokenizer)
    symmetric = paper.with_query_prompt(QueryPrompt.EBAE)
    text_ids = tiny_tokenizer("the cell", add_special_tokens=False)["input_ids"]
    query = symmetric.single(text_ids, Side.QUERY, max_length=64)
    passage = paper.single(text_ids, Side.PASSAGE, max_length=64)
    assert query.input_ids == passage.input_ids
    assert query.pool_positions == {Side.QUERY: passage.pool_positions[Side.PASSAGE]}
    assert paper.single(text_ids, Side.QUERY, max_length=64).input_ids != passage.input_ids


def test_ebae_query_prompt_pools_the_passage_markers_of_the_flagembedding_family(tiny_tokenizer):
    tokenizer = build_tiny_tokenizer()
    add_marker_tokens(tokenizer, None, TEMPLATES[PromptFamily.FLAGEMBEDDING])
    flag = PromptFormat.from_tokenizer(TEMPLATES[PromptFamily.FLAGEMBEDDING], tokenizer, query_prompt="ebae")
    sequence = flag.single(tokenizer("x", add_special_tokens=False)["input_ids"], Side.QUERY, max_length=64)
    pooled = [sequence.input_ids[position] for position in sequence.pool_positions[Side.QUERY]]
    assert tokenizer.convert_ids_to_tokens(pooled) == list(FLAG_MARKER_TOKENS[:8])


def test_the_joint_adaptation_layout_keeps_both_prompts_for_an_ebae_model(paper_format, tiny_tokenizer):
    text_ids = tiny_tokenizer("the cell", add_special_tokens=False)["input_ids"]
    symmetric = paper_format.with_query_prompt(QueryPrompt.EBAE)
    assert symmetric.joint(text_ids, max_length=64) == paper_format.joint(text_ids, max_length=64)


def test_an_unknown_query_prompt_is_refused():
    with pytest.raises(UsageError, match="unknown query prompt 'next'"):
        parse_query_prompt("next")
