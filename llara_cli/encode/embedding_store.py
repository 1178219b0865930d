"""The on-disk embedding set written by ``llara encode``: one directory per shard.

A directory holds ``embeddings.npy`` (``(count, dim)``, float32, or float16 with ``--store-dtype fp16``
as ``meta.json``'s ``dtype`` says; loadable with ``allow_pickle=False`` and mmap-able), ``ids.txt``
(one id a line, same order as the rows) and ``meta.json``. ``meta.json``
is written last: a directory without it is an interrupted write, never a silently partial set.

numpy is imported inside the functions that need it, so the CLI root stays fast to start.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llara_cli import __version__
from llara_cli.core.prompts import Side
from llara_cli.data.records import check_id, id_problem
from llara_cli.errors import LlaraError, UsageError
from llara_cli.storage.files import atomic_write, iter_lines, read_json, write_json

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

CONTROL_IN_LINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # control characters other than the newline
EMBEDDINGS_FILE = "embeddings.npy"
IDS_FILE = "ids.txt"
META_FILE = "meta.json"
VECTOR_DTYPE = "float32"
STORE_DTYPES = {"fp32": "float32", "fp16": "float16"}  # --store-dtype -> numpy dtype of embeddings.npy
# Fields that must agree between shards merged into one index (and between queries and an index).
COMPATIBILITY_FIELDS = ("model", "prompt_family", "pooling", "side", "dim", "normalize", "weights_fingerprint")
# Shards of one corpus must also come from the same corpus file and the same split into shards.
SHARD_FIELDS = ("source_sha256", "shard_num")
EXAMPLES_SHOWN = 5
FINITE_CHECK_ROWS = 1 << 16  # rows checked for NaN/inf at a time, so a memory-mapped shard is never copied whole



@dataclass(frozen=True)
class EmbeddingMeta:
    """What produced an embedding set; enough to refuse mixing vectors from different models or prompts.

    Keys of ``meta.json`` this version does not know are kept in ``extra`` and written back unchanged,
    so a newer writer's fields survive a round trip through an older reader.
    """

    model: str
    prompt_family: str
    pooling: str
    side: str
    dim: int
    max_length: int
    normalize: bool
    count: int
    source_sha256: str
    dtype: str = VECTOR_DTYPE
    shard_id: int = 0
    shard_num: int = 1
    llara_version: str = __version__
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.side not in {side.value for side in Side}:
            raise UsageError(f"embedding side must be 'passage' or 'query', got {self.side!r}")
        if not 0 <= self.shard_id < self.shard_num:
            raise UsageError(f"shard_id {self.shard_id} is outside 0..{self.shard_num - 1} (shard_num {self.shard_num})")
        if self.dim < 1 or self.count < 0:
            raise UsageError(f"embedding dim must be positive and count non-negative, "
                             f"got dim {self.dim}, count {self.count}")

    def to_dict(self) -> dict[str, Any]:
        """The ``meta.json`` payload: known fields plus any preserved unknown ones."""
        payload = {key: value for key, value in dataclasses.asdict(self).items() if key != "extra"}
        return {**dict(self.extra), **payload}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any], source: str | Path = META_FILE) -> EmbeddingMeta:
        """Parse a ``meta.json`` payload; a missing or mistyped field raises a UsageError naming ``source``."""
        known = {spec.name: spec for spec in dataclasses.fields(cls) if spec.name != "extra"}
        missing = [
            name for name, spec in known.items()
            if name not in payload and spec.default is dataclasses.MISSING
        ]
        if missing:
            raise UsageError(f"{source}: missing field(s) {', '.join(missing)}")
        values: dict[str, Any] = {}
        for name in known:
            if name not in payload:
                continue
            values[name] = _checked_type(name, payload[name], source)
        extra = {key: value for key, value in payload.items() if key not in known}
        try:
            return cls(**values, extra=extra)
        except UsageError as error:
            raise UsageError(f"{source}: {error}") from None


_INT_FIELDS = frozenset({"dim", "max_length", "count", "shard_id", "shard_num"})
_BOOL_FIELDS = frozenset({"normalize"})


def _checked_type(name: str, value: Any, source: str | Path) -> Any:
    if name in _BOOL_FIELDS:
        expected: type = bool
        valid = isinstance(value, bool)
    elif name in _INT_FIELDS:
        expected = int
        valid = isinstance(value, int) and not isinstance(value, bool)
    else:
        expected = str
        valid = isinstance(value, str)
    if not valid:
        raise UsageError(f"{source}: field {name} must be {expected.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class EmbeddingSet:
    """Vectors, their ids (row order) and the meta that produced them; ``vectors`` may be a read-only mmap."""

    ids: list[str]
    vectors: np.ndarray  # (count, dim) float32 or float16 (meta.dtype); faiss readers widen to float32
    meta: EmbeddingMeta
    path: Path | None = None


def _validate_ids(ids: Sequence[str], where: str | Path) -> None:
    bad = [doc_id for doc_id in ids if not isinstance(doc_id, str) or id_problem(doc_id) is not None]
    if bad:
        raise UsageError(
            f"{where}: ids must be non-empty strings without whitespace (TREC runs and the docid file are "
            f"whitespace-separated); offending: {', '.join(repr(doc_id) for doc_id in bad[:EXAMPLES_SHOWN])}"
        )
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicates: list[str] = []
        for doc_id in ids:
            if doc_id in seen and doc_id not in duplicates:
                duplicates.append(doc_id)
            seen.add(doc_id)
        raise UsageError(f"{where}: duplicate id(s) {', '.join(duplicates[:EXAMPLES_SHOWN])}")


def save_embeddings(
    out_dir: str | Path,
    ids: Sequence[str],
    vectors: np.ndarray,
    meta: EmbeddingMeta,
    *,
    overwrite: bool = False,
    store_dtype: str = "fp32",
) -> EmbeddingMeta:
    """Write an embedding set to ``out_dir``; ``meta.json`` goes last, as the completion marker.

    ``vectors`` is ``(len(ids), meta.dim)``; it is stored as float32 (``store_dtype="fp16"``: float16, half
    the disk) and must be finite after the conversion. An existing complete set is refused unless
    ``overwrite``; rewriting one first removes its ``meta.json`` so a crash halfway never leaves a directory
    that looks complete. Returns the meta as written (its ``dtype`` is the stored one).
    """
    import numpy as np

    if store_dtype not in STORE_DTYPES:
        raise UsageError(f"store dtype must be one of {', '.join(STORE_DTYPES)}, got {store_dtype!r}")

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a directory")
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise UsageError(f"{out_dir}: vectors must be a 2-D array (count, dim), got shape {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise UsageError(f"{out_dir}: vectors must be floating point, got {vectors.dtype}")
    rows, dim = vectors.shape
    if rows != len(ids):
        raise UsageError(f"{out_dir}: {len(ids)} ids for {rows} vectors")
    if rows != meta.count or dim != meta.dim:
        raise UsageError(
            f"{out_dir}: meta says {meta.count} vectors of dim {meta.dim}, got {rows} of dim {dim}"
        )
    _validate_ids(ids, out_dir)
    with np.errstate(over="ignore"):  # overflow (to inf in fp16) is reported just below, as a UsageError
        stored = np.ascontiguousarray(vectors, dtype=STORE_DTYPES[store_dtype])  # (count, dim)
    if not np.isfinite(stored).all():
        raise UsageError(f"{out_dir}: vectors contain NaN or infinite values (after conversion to {stored.dtype})")
    meta_path = out_dir / META_FILE
    if meta_path.exists():
        if not overwrite:
            raise UsageError(f"{out_dir}: already holds a complete embedding set (pass overwrite to replace it)")
        meta_path.unlink()
    written = dataclasses.replace(meta, dtype=STORE_DTYPES[store_dtype])
    with atomic_write(out_dir / EMBEDDINGS_FILE, "wb") as handle:
        np.save(handle, stored, allow_pickle=False)
    with atomic_write(out_dir / IDS_FILE) as handle:
        handle.writelines(f"{doc_id}\n" for doc_id in ids)
    write_json(meta_path, written.to_dict())
    logger.debug("wrote %d embeddings of dim %d to %s", rows, dim, out_dir)
    return written


def load_embedding_meta(directory: str | Path) -> EmbeddingMeta:
    """Read only ``meta.json`` (cheap); a directory without it is an interrupted encode."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such embedding directory")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise UsageError(
            f"{directory}: incomplete embedding set, no {META_FILE} (interrupted encode?); run `llara encode` again"
        )
    payload = read_json(meta_path)
    if not isinstance(payload, dict):
        raise UsageError(f"{meta_path}: expected a JSON object")
    return EmbeddingMeta.from_dict(payload, source=meta_path)


