"""Fixtures the encode tests share."""
from __future__ import annotations

import json

import pytest


@pytest.fixture
def corpus(tmp_path):
    """A 9-passage jsonl corpus (the texts of ``tests/encode/test_directory.py``)."""
    from tests.encode.test_directory import TEXTS

    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"d{index}", "title": "", "text": text}) + "\n"
                            for index, text in enumerate(TEXTS)))
    return path
