"""The output lock admits one holder: a multi-process stress test, and what a refusal says (issue #28)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from llara_cli.errors import LlaraError
from llara_cli.storage.locks import LOCK_FILE, output_lock, sibling_lock
from tests.conftest import REPO_ROOT

WORKERS = 3
ROUNDS = 1500  # the pid-file lock it replaced overlapped ~3,000 times in 4,500 here
STRESS_WORKER = """
import os, sys, time
from llara_cli.errors import LlaraError
from llara_cli.storage.locks import output_lock
directory, inside, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = overlaps = 0
while held < rounds:
    try:
        with output_lock(directory):
            try:
                marker = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                overlaps += 1  # another process is inside the lock too
            else:
                os.close(marker)
                time.sleep(0.0005)
                os.unlink(inside)
            held += 1
    except LlaraError:
        pass  # refused while another holds it: the lock worked
print(held, overlaps)
"""
HOLDER = """
import sys, time
from llara_cli.storage.locks import output_lock, sibling_lock
lock = output_lock if sys.argv[1] == "directory" else sibling_lock
with lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def hold_lock_in_another_process(kind: str, target) -> subprocess.Popen:
    """A live process holding ``output_lock`` (kind "directory") or ``sibling_lock`` on ``target``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(target)], stdout=subprocess.PIPE, text=True,
                              env=_environment())
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_three_processes_taking_the_lock_in_a_loop_never_overlap(tmp_path):
    directory, inside = tmp_path / "out", tmp_path / "inside"
    workers = [subprocess.Popen([sys.executable, "-c", STRESS_WORKER, str(directory), str(inside), str(ROUNDS)],
                                stdout=subprocess.PIPE, text=True, env=_environment()) for _ in range(WORKERS)]
    results = [tuple(map(int, worker.communicate(timeout=600)[0].split())) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    assert [held for held, _ in results] == [ROUNDS] * WORKERS
    assert sum(overlaps for _, overlaps in results) == 0
    assert not (directory / LOCK_FILE).exists() and not inside.exists()


def test_a_live_holder_is_named_with_its_lock_file(tmp_path):
    holder = hold_lock_in_another_process("directory", tmp_path / "out")
    try:
        with pytest.raises(LlaraError, match=rf"pid {holder.pid}, holding {tmp_path / 'out' / LOCK_FILE}.*stop it"):
            with output_lock(tmp_path / "out"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with output_lock(tmp_path / "out"):  # the kernel released the killed holder's lock
        assert (tmp_path / "out" / LOCK_FILE).read_text() == str(os.getpid())


def test_a_stale_lock_whose_pid_was_reused_does_not_block(tmp_path):
    sibling = tmp_path / ".index.llara.lock"
    sibling.write_text(str(os.getppid()))  # a live process that is not llara, as a recycled pid would be
    with sibling_lock(tmp_path / "index"):
        assert sibling.read_text() == str(os.getpid())
    assert not sibling.exists()


def test_the_lock_is_released_when_the_holder_is_killed(tmp_path):
    holder = hold_lock_in_another_process("sibling", tmp_path / "index")
    holder.kill()
    holder.wait()
    started = time.monotonic()
    with sibling_lock(tmp_path / "index"):
        pass
    assert time.monotonic() - started < 5


def test_a_planted_symlink_as_lock_file_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_FILE).symlink_to(victim)
    with pytest.raises(LlaraError, match="is a symbolic link, not llara's lock file"):
        with output_lock(tmp_path / "out"):
            pass
    assert victim.read_text() == "keep me"


def test_a_fifo_as_lock_file_is_refused_without_blocking(tmp_path):
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / LOCK_FILE)
    with pytest.raises(LlaraError, match="is not a regular file"):
        with output_lock(tmp_path / "out"):
            pass