def check_row_major(vectors: np.ndarray, path: str | Path) -> None:
    """Refuse a Fortran-order (column-major) ``.npy``: rows are read as raw row-major bytes, so its vectors
    would be scrambled."""
    if vectors.ndim == 2 and min(vectors.shape) > 1 and not vectors.flags.c_contiguous:
        raise UsageError(f"{path}: stored in Fortran (column-major) order; llara reads row-major arrays: "
                         "save it again with np.save(path, np.ascontiguousarray(vectors))")


def read_ids(path: str | Path) -> list[str]:
    """One id a line, in row order (``ids.txt`` of an embedding set, ``docid`` of an index); a blank line, an id
    with whitespace or a control character, or a repeated id raises naming file and line."""
    ids = [line for _line_number, line in iter_lines(path)]
    joined = "\n".join(ids)
    # one C-speed pass each; an empty or spaced id changes the count, a control character is found by the regex
    if len(joined.split()) != len(ids) or CONTROL_IN_LINES.search(joined):
        for line_number, record_id in enumerate(ids, start=1):
            check_id(record_id, f"{path}:{line_number}")
    if len(set(ids)) != len(ids):
        first_line: dict[str, int] = {}
        for line_number, record_id in enumerate(ids, start=1):
            if record_id in first_line:
                raise UsageError(f"{path}:{line_number}: id {record_id} repeats line {first_line[record_id]}")
            first_line[record_id] = line_number
    return ids


