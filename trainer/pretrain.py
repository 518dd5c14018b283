"""Weakly supervised pre-training on Korean Wikipedia (the KoE5-PT recipe), ending in a registered version.

KoE5-PT continued multilingual-e5's contrastive pre-training on Korean Wikipedia title -> body pairs (mixed
1:1 with another pair source) with in-batch negatives only, and gained on Korean retrieval. ``pretrain``
is that recipe sized by budgets: pairs are built streaming from any kowiki export, optionally mixed with
other pair files and consistency-filtered by the base model, written to the run folder with their hash,
trained with ``kret.trainer.fit`` and registered with a lineage that names every input by hash, so a
version can be traced to the exact data, code and settings that made it.

A run lives in ``KRET_HOME/runs/<run_name>``:

    run.json          what was asked (inputs, budgets) and where the run stands
    pairs.jsonl       the exact pairs trained on (sha256 in run.json and in the lineage)
    checkpoints/      trainer checkpoints (the newest two); ``resume=True`` continues from the newest
    final/            the trained model until it is moved into the registry

Resuming with the same run name reuses ``pairs.jsonl`` when its hash still matches, so an interrupted
multi-hour run does not rebuild (or, worse, silently change) its data.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kret.engine.models import ModelInfo, write_json_atomic
from kret.engine.types import ProgressFn
from kret.errors import TrainingError, UserInputError

from .fit import FitConfig, barrier, fit, is_main_process
from .pairs import (
    MixStats,
    Pair,
    PairStats,
    build_title_body_pairs,
    consistency_filter,
    mix_pairs,
    read_pairs_jsonl,
    write_pairs_jsonl,
)
from .runs import check_run_name, runs_dir
from .wiki import FORMATS, detect_format, read_wiki

if TYPE_CHECKING:  # pragma: no cover - typing only
    from kret.api import Kret
    from kret.engine.runtimes.torch_rt import TorchEmbedder

__all__ = ["RUN_FILE", "PAIRS_FILE", "hash_input", "pretrain", "runs_dir"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
PAIRS_FILE = "pairs.jsonl"
REGISTERED_FILE = "REGISTERED"
# Folders up to this size are hashed by content; bigger ones by their listing and file sizes (seconds, not
# minutes, for a full multi-GB dump folder), which still changes when any file is added, removed or resized.
CONTENT_HASH_LIMIT = 512 << 20


# ---------------------------------------------------------------------------------------------------------
# Hashing inputs
# ---------------------------------------------------------------------------------------------------------


def _sha256_file(path: Path, h: Any = None) -> str:
    h = h if h is not None else hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_input(path: Path) -> dict[str, Any]:
    """sha256 of an input file, or of a folder (content when small, listing + sizes when large).

    ``method`` says which, because the two are not comparable: ``content`` changes with any byte,
    ``listing+sizes`` only with file names and sizes.
    """
    path = Path(path)
    if path.is_file():
        return {"sha256": _sha256_file(path), "method": "content", "files": 1, "bytes": path.stat().st_size}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    sizes = [(p.relative_to(path).as_posix(), p.stat().st_size) for p in files]
    total = sum(s for _, s in sizes)
    h = hashlib.sha256()
    if total <= CONTENT_HASH_LIMIT:
        for (rel, size), p in zip(sizes, files, strict=True):
            h.update(f"{rel}\t{size}\n".encode())
            _sha256_file(p, h)
        method = "content"
    else:
        for rel, size in sizes:
            h.update(f"{rel}\t{size}\n".encode())
        method = "listing+sizes"
    return {"sha256": h.hexdigest(), "method": method, "files": len(files), "bytes": total}


# ---------------------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------------------


def _mix_all(
    wiki_pairs: list[Pair], sources: list[tuple[Path, float, list[Pair]]], seed: int
) -> tuple[list[Pair], list[dict[str, Any]]]:
    """Mix every source at its own ratio to the *wiki* pairs (not to the set mixed so far).

    Each source goes through ``mix_pairs`` against the wiki pairs; its sampled pairs are told apart from
    the wiki ones by identity (``mix_pairs`` returns the input objects). When a source is too small for
    its ratio ``mix_pairs`` subsamples the wiki side, and the wiki pairs kept are those every source kept.
    """
    wiki_ids = {id(p) for p in wiki_pairs}
    keep_wiki = set(wiki_ids)
    extra: list[Pair] = []
    report = []
    for i, (path, ratio, pairs) in enumerate(sources):
        ms = MixStats()
        mixed = mix_pairs(wiki_pairs, pairs, ratio, seed + i, stats=ms)
        keep_wiki &= {id(p) for p in mixed if id(p) in wiki_ids}
        extra.extend(p for p in mixed if id(p) not in wiki_ids)
        report.append(
            {
                "path": str(path),
                "ratio": ratio,
                "pairs_in": ms.secondary_in,
                "used": ms.secondary_used,
                "wiki_dropped_for_ratio": ms.primary_dropped,
            }
        )
    out = [p for p in wiki_pairs if id(p) in keep_wiki] + extra
    random.Random(seed).shuffle(out)
    return out, report


def _build_pairs(
    wiki: Path,
    fmt: str,
    *,
    max_pairs: int | None,
    count_tokens: Callable[[str], int],
    token_budget: int,
    min_body_chars: int,
    progress: ProgressFn | None,
) -> tuple[list[Pair], PairStats]:
    stats = PairStats()
    pages = read_wiki(wiki, fmt, stats=stats.read)
    gen: Iterator[Pair] = build_title_body_pairs(
        pages,
        body_token_budget=token_budget,
        count_tokens=count_tokens,
        min_body_chars=min_body_chars,
        stats=stats,
    )
    if max_pairs is not None:
        gen = itertools.islice(gen, max_pairs)
    pairs: list[Pair] = []
    if progress:
        progress(stage="pairs", total=max_pairs)
    for pair in gen:
        pairs.append(pair)
        if progress and len(pairs) % 100 == 0:
            progress(stage="pairs", advance=100)
    if progress:
        progress(stage="pairs", advance=len(pairs) % 100, total=len(pairs))
    return pairs, stats


def _read_run(run_dir: Path) -> dict[str, Any]:
    f = run_dir / RUN_FILE
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot read {f}: {exc}") from None


def _pairs_to_rows(path: Path) -> list[dict[str, str]]:
    return [{"anchor": p.query, "positive": p.positive} for p in read_pairs_jsonl(path)]


# ---------------------------------------------------------------------------------------------------------
# pretrain
# ---------------------------------------------------------------------------------------------------------


def _checked_inputs(
    wiki: Path,
    fmt: str,
    max_pairs: int | None,
    consistency: int | None,
    max_body_tokens: int | None,
    mix: Sequence[tuple[Path, float]],
) -> tuple[Path, str, list[tuple[Path, float]]]:
    """The wiki path, its resolved format and the mix files, after every check a user mistake can fail."""
    wiki = Path(wiki).expanduser()
    if not wiki.exists():
        raise UserInputError(f"--wiki {wiki}: no such file or folder")
    if fmt != "auto" and fmt not in FORMATS:
        raise UserInputError(
            f"unknown Wikipedia format {fmt!r}; expected auto or one of {', '.join(FORMATS)}"
        )
    fmt_resolved = detect_format(wiki) if fmt == "auto" else fmt
    if max_pairs is not None and max_pairs < 2:
        raise UserInputError("max_pairs must be >= 2 (in-batch negatives need at least two pairs)")
    if consistency is not None and consistency < 1:
        raise UserInputError("consistency top-k must be >= 1")
    if max_body_tokens is not None and max_body_tokens < 8:
        raise UserInputError("max_body_tokens must be >= 8")
    mix = [(Path(p).expanduser(), float(r)) for p, r in mix]
    for path, ratio in mix:
        if not path.is_file():
            raise UserInputError(f"--mix {path}: no such file")
        if not ratio > 0:
            raise UserInputError(f"--mix {path}: the ratio must be > 0, got {ratio}")
    return wiki, fmt_resolved, mix


def _open_run(kr: Kret, run_name: str, resume: bool) -> tuple[Path, dict[str, Any]]:
    """The run's folder (created) and what an earlier attempt recorded in it (empty for a new run)."""
    run_dir = runs_dir(kr) / run_name
    previous = _read_run(run_dir)
    if run_dir.exists() and not resume and is_main_process():
        raise UserInputError(
            f"run {run_name!r} exists in {run_dir}: pass --resume to continue it, or another name"
        )
    if previous.get("status") == "registered":
        raise UserInputError(
            f"run {run_name!r} already finished as model {previous.get('version')}; start a new run name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, previous


def pretrain(
    kr: Kret,
    wiki: Path,
    *,
    base: str = "default",
    max_pairs: int | None,
    fit_cfg: FitConfig,
    mix: Sequence[tuple[Path, float]] = (),
    consistency: int | None = None,
    fmt: str = "auto",
    seed: int = 0,
    run_name: str | None = None,
    progress: ProgressFn | None = None,
    set_default: bool = False,
    max_body_tokens: int | None = None,
    min_body_chars: int = 50,
    consistency_sample: int = 1000,
    keep_checkpoints: bool = False,
) -> ModelInfo:
    """Build title->body pairs from ``wiki``, train ``base`` on them, register and return the new version.

    ``mix`` adds other pair files at a ratio to the wiki pairs (1.0 = KoE5-PT's 1:1); ``consistency`` is
    the top-k of the E5/KaLM filter run with the base model (None = off); ``max_body_tokens`` caps the
    positive below the model's own limit (cheaper steps, e.g. on a CPU). ``fit_cfg.resume`` continues the
    run named ``run_name`` from its newest checkpoint. Checkpoints are deleted once the version is
    registered unless ``keep_checkpoints``; the pairs file and run.json stay.
    """
    started = time.perf_counter()
    wiki, fmt_resolved, mix = _checked_inputs(wiki, fmt, max_pairs, consistency, max_body_tokens, mix)
    fit_cfg.validate()
    if fit_cfg.resume and not run_name:
        raise UserInputError("resuming needs the run name of the run to continue (--run-name)")
    run_name = check_run_name(run_name or f"pt-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir, previous = _open_run(kr, run_name, fit_cfg.resume)
    base_info = _resolve_base(kr, base, run_name, previous, progress)
    request = {
        "wiki": str(wiki.resolve()),
        "format": fmt_resolved,
        "max_pairs": max_pairs,
        "max_body_tokens": max_body_tokens,
        "min_body_chars": min_body_chars,
        "mix": [[str(p.resolve()), r] for p, r in mix],
        "consistency": consistency,
        "consistency_sample": consistency_sample,
        "seed": seed,
    }
    emb = _load_embedder(kr, base_info, fit_cfg)
    prompts = dict(emb.prompts)
    token_budget = emb.max_seq_length - emb.prompt_overhead
    if max_body_tokens is not None:
        token_budget = min(token_budget, max_body_tokens)
    pairs_file = run_dir / PAIRS_FILE

    if progress:
        progress(note=f"hashing inputs under {wiki}")
    data_hash = hash_input(wiki)
    run = _Run(
        name=run_name,
        dir=run_dir,
        previous=previous,
        base=base_info,
        wiki=wiki,
        fmt=fmt_resolved,
        mix=mix,
        request=request,
        data_hash=data_hash,
        mix_hashes=[hash_input(p) for p, _ in mix],
        pairs_file=pairs_file,
        token_budget=token_budget,
        prompts=prompts,
    )
    pair_set = _pairs(
        run,
        emb,
        resume=fit_cfg.resume,
        max_pairs=max_pairs,
        min_body_chars=min_body_chars,
        consistency=consistency,
        consistency_sample=consistency_sample,
        seed=seed,
        progress=progress,
    )
    model = emb.model
    del emb

    run_info = _record_run(run, pair_set, fit_cfg, progress)
    final_dir, train_stats = _train(kr, run, fit_cfg, model, progress)
    del model

    if not is_main_process():
        barrier()  # rank 0 registers meanwhile
        return kr.registry.get((run_dir / REGISTERED_FILE).read_text().strip())
    lineage = _lineage(
        run, run_info, pair_set, fit_cfg, train_stats, seed, max_pairs, max_body_tokens, started
    )
    return _register(kr, run, final_dir, lineage, run_info, train_stats, set_default, keep_checkpoints)


@dataclass
class _Run:
    """One run's resolved inputs, named once so every later step records exactly the same values."""

    name: str
    dir: Path
    previous: dict[str, Any]  # what an earlier attempt recorded in run.json (empty for a new run)
    base: ModelInfo
    wiki: Path
    fmt: str
    mix: list[tuple[Path, float]]
    request: dict[str, Any]  # what was asked; a resume must ask the same to reuse the pairs
    data_hash: dict[str, Any]
    mix_hashes: list[dict[str, Any]]
    pairs_file: Path
    token_budget: int
    prompts: dict[str, str]


@dataclass
class _PairSet:
    """The pairs file's hash and the counts that explain it, the same whether built now or reused."""

    sha256: str
    counts: dict[str, Any]
    stats: dict[str, Any]
    mix: list[dict[str, Any]]
    consistency: dict[str, Any] | None
    count: int


def _resolve_base(
    kr: Kret, base: str, run_name: str, previous: dict[str, Any], progress: ProgressFn | None
) -> ModelInfo:
    """The base model, refused when a resumed run started from another one (its checkpoints would not fit)."""
    # "default" means the model new collections get (settings, then the registry's default), as everywhere.
    base_info = kr.resolve_model(
        None if base in ("", "default") else base,
        progress=(lambda msg: progress(note=msg)) if progress else None,
    )
    if previous and previous.get("base", {}).get("fingerprint") not in (None, base_info.fingerprint):
        raise UserInputError(
            f"run {run_name!r} was started from base model {previous['base'].get('name')} "
            f"({previous['base']['fingerprint'][:12]}), not {base_info.short}"
        )
    return base_info


def _load_embedder(kr: Kret, base_info: ModelInfo, fit_cfg: FitConfig) -> TorchEmbedder:
    """One trainable copy of the base serves pair building, the consistency filter and then ``fit``."""
    from kret.engine.runtimes.torch_rt import TorchEmbedder

    # Loaded outside kr's cache because training changes its weights in place: the same model object is
    # handed to fit, which saves loading weights and tokenizer twice. Training needs torch, so this is
    # always the torch runtime whatever ``runtime`` serves.
    emb = TorchEmbedder(
        base_info,
        device=_device(kr.settings.device),
        batch_size=kr.settings.embed_batch_size,
        threads=kr.settings.threads,
    )
    if fit_cfg.matryoshka_dims and max(fit_cfg.matryoshka_dims) > emb.dimension:
        raise UserInputError(
            f"matryoshka dims {fit_cfg.matryoshka_dims}: {base_info.name} embeds in {emb.dimension} dimensions"
        )
    return emb


def _pairs(
    run: _Run,
    emb: TorchEmbedder,
    *,
    resume: bool,
    max_pairs: int | None,
    min_body_chars: int,
    consistency: int | None,
    consistency_sample: int,
    seed: int,
    progress: ProgressFn | None,
) -> _PairSet:
    """The pairs to train on: a resumed run must continue on the very pairs its checkpoints saw."""
    previous = run.previous
    reuse = (
        resume
        and previous.get("request") == run.request
        and previous.get("data", {}).get("sha256") == run.data_hash["sha256"]
        and run.pairs_file.is_file()
        and _sha256_file(run.pairs_file) == previous.get("pairs", {}).get("sha256")
    )
    if reuse:
        pair_set = _PairSet(
            sha256=previous["pairs"]["sha256"],
            counts=previous["pair_counts"],
            stats=previous["pair_stats"],
            mix=previous["mix"],
            consistency=previous["consistency"],
            count=previous["pairs"]["count"],
        )
        if progress:
            progress(
                note=f"resuming run {run.name}: reusing {run.pairs_file} ({pair_set.count:,} pairs, hash matches)"
            )
        return pair_set
    if resume and previous.get("pairs"):
        raise TrainingError(
            f"run {run.name!r}: its pairs file is missing or changed, or the inputs differ from the first "
            "attempt; a checkpoint cannot continue on other data — start a new run name"
        )
    return _new_pairs(
        run,
        emb,
        max_pairs=max_pairs,
        min_body_chars=min_body_chars,
        consistency=consistency,
        consistency_sample=consistency_sample,
        seed=seed,
        progress=progress,
    )


def _new_pairs(
    run: _Run,
    emb: TorchEmbedder,
    *,
    max_pairs: int | None,
    min_body_chars: int,
    consistency: int | None,
    consistency_sample: int,
    seed: int,
    progress: ProgressFn | None,
) -> _PairSet:
    """Build, mix and filter the pairs, then write them: training reads them back from the hashed file."""
    wiki_pairs, stats = _build_pairs(
        run.wiki,
        run.fmt,
        max_pairs=max_pairs,
        count_tokens=_single_counter(emb.count_tokens),
        token_budget=run.token_budget,
        min_body_chars=min_body_chars,
        progress=progress,
    )
    if len(wiki_pairs) < 2:
        raise TrainingError(
            f"{run.wiki}: only {len(wiki_pairs)} usable title/body pair(s) ({stats.summary()})"
        )
    counts = {"wiki_pairs": len(wiki_pairs)}
    pairs = wiki_pairs
    mix_report: list[dict[str, Any]] = []
    if run.mix:
        sources = [(p, r, list(read_pairs_jsonl(p))) for p, r in run.mix]
        pairs, mix_report = _mix_all(wiki_pairs, sources, seed)
        for entry, h in zip(mix_report, run.mix_hashes, strict=True):
            entry["sha256"] = h["sha256"]
        counts["after_mix"] = len(pairs)
    consistency_info: dict[str, Any] | None = None
    if consistency is not None:
        if progress:
            progress(
                note=f"consistency filter: top-{consistency} of {consistency_sample} under {run.base.name}"
            )
        pairs, dropped = consistency_filter(
            pairs,
            emb.encode_queries,
            emb.encode_passages,
            top_k=consistency,
            sample_size=consistency_sample,
            seed=seed,
        )
        consistency_info = {"top_k": consistency, "sample_size": consistency_sample, "dropped": dropped}
        counts["after_consistency"] = len(pairs)
    counts["final"] = len(pairs)
    pair_stats = stats.as_dict()
    # Every rank of a multi-GPU run builds the same list; the atomic rename makes the writes harmless.
    pairs_sha = write_pairs_jsonl(pairs, run.pairs_file)
    return _PairSet(pairs_sha, counts, pair_stats, mix_report, consistency_info, len(pairs))


def _record_run(
    run: _Run, pair_set: _PairSet, fit_cfg: FitConfig, progress: ProgressFn | None
) -> dict[str, Any]:
    """Write run.json before the long training, so an interrupted run can be resumed and traced."""
    run_info: dict[str, Any] = {
        "name": run.name,
        "status": "training",
        "request": run.request,
        "base": {"name": run.base.name, "fingerprint": run.base.fingerprint, "source": run.base.source},
        "data": {"path": str(run.wiki.resolve()), "format": run.fmt, **run.data_hash},
        "pairs": {
            "path": str(run.pairs_file),
            "sha256": pair_set.sha256,
            "count": pair_set.count,
            "token_budget": run.token_budget,
        },
        "pair_stats": pair_set.stats,
        "pair_counts": pair_set.counts,
        "mix": pair_set.mix,
        "consistency": pair_set.consistency,
        "hyperparameters": fit_cfg.as_dict(),
    }
    if is_main_process():
        write_json_atomic(run.dir / RUN_FILE, run_info)
    if progress:
        progress(
            pairs={
                "pair_stats": pair_set.stats,
                "pair_counts": pair_set.counts,
                "mix": pair_set.mix,
                "consistency": pair_set.consistency,
            }
        )
    return run_info


def _train(
    kr: Kret, run: _Run, fit_cfg: FitConfig, model: Any, progress: ProgressFn | None
) -> tuple[Path, dict[str, Any]]:
    """Train on the pairs as written (not the list in memory), with the memory the filter held given back."""
    if fit_cfg.torch_threads is None and kr.settings.threads:
        fit_cfg.torch_threads = kr.settings.threads
    rows = _pairs_to_rows(run.pairs_file)
    gc.collect()
    _free_cuda_cache()  # the consistency filter's activations
    return fit(run.base, rows, fit_cfg, run_dir=run.dir, prompts=run.prompts, progress=progress, model=model)


def _lineage(
    run: _Run,
    run_info: dict[str, Any],
    pair_set: _PairSet,
    fit_cfg: FitConfig,
    train_stats: dict[str, Any],
    seed: int,
    max_pairs: int | None,
    max_body_tokens: int | None,
    started: float,
) -> dict[str, Any]:
    """Name every input by hash, so a registered version can be traced to the data, code and settings."""
    from kret import __version__
    from kret.evaluators.report import git_commit

    return {
        "kind": "pretrain",
        "recipe": "KoE5-PT: Korean Wikipedia title -> body, in-batch negatives",
        "data": [
            {"path": str(run.wiki.resolve()), "format": run.fmt, **run.data_hash},
            *(
                {"path": str(p.resolve()), "format": "pairs-jsonl", **h}
                for (p, _), h in zip(run.mix, run.mix_hashes, strict=True)
            ),
        ],
        "pairs": run_info["pairs"],
        "pair_stats": pair_set.stats,
        "pair_counts": pair_set.counts,
        "mix": pair_set.mix,
        "consistency": pair_set.consistency,
        "prompts": run.prompts,
        "hyperparameters": {
            **fit_cfg.as_dict(),
            "data_seed": seed,
            "max_pairs": max_pairs,
            "max_body_tokens": max_body_tokens,
        },
        "train": train_stats,
        "run": {"name": run.name, "dir": str(run.dir)},
        "kret_version": __version__,
        "git_commit": git_commit(),
        "training_seconds": round(time.perf_counter() - started, 2),
    }


def _register(
    kr: Kret,
    run: _Run,
    final_dir: Path,
    lineage: dict[str, Any],
    run_info: dict[str, Any],
    train_stats: dict[str, Any],
    set_default: bool,
    keep_checkpoints: bool,
) -> ModelInfo:
    """Register on rank 0 and mark the run done, which releases the other ranks waiting at the barrier."""
    info = kr.registry.register(final_dir, base=run.base, lineage=lineage, prefix="pt")
    if set_default:
        kr.registry.set_default(info.name)
    run_info.update(status="registered", version=info.name, train=train_stats)
    write_json_atomic(run.dir / RUN_FILE, run_info)
    (run.dir / REGISTERED_FILE).write_text(info.name + "\n")
    barrier()
    if not keep_checkpoints:
        shutil.rmtree(run.dir / "checkpoints", ignore_errors=True)
    return kr.registry.get(info.name)


def _device(configured: str | None) -> str | None:
    """Each process of a torchrun launch on its own GPU (sentence-transformers would put all on cuda:0)."""
    local_rank = os.environ.get("LOCAL_RANK")
    if configured is None and local_rank not in (None, ""):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(local_rank)}"
    return configured


def _single_counter(count_tokens: Callable[[Sequence[str]], list[int]]) -> Callable[[str], int]:
    return lambda text: count_tokens([text])[0]


def _free_cuda_cache() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
