"""Hard-negative fine-tuning of a collection's model on that collection, end to end.

queries (file or self-supervised) -> held-out split -> negatives mined from the collection's own index ->
``fit`` -> a registered model version whose lineage says exactly what it was trained on -> the gate.

Everything a run produces lives in ``KRET_HOME/runs/<run name>/``: the resolved queries and the held-out
split, the mined set (with its sha256), training checkpoints, the held-out BEIR folder, the evaluation
reports and the gate's decision. ``resume`` re-uses the saved split and mined set instead of mining again,
so a resumed run trains on the same bytes the lineage names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kret import __version__ as kret_version
from kret.engine.models import ModelInfo
from kret.engine.search import SearchOptions
from kret.engine.types import ProgressFn
from kret.errors import TrainingError, UserInputError

from .fit import FitConfig, fit, is_main_process
from .gate import GateDecision, check_metric, gate, gate_modes, write_heldout_beir
from .mining import MiningParams, MiningResult, mine_negatives
from .mining_rules import DEFAULT_RULES
from .queries import (
    SELF_SUPERVISED_KINDS,
    CollectionCatalog,
    QueryStats,
    TrainQuery,
    load_queries_file,
    queries_sha256,
    self_supervised_queries,
)
from .runs import check_run_name, runs_dir
from .split import split_queries

if TYPE_CHECKING:
    from kret.api import Kret

__all__ = ["FinetuneResult", "finetune"]


@dataclass
class FinetuneResult:
    run_dir: Path
    parent: ModelInfo
    model: ModelInfo | None  # None on the non-main ranks of a multi-process run
    query_stats: dict[str, Any]
    n_train_queries: int
    n_heldout: int
    mining: MiningResult
    mined_file: Path
    train_stats: dict[str, Any]
    decision: GateDecision | None
    dev_dir: Path | None = None  # the dev split as a BEIR folder, for `kret eval` while choosing settings

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "parent": {"name": self.parent.name, "fingerprint": self.parent.fingerprint},
            "model": None
            if self.model is None
            else {"name": self.model.name, "fingerprint": self.model.fingerprint},
            "queries": self.query_stats,
            "n_train_queries": self.n_train_queries,
            "n_heldout": self.n_heldout,
            "mining": {"params": asdict(self.mining.params), "stats": self.mining.stats.as_dict()},
            "mined_file": str(self.mined_file),
            "mined_sha256": self.mining.sha256,
            "train": self.train_stats,
            "gate": None if self.decision is None else self.decision.as_dict(),
            "dev_dataset": None if self.dev_dir is None else str(self.dev_dir),
        }


def _save_queries(path: Path, queries: Sequence[TrainQuery]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for q in queries:
            fh.write(json.dumps(q.as_dict(), ensure_ascii=False) + "\n")


def _load_queries(path: Path) -> list[TrainQuery]:
    return [TrainQuery(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _validate(
    queries_file: Path | None,
    self_supervised: str | None,
    eval_datasets: Sequence[Path],
    heldout_fraction: float,
    run_name: str,
) -> None:
    if (queries_file is None) == (self_supervised is None):
        raise UserInputError("give either --queries FILE or --self-supervised titles|ict (exactly one)")
    if self_supervised is not None and self_supervised not in SELF_SUPERVISED_KINDS:
        raise UserInputError(f"--self-supervised must be one of {', '.join(SELF_SUPERVISED_KINDS)}")
    if queries_file is not None and not Path(queries_file).is_file():
        raise UserInputError(f"queries file {queries_file} does not exist")
    for p in eval_datasets:
        if not Path(p).is_dir():
            raise UserInputError(f"evaluation dataset {p} is not a folder (expected a BEIR folder)")
    if not 0 <= heldout_fraction < 1:
        raise UserInputError(f"--heldout must be in [0, 1), got {heldout_fraction}")
    check_run_name(run_name)


def finetune(
    kr: Kret,
    *,
    collection: str,
    queries_file: str | Path | None = None,
    self_supervised: str | None = None,
    mode: str = "dense",
    range_min: int = 3,
    range_max: int = 50,
    margin: float = 0.95,
    n_negatives: int = 4,
    strategy: str = "top",
    consistency_top_k: int | None = None,
    heldout_fraction: float = 0.1,
    heldout_by: str = "doc",
    dev_fraction: float = 0.1,
    rules: Sequence[str] | None = None,
    rescaled_max: float = 0.95,
    gate_mode: str = "both",
    run_gate: bool = True,
    max_queries: int | None = None,
    fit_cfg: FitConfig | None = None,
    loss: str | None = None,
    eval_datasets: Sequence[str | Path] = (),
    metric: str = "ndcg@10",
    alpha: float = 0.05,
    force: bool = False,
    run_name: str | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> FinetuneResult:
    """Fine-tune ``collection``'s model with negatives mined from ``collection`` and gate the result.

    ``loss`` overrides ``fit_cfg.loss`` ("mnrl", or "gist" with the parent as guide). The gate's held-out
    set is the ``heldout_fraction`` of the queries split off by whole groups (``heldout_by``: doc, title or a
    metadata key) *before* mining, so none of it is trained on, and a ``dev_fraction`` of the remaining groups
    is set aside as a dev set for choosing hyper-parameters; no document of either group is mined as a
    negative (``kret.trainer.split``). ``rules`` are the mining rules (default ``DEFAULT_RULES``);
    ``gate_mode`` is dense, hybrid or both; ``run_gate=False`` registers the model without evaluating it. Returns what happened, including the gate's decision; ``kret reindex`` is left to the user.
    """
    cfg = fit_cfg or FitConfig()
    if loss is not None:
        cfg.loss = loss
    note = (lambda msg: progress(note=msg)) if progress else (lambda msg: None)
    cfg.validate()
    rules = tuple(rules) if rules is not None else DEFAULT_RULES
    MiningParams(
        mode,
        range_min,
        range_max,
        margin,
        n_negatives,
        strategy,
        consistency_top_k,
        seed,
        rules,
        rescaled_max,
    ).validate()
    run_gate_modes = gate_modes(gate_mode)
    if not 0 <= dev_fraction < 1:
        raise UserInputError(f"--dev must be in [0, 1), got {dev_fraction}")
    qfile = Path(queries_file) if queries_file is not None else None
    evals = [Path(p) for p in eval_datasets]
    run_name = run_name or f"ft-{collection}-{time.strftime('%Y%m%d-%H%M%S')}"
    _validate(qfile, self_supervised, evals, heldout_fraction, run_name)
    check_metric(metric)
    if not 0 < alpha < 1:
        raise UserInputError(f"alpha must be in (0, 1), got {alpha}")
    run_dir = runs_dir(kr) / run_name
    main = is_main_process()
    if main and run_dir.exists() and any(run_dir.iterdir()) and not cfg.resume:
        raise UserInputError(
            f"run folder {run_dir} already exists: pass --resume to continue it or another --run-name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)

    searcher = kr.open(collection)
    try:
        parent: ModelInfo = searcher.embedder.info
        prompts = dict(searcher.embedder.prompts)
        coll_version = searcher.collection.version
        catalog = CollectionCatalog.from_store(searcher.collection.store)
        if not len(catalog):
            raise UserInputError(f"collection {collection!r} has no chunks to mine from")
        q_path, h_path, mined_path = (
            run_dir / "queries.jsonl",
            run_dir / "heldout.jsonl",
            run_dir / "mined.jsonl",
        )
        state_path = run_dir / "queries.meta.json"
        heldout_path = run_dir / "heldout"  # BEIR folder, written with the split so a resume reuses it
        dev_path = run_dir / "dev"
        if cfg.resume and mined_path.is_file() and q_path.is_file() and state_path.is_file():
            note(f"resuming: re-using the split and mined set saved in {run_dir}")
            train_q, heldout = _load_queries(q_path), _load_queries(h_path)
            qstats = json.loads(state_path.read_text(encoding="utf-8"))
            n_dev = int(qstats.get("n_dev", 0))
            mined = MiningResult.load(mined_path)
        else:
            note(f"reading {collection!r}: {len(catalog)} chunks in {len(catalog.by_doc)} documents")
            if qfile is not None:
                queries, stats = load_queries_file(qfile, catalog, embedder=searcher.embedder)
            else:
                assert self_supervised is not None
                queries, stats = self_supervised_queries(
                    catalog, self_supervised, seed=seed, max_queries=max_queries or 20000
                )
            if max_queries is not None and len(queries) > max_queries:
                import random

                keep = sorted(random.Random(seed).sample(range(len(queries)), max_queries))
                stats.add("capped_max_queries", len(queries) - max_queries)
                queries = [queries[i] for i in keep]
            if len(queries) < 2:
                raise UserInputError(
                    f"only {len(queries)} usable training queries ({_counts(stats)}); need at least 2"
                )
            split = split_queries(
                queries,
                catalog,
                heldout_fraction=heldout_fraction,
                dev_fraction=dev_fraction,
                by=heldout_by,
                seed=seed,
            )
            train_q, heldout, dev = split.train, split.heldout, split.dev
            n_dev = len(dev)
            qstats = {
                **stats.as_dict(),
                "queries_sha256": queries_sha256(queries),
                "n_queries": len(queries),
                "n_train": len(train_q),
                "n_heldout": len(heldout),
                "n_dev": len(dev),
                "split": {"by": heldout_by, "seed": seed, **split.counts},
                "heldout_ids": [q.qid for q in heldout],
                "dev_ids": [q.qid for q in dev],
            }
            if main:
                _save_queries(q_path, train_q)
                _save_queries(h_path, heldout)
                _save_queries(run_dir / "dev.jsonl", dev)
                if heldout:
                    write_heldout_beir(catalog, heldout, heldout_path, also_relevant=queries)
                if dev:
                    write_heldout_beir(catalog, dev, dev_path, also_relevant=queries)
            note(
                f"queries: {_counts(stats)}; split by {heldout_by}: {len(train_q)} train, {len(dev)} dev, "
                f"{len(heldout)} held out ({split.counts['groups_heldout']} of {split.counts['groups']} groups); "
                f"{len(split.excluded_docs)} documents of held-out/dev groups are never negatives"
            )
            opts = SearchOptions.from_settings(kr.settings, k=range_max, mode=mode)
            mined = mine_negatives(
                searcher,
                train_q,
                mode=mode,
                range_min=range_min,
                range_max=range_max,
                margin=margin,
                n_negatives=n_negatives,
                strategy=strategy,
                consistency_top_k=consistency_top_k,
                seed=seed,
                rules=rules,
                rescaled_max=rescaled_max,
                exclude_docs=split.excluded_docs,
                catalog=catalog,
                options=opts,
                progress=progress,
            )
            if main:
                mined.save(mined_path)
                state_path.write_text(json.dumps(qstats, ensure_ascii=False, indent=2), encoding="utf-8")
        heldout_dir = None
        if heldout and main:
            if not (heldout_path / "qrels" / "test.tsv").is_file():  # a run resumed from an older layout
                write_heldout_beir(catalog, heldout, heldout_path)
            heldout_dir = heldout_path
    finally:
        searcher.collection.close()
    del searcher, catalog
    kr.release_models()  # the serving copy of the parent is not needed while the torch copy trains

    if progress:
        progress(mining=mined)
    if len(mined.rows) < 2:
        raise TrainingError(
            f"mining left {len(mined.rows)} training rows (stats: {json.dumps(mined.stats.as_dict())}); "
            "widen --range, lower --negatives or add queries"
        )
    final_dir, train_stats = fit(
        parent, mined.rows, cfg, run_dir=run_dir / "fit", prompts=prompts, progress=progress
    )
    if not main:
        return FinetuneResult(
            run_dir, parent, None, qstats, len(train_q), len(heldout), mined, mined_path, train_stats, None
        )

    from kret.evaluators.report import git_commit

    lineage = {
        "kind": "finetune",
        "collection": {"name": collection, "version": coll_version},
        "parent": {"name": parent.name, "fingerprint": parent.fingerprint, "source": parent.source},
        "queries": {k: v for k, v in qstats.items() if k not in ("heldout_ids", "dev_ids")},
        "heldout_ids": qstats.get("heldout_ids", []),
        "dev_ids": qstats.get("dev_ids", []),
        "dev_dataset": str(dev_path) if n_dev else None,
        "mining": {"params": asdict(mined.params), "stats": mined.stats.as_dict()},
        "mined_file": str(mined_path),
        "mined_sha256": mined.sha256,
        "fit_config": cfg.as_dict(),
        "train_stats": train_stats,
        "prompts": prompts,
        "run_dir": str(run_dir),
        "kret_version": kret_version,
        "git_commit": git_commit(),
    }
    model = kr.registry.register(final_dir, base=parent, lineage=lineage, prefix="ft")
    decision = (
        gate(
            kr,
            parent,
            model,
            heldout_dataset=heldout_dir,
            eval_datasets=evals,
            metric=metric,
            alpha=alpha,
            force=force,
            collection=collection,
            out_dir=run_dir / "gate",
            modes=run_gate_modes,
            progress=progress,
        )
        if run_gate and (heldout_dir is not None or evals or force)
        else None
    )
    if decision is None and not run_gate:
        note(f"--no-gate: {model.name} is registered, not evaluated and not promoted")
    elif decision is None:
        note("no held-out queries and no --eval dataset: the gate did not run; the model was not promoted")
    return FinetuneResult(
        run_dir,
        parent,
        kr.registry.get(model.name),
        qstats,
        len(train_q),
        len(heldout),
        mined,
        mined_path,
        train_stats,
        decision,
        dev_path if n_dev else None,
    )


def _counts(stats: QueryStats) -> str:
    return ", ".join(f"{k} {v}" for k, v in stats.counts.items())
