"""Pooling parity: a text alone, in a right-padded batch, in a left-padded batch and at another batch size gives
the same vector -- the stored golden one -- for both prompt families.

The golden vectors (``golden/pooling_parity.json``) come from :func:`golden_vectors`: the tiny Llama of
``tests/conftest.py`` (``build_tiny_model``, torch seed 0) and its word-level tokenizer, saved and loaded as a llara
model with ``torch.manual_seed(0)`` before the load (the flagembedding marker rows are drawn then), each text
encoded alone. Regenerate them, only when the model or the prompt layout changes on purpose, with
``PYTHONPATH=. python -m tests.encode.test_pooling_parity``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llara_cli.core.batching import collate_prompted, side_key
from llara_cli.core.prompts import Side
from llara_cli.encode.encoder import LlaraEncoder

GOLDEN = Path(__file__).parent / "golden" / "pooling_parity.json"
FAMILIES = ("paper", "flagembedding")
TEXTS = [
    "protein",
    "the protein cell gene cancer patient study results effect treatment disease risk increase",
    "river city music",
    "a model for dense retrieval . the query and the document",
    "king queen war history science paper water energy light computer program network",
]


def load_encoder(model_dir: Path, family: str) -> LlaraEncoder:
    torch.manual_seed(0)  # the flagembedding marker rows are drawn when the embeddings are resized
    return LlaraEncoder.load(str(model_dir), prompt_family=family)


def golden_vectors(model_dir: Path) -> dict[str, dict[str, list[list[float]]]]:
    """``{family: {side: [vector per text]}}``, each text encoded alone (batch size 1, no padding)."""
    vectors: dict[str, dict[str, list[list[float]]]] = {}
    for family in FAMILIES:
        encoder = load_encoder(model_dir, family)
        vectors[family] = {side.value: [encoder.encode([text], side, batch_size=1)[0].tolist() for text in TEXTS]
                           for side in Side}
    return vectors


def _left_padded(encoder: LlaraEncoder, side: Side) -> np.ndarray:
    sequences = [encoder.prompt_format.single(ids, side, encoder.max_length(side)) for ids in encoder.tokenize(TEXTS)]
    collated = collate_prompted(sequences, encoder.tokenizer.pad_token_id, padding_side="left")
    assert (collated["segment_ids"][:, 0] == 0).any()  # some rows really are padded on the left
    batch = {side_key(side, "input_ids"): collated["input_ids"], side_key(side, "segment_ids"): collated["segment_ids"],
             f"{side.value}_pool_mask": collated[f"{side.value}_pool_mask"]}
    with torch.inference_mode():
        return encoder.model.embed(batch, side).numpy()  # (n, dim)


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("side", list(Side), ids=lambda side: side.value)
def test_alone_right_left_padded_and_any_batch_size_give_the_golden_vector(tiny_model_dir, golden, family, side):
    encoder = load_encoder(tiny_model_dir, family)
    expected = np.array(golden[family][side.value], dtype=np.float32)  # (n, dim)
    alone = np.stack([encoder.encode([text], side, batch_size=1)[0] for text in TEXTS])
    right_padded = encoder.encode(TEXTS, side, batch_size=len(TEXTS))  # one right-padded batch
    in_pairs = encoder.encode(TEXTS, side, batch_size=2)
    left_padded = _left_padded(encoder, side)
    for got in (alone, right_padded, in_pairs, left_padded):
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


def test_the_two_sides_and_families_are_different_vectors(golden):
    paper, flag = golden["paper"], golden["flagembedding"]
    assert not np.allclose(paper["query"], paper["passage"], atol=1e-3)
    assert not np.allclose(paper["passage"], flag["passage"], atol=1e-3)


if __name__ == "__main__":  # regenerate the golden file (see the module docstring)
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.conftest import build_tiny_model, build_tiny_tokenizer

    with tempfile.TemporaryDirectory() as directory:
        tokenizer = build_tiny_tokenizer()
        build_tiny_model(len(tokenizer)).save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        GOLDEN.write_text(json.dumps(golden_vectors(Path(directory)), separators=(",", ":")) + "\n")
    print(f"wrote {GOLDEN}")
