"""Atomic writes (``llara_cli.storage.files``): a failed or disk-full write keeps the previous file and no temp."""
from __future__ import annotations

import pytest

from llara_cli.storage.files import atomic_write


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "run.trec"
    target.write_text("previous\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "previous\n"
    assert [path.name for path in tmp_path.iterdir()] == ["run.trec"]


def test_disk_full_during_a_write_is_a_clear_error(tmp_path, monkeypatch):
    import os

    from llara_cli.errors import LlaraError

    target = tmp_path / "out.json"
    target.write_text("previous")

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(LlaraError, match="No space left on device"):
        with atomic_write(target) as handle:
            handle.write("new")
    assert target.read_text() == "previous"


def test_atomic_write_never_replaces_a_special_file_or_writes_under_dev(tmp_path):
    """Issue #28: the API's writers (``write_run``, ``write_json``...) hold the CLI's rule on special files."""
    import os

    from llara_cli.data.runs import write_run
    from llara_cli.errors import UsageError
    from llara_cli.storage.files import write_json

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="is a FIFO, not a regular file"):
        write_json(fifo, {"a": 1})
    with pytest.raises(UsageError, match="not into device or process paths"):
        write_run("/dev/null", {"q1": [("d1", 1.0)]})
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
