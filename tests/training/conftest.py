"""Fixtures the training tests share."""
from __future__ import annotations

import pytest


@pytest.fixture()
def corpus(tmp_path):
    """The data tests' 30-document corpus of random sentences."""
    from tests.data.test_adaptation import write_random_corpus

    return write_random_corpus(tmp_path)
