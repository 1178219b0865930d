"""The training run config's precision: auto resolved for the device, --bf16 as an alias, recorded in settings."""
from __future__ import annotations

import pytest

from llara_cli.errors import UsageError
from llara_cli.runtime import precision
from llara_cli.training.run_config import TrainingRunConfig, training_arguments
from tests.runtime.test_precision import ZEN3_AVX2, ZEN4


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(precision, "default_device_type", lambda: "cpu")


@pytest.mark.parametrize(("hardware", "expected"), [(ZEN3_AVX2, "fp32"), (ZEN4, "bf16")])
def test_auto_precision_is_resolved_and_recorded(tmp_path, monkeypatch, cpu_only, hardware, expected):
    monkeypatch.setattr(precision, "detect_hardware", lambda device_type="cpu": hardware)
    config = TrainingRunConfig(out_dir=tmp_path / "run", precision="auto", learning_rate=1e-4)
    assert config.precision == expected and config.bf16 == (expected == "bf16")
    assert config.settings()["precision"] == expected
    assert training_arguments(config).bf16 == (expected == "bf16")


def test_bf16_flag_is_an_alias_of_precision_bf16(tmp_path, monkeypatch, cpu_only):
    monkeypatch.setattr(precision, "detect_hardware", lambda device_type="cpu": ZEN4)
    assert TrainingRunConfig(out_dir=tmp_path, bf16=True).precision == "bf16"
    with pytest.raises(UsageError, match="--bf16 contradicts --precision fp16"):
        TrainingRunConfig(out_dir=tmp_path, bf16=True, precision="fp16")


def test_the_library_default_stays_fp32_without_touching_the_hardware(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "detect_hardware", lambda device_type="cpu": pytest.fail("not needed"))
    config = TrainingRunConfig(out_dir=tmp_path)
    assert (config.precision, config.bf16) == ("fp32", False)