def read_rows(block: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of ``block`` as a new float32 array.

    A memory map (``load_embeddings(mmap=True)``) is read with plain file reads, not through the mapping:
    pages touched through a mapping count as the process's resident memory until the kernel evicts them,
    so indexing a 144 GB shard that way would look like (and compete with) a 144 GB process.
    """
    import numpy as np

    if not isinstance(block, np.memmap) or block.filename is None:
        return np.ascontiguousarray(block[start:stop], dtype=np.float32)  # (stop - start, dim)
    row_bytes = block.shape[1] * block.dtype.itemsize
    with open(block.filename, "rb") as handle:
        handle.seek(block.offset + start * row_bytes)
        rows = np.fromfile(handle, dtype=block.dtype, count=(stop - start) * block.shape[1])
    return rows.reshape(stop - start, block.shape[1]).astype(np.float32, copy=False)  # (stop - start, dim)


def check_finite(vectors: np.ndarray, ids: Sequence[str], where: str | Path) -> None:
    """Refuse NaN or infinite values, naming the first bad row and its id; reads a memory map in blocks, with
    file reads (:func:`read_rows`: mapped pages would stay resident)."""
    import numpy as np

    for start in range(0, len(vectors), FINITE_CHECK_ROWS):
        block = read_rows(vectors, start, min(start + FINITE_CHECK_ROWS, len(vectors)))  # (rows, dim)
        finite_rows = np.isfinite(block).all(axis=1)  # (rows,)
        if not finite_rows.all():
            row = start + int(np.argmin(finite_rows))
            raise UsageError(f"{where}: row {row} (id {ids[row]}) holds NaN or infinite values")


def load_embeddings(directory: str | Path, mmap: bool = True) -> EmbeddingSet:
    """Load and validate an embedding set; any inconsistency raises a UsageError naming the directory.

    With ``mmap`` the vectors are a read-only memory map: shards larger than RAM can be indexed.
    """
    import numpy as np

    directory = Path(directory)
    meta = load_embedding_meta(directory)
    vectors_path, ids_path = directory / EMBEDDINGS_FILE, directory / IDS_FILE
    for required in (vectors_path, ids_path):
        if not required.is_file():
            raise UsageError(f"{directory}: {META_FILE} present but {required.name} missing")
    try:
        vectors = np.load(vectors_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UsageError(f"{vectors_path}: not a readable .npy array ({error})") from None
    if vectors.ndim != 2 or vectors.dtype.name not in STORE_DTYPES.values():
        raise UsageError(
            f"{directory}: {EMBEDDINGS_FILE} must be float32 or float16 of shape (count, dim), "
            f"got {vectors.dtype} of shape {vectors.shape}"
        )
    check_row_major(vectors, vectors_path)
    if vectors.dtype.name != meta.dtype:
        raise UsageError(f"{directory}: {META_FILE} says dtype {meta.dtype} but {EMBEDDINGS_FILE} is {vectors.dtype}")
    ids = read_ids(ids_path)
    rows, dim = vectors.shape
    if len(ids) != rows:
        raise UsageError(f"{directory}: {IDS_FILE} has {len(ids)} ids but {EMBEDDINGS_FILE} has {rows} rows")
    if dim != meta.dim:
        raise UsageError(f"{directory}: {META_FILE} says dim {meta.dim} but {EMBEDDINGS_FILE} has dim {dim}")
    if rows != meta.count:
        raise UsageError(f"{directory}: {META_FILE} says count {meta.count} but {EMBEDDINGS_FILE} has {rows} rows")
    _validate_ids(ids, directory)
    check_finite(vectors, ids, vectors_path)
    return EmbeddingSet(ids=ids, vectors=vectors, meta=meta, path=directory)


def same_model(first: str, second: str) -> bool:
    """Two ``--model`` values name the same model: equal strings, paths to the same directory, or an alias
    and the directory it resolves to."""
    if first == second:
        return True
    first_path, second_path = Path(first).expanduser(), Path(second).expanduser()
    if first_path.is_dir() and second_path.is_dir():
        return first_path.resolve() == second_path.resolve()
    from llara_cli.model.resolve import resolve_model

    try:
        return resolve_model(first).resolve() == resolve_model(second).resolve()
    except LlaraError:  # an unresolvable model cannot be shown to be the same
        return False


def describe_differences(
    first: Mapping[str, Any], second: Mapping[str, Any], fields: Iterable[str]
) -> list[str]:
    """``["dim 576 vs 4096", ...]`` for the given fields on which two meta payloads disagree."""
    differences = []
    for name in fields:
        if name not in first or name not in second:
            continue
        left, right = first[name], second[name]
        equal = same_model(left, right) if name == "model" else left == right
        if not equal:
            differences.append(f"{name} {left!r} vs {right!r}")
    return differences


def check_compatible(metas: Mapping[str | Path, EmbeddingMeta], *, require_all_shards: bool = True) -> None:
    """Refuse embedding sets that cannot share one index; messages name the field and both directories.

    Checks the fields in ``COMPATIBILITY_FIELDS`` and ``SHARD_FIELDS`` against the first set, then that
    shard ids are distinct and (``require_all_shards``) cover ``0..shard_num-1`` (a missing shard would
    silently drop documents; a partial index, one shard of a sharded index, passes ``False``).
    """
    if not metas:
        raise UsageError("no embedding directories given")
    items = list(metas.items())
    first_dir, first_meta = items[0]
    first_payload = first_meta.to_dict()
    for other_dir, other_meta in items[1:]:
        differences = describe_differences(first_payload, other_meta.to_dict(), COMPATIBILITY_FIELDS + SHARD_FIELDS)
        if differences:
            raise UsageError(
                f"cannot combine {first_dir} and {other_dir}: {'; '.join(differences)}"
            )
    owner: dict[int, str | Path] = {}
    for directory, meta in items:
        if meta.shard_id in owner:
            raise UsageError(
                f"{owner[meta.shard_id]} and {directory} are both shard {meta.shard_id} of {meta.shard_num}"
            )
        owner[meta.shard_id] = directory
    missing = sorted(set(range(first_meta.shard_num)) - set(owner))
    if missing and require_all_shards:
        shown = ", ".join(str(shard) for shard in missing[:EXAMPLES_SHOWN])
        raise UsageError(
            f"shard(s) {shown}{' ...' if len(missing) > EXAMPLES_SHOWN else ''} of {first_meta.shard_num} "
            f"missing (given: {', '.join(str(directory) for directory, _meta in items)})"
        )
