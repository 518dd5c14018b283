"""``precision = "int8"``: NNCF post-training static quantisation of the fp32 IR, calibrated on Korean text.

Static int8 needs activation ranges, so it needs representative inputs: passages and queries *with the
model's prompts*, because that is what the model sees. Two sources, recorded in the manifest:

- ``collection``: a few hundred passages and query-like texts (titles, first sentences) from the documents
  of the collection being created — the text the model will embed;
- ``samples``: kret's small built-in set (``calibration_ko.jsonl``, derived from ``samples/ko``) when there is
  no collection yet (``kret models pull --precision int8``, a query path, a collection without documents).

The quantised IR lives next to the fp32 IR as ``int8-<sha12>/`` where sha is the hash of the calibration
texts, so different calibrations never overwrite each other and a collection names the exact one it used.
Quantising imports nncf, which imports torch (~20 s); it happens once per calibration, serving does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kret.engine.runtimes.export import IR_XML
from kret.engine.runtimes.tokenizer import FolderTokenizer
from kret.errors import ConfigError, ModelError

SAMPLES_FILE = Path(__file__).with_name("calibration_ko.jsonl")
CALIBRATION_META = "calibration.json"
MAX_CALIBRATION = 300


@dataclass
class Calibration:
    """Texts (passages and queries, without prompts) plus where they came from."""

    source: str  # "collection" | "samples"
    passages: list[str]
    queries: list[str]

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for kind, texts in (("passage", self.passages), ("query", self.queries)):
            for t in texts:
                h.update(f"{kind}\0{t}\n".encode())
        return h.hexdigest()

    def record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "passages": len(self.passages),
            "queries": len(self.queries),
        }


def samples_calibration() -> Calibration:
    rows = [
        json.loads(line) for line in SAMPLES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    return Calibration(
        "samples",
        [r["text"] for r in rows if r["kind"] == "passage"],
        [r["text"] for r in rows if r["kind"] == "query"],
    )


def calibration_from_documents(docs, limit: int = MAX_CALIBRATION) -> Calibration | None:
    """Up to ``limit`` texts from documents (objects with .title and .text): paragraphs as passages, titles
    and first sentences as queries. None when the documents hold too little text to calibrate on."""
    passages: list[str] = []
    queries: list[str] = []
    for d in docs:
        paras = [p.strip() for p in str(d.text).split("\n\n") if len(p.strip()) > 20]
        for p in paras[:3]:
            passages.append(p[:1500])
        title = str(getattr(d, "title", "") or "").strip()
        if title:
            queries.append(title[:200])
        elif paras:
            queries.append(paras[0].split(". ")[0][:200])
        if len(passages) + len(queries) >= limit:
            break
    if len(passages) < 16:
        return None
    n_q = min(len(queries), limit // 4)
    return Calibration("collection", passages[: limit - n_q], queries[:n_q])


def int8_dir(ir_dir: Path, calibration_sha: str) -> Path:
    return ir_dir / f"int8-{calibration_sha[:12]}"


def ensure_int8(
    fp32_xml: Path,
    out_base: Path,
    tokenizer: FolderTokenizer,
    prompts: dict[str, str],
    calibration: Calibration,
    progress=None,
) -> Path:
    """The int8 IR for this calibration under ``out_base``, quantised first when missing; returns model.xml."""
    target = int8_dir(out_base, calibration.sha256)
    if (target / IR_XML).is_file() and (target / CALIBRATION_META).is_file():
        return target / IR_XML
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise ConfigError(
            f"precision 'int8' needs nncf ({exc}); install nncf, or use precision = \"auto\""
        ) from None
    say = progress or (lambda _msg: None)
    say(
        f"quantising to int8 on {len(calibration.passages) + len(calibration.queries)} {calibration.source} texts"
    )
    started = time.perf_counter()
    texts = [prompts.get("passage", "") + t for t in calibration.passages]
    texts += [prompts.get("query", "") + t for t in calibration.queries]
    items = []
    for t in texts:
        ids, mask = tokenizer.encode_batch([t])
        items.append({"input_ids": ids, "attention_mask": mask})
    core = ov.Core()
    try:
        model = core.read_model(str(fp32_xml))
        quantized = nncf.quantize(
            model,
            nncf.Dataset(items),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(items),
        )
    except Exception as exc:
        raise ModelError(
            f'int8 quantisation failed ({type(exc).__name__}: {exc}); use precision = "auto"'
        ) from None
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        ov.save_model(quantized, str(tmp / IR_XML), compress_to_fp16=False)
        meta = dict(
            calibration.record(), nncf=nncf.__version__, seconds=round(time.perf_counter() - started, 1)
        )
        (tmp / CALIBRATION_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        with (tmp / "calibration_texts.jsonl").open("w", encoding="utf-8") as fh:
            for kind, rows in (("passage", calibration.passages), ("query", calibration.queries)):
                for t in rows:
                    fh.write(json.dumps({"kind": kind, "text": t}, ensure_ascii=False) + "\n")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / IR_XML


def find_int8(ir_dir: Path, calibration_sha: str) -> Path | None:
    xml = int8_dir(ir_dir, calibration_sha) / IR_XML
    return xml if xml.is_file() else None


def load_calibration_texts(ir_dir: Path, calibration_sha: str) -> Calibration | None:
    """The texts an existing int8 IR was calibrated on (kept beside it so it can be rebuilt)."""
    f = int8_dir(ir_dir, calibration_sha) / "calibration_texts.jsonl"
    if not f.is_file():
        return None
    meta = json.loads((f.parent / CALIBRATION_META).read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Calibration(
        meta.get("source", "samples"),
        [r["text"] for r in rows if r["kind"] == "passage"],
        [r["text"] for r in rows if r["kind"] == "query"],
    )


def read_record(target: Path) -> dict[str, Any]:
    meta = target / CALIBRATION_META
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
