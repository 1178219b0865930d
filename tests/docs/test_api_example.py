from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_the_api_page_example_runs(tiny_model_dir, tmp_path, monkeypatch):
    text = (REPO_ROOT / "docs" / "api.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert 'MODEL = "smollm2-135m"' in snippet
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.replace('MODEL = "smollm2-135m"', f"MODEL = {str(tiny_model_dir)!r}"), "api.md", "exec"), {})
    assert (tmp_path / "api-example.trec").read_text().count(" Q0 ") == 2
