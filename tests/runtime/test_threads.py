"""The thread budget: OMP_NUM_THREADS, the affinity mask, the cgroup CPU quota, torchrun's processes per node."""
from __future__ import annotations

import os

import torch

from llara_cli.runtime.threads import cgroup_cpu_limit, configure_threads, parse_cpu_max, thread_budget


def test_cpu_max_lines_parse_to_cpus():
    assert parse_cpu_max("200000 100000") == 2.0
    assert parse_cpu_max("150000 100000") == 1.5
    assert parse_cpu_max("max 100000") is None
    assert parse_cpu_max("garbage") is None


def test_a_cgroup_quota_caps_the_affinity_mask():
    settings = thread_budget({}, affinity=64, cgroup_limit=1.5)
    assert (settings.threads, settings.source, settings.cpus_available) == (2, "cgroup", 2)
    assert thread_budget({}, affinity=2, cgroup_limit=None).threads == 2
    assert thread_budget({}, affinity=2, cgroup_limit=8.0).source == "affinity"


def test_omp_num_threads_set_by_the_user_wins():
    settings = thread_budget({"OMP_NUM_THREADS": "3"}, affinity=16, cgroup_limit=None)
    assert (settings.threads, settings.source) == (3, "OMP_NUM_THREADS")


def test_processes_of_one_node_share_the_cores():
    assert thread_budget({"LOCAL_WORLD_SIZE": "4"}, affinity=16, cgroup_limit=None).threads == 4
    assert thread_budget({"LOCAL_WORLD_SIZE": "4"}, affinity=2, cgroup_limit=None).threads == 1


def test_cgroup_v2_quota_of_the_process_own_group_is_read(tmp_path):
    group = tmp_path / "cgroup" / "job"
    group.mkdir(parents=True)
    (group / "cpu.max").write_text("300000 100000\n")
    proc = tmp_path / "self-cgroup"
    proc.write_text("0::/job\n")
    assert cgroup_cpu_limit(root=tmp_path / "cgroup", proc_cgroup=proc) == 3.0
    (group / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(root=tmp_path / "cgroup", proc_cgroup=proc) is None


def test_configure_threads_sizes_the_loaded_torch_pool(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    before = torch.get_num_threads()
    try:
        settings = configure_threads()
        assert settings.threads == torch.get_num_threads() == 1
        assert os.environ["RAYON_NUM_THREADS"] == "1" and os.environ["TOKENIZERS_PARALLELISM"] == "false"
    finally:
        torch.set_num_threads(before)
