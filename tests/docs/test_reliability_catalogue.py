from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

REFERENCE = re.compile(r"`(?:(tests/[\w/]+\.py)|([\w]+\.py))::(test_\w+)`")


def test_every_catalogue_row_names_tests_that_exist():
    text = (REPO_ROOT / "docs" / "reliability.md").read_text()
    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) >= 30
    missing = []
    for row in rows:
        references = REFERENCE.findall(row)
        assert references, f"row without a test: {row}"
        for full_path, short_name, test_name in references:
            candidates = [REPO_ROOT / full_path] if full_path else list((REPO_ROOT / "tests").rglob(short_name))
            if not any(f"def {test_name}(" in path.read_text() for path in candidates if path.is_file()):
                missing.append(f"{full_path or short_name}::{test_name}")
    assert missing == []
