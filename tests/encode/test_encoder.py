"""LlaraEncoder: the pooled states it returns, input order, unit vectors, the two prompts."""
from __future__ import annotations

import numpy as np
import torch

from llara_cli.core.batching import collate_prompted
from llara_cli.core.prompts import PromptFamily, Side
from llara_cli.encode.encoder import LlaraEncoder
from llara_cli.model.config import LlaraConfig
from llara_cli.model.embedding_pass import decoder_of, run_decoder
from tests.conftest import build_tiny_model, build_tiny_tokenizer
from tests.training.test_adaptation_objective import TEXTS, adaptation_setup


def test_flagembedding_embedding_is_the_mean_of_the_eight_marker_states():
    tokenizer, model, prompt_format, _ = adaptation_setup(PromptFamily.FLAGEMBEDDING, "sdpa")
    config = LlaraConfig(prompt_family=PromptFamily.FLAGEMBEDDING, normalize=False)
    encoder = LlaraEncoder(model, tokenizer, config)
    embedding = encoder.encode_passages(TEXTS[:1])[0]
    sequence = prompt_format.single(encoder.tokenize(TEXTS[:1])[0], Side.PASSAGE, 512)
    batch = collate_prompted([sequence], tokenizer.pad_token_id)
    with torch.no_grad():
        hidden = run_decoder(decoder_of(model), batch["input_ids"], batch["segment_ids"], joint=False)[0]
    markers = sequence.pool_positions[Side.PASSAGE]
    assert len(markers) == 8
    assert np.allclose(embedding, hidden[markers].mean(dim=0).numpy(), atol=1e-5)


def test_encoder_returns_input_order_and_unit_vectors_whatever_the_batch_size():
    tokenizer = build_tiny_tokenizer()
    encoder = LlaraEncoder(build_tiny_model(len(tokenizer)), tokenizer, LlaraConfig())
    one_by_one = np.stack([encoder.encode_queries([text])[0] for text in TEXTS])
    batched = encoder.encode_queries(TEXTS, batch_size=2)
    assert np.allclose(one_by_one, batched, atol=1e-5)
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(encoder.encode_passages(TEXTS[:1]), batched[:1])  # EBAE and EBAR prompts differ
