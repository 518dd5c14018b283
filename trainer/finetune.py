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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kret import __version__ as kret_version
from kret.engine.models import ModelInfo
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
from .split import Split, split_queries

if TYPE_CHECKING:
    from kret.api import Kret
    from kret.engine.search import Searcher

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
    collection: str,
    queries_file: str | Path | None,
    self_supervised: str | None,
    eval_datasets: Sequence[str | Path],
    heldout_fraction: float,
    dev_fraction: float,
    metric: str,
    alpha: float,
    run_name: str | None,
) -> tuple[Path | None, list[Path], str]:
    """Refuse every user mistake before the run folder exists, so a typo never leaves a half-made run."""
    if not 0 <= dev_fraction < 1:
        raise UserInputError(f"--dev must be in [0, 1), got {dev_fraction}")
    qfile = Path(queries_file) if queries_file is not None else None
    evals = [Path(p) for p in eval_datasets]
    run_name = run_name or f"ft-{collection}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (qfile is None) == (self_supervised is None):
        raise UserInputError("give either --queries FILE or --self-supervised titles|ict (exactly one)")
    if self_supervised is not None and self_supervised not in SELF_SUPERVISED_KINDS:
        raise UserInputError(f"--self-supervised must be one of {', '.join(SELF_SUPERVISED_KINDS)}")
    if qfile is not None and not Path(qfile).is_file():
        raise UserInputError(f"queries file {qfile} does not exist")
    for p in evals:
        if not Path(p).is_dir():
            raise UserInputError(f"evaluation dataset {p} is not a folder (expected a BEIR folder)")
    if not 0 <= heldout_fraction < 1:
        raise UserInputError(f"--heldout must be in [0, 1), got {heldout_fraction}")
    check_run_name(run_name)
    check_metric(metric)
    if not 0 < alpha < 1:
        raise UserInputError(f"alpha must be in (0, 1), got {alpha}")
    return qfile, evals, run_name


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
    mining = MiningParams(
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
    )
    mining.validate()
    run_gate_modes = gate_modes(gate_mode)
    qfile, evals, run_name = _validate(
        collection,
        queries_file,
        self_supervised,
        eval_datasets,
        heldout_fraction,
        dev_fraction,
        metric,
        alpha,
        run_name,
    )
    files = _RunFiles(runs_dir(kr) / run_name)
    main = is_main_process()
    _open_run_dir(files.dir, main, cfg.resume)

    plan = _DataPlan(
        qfile, self_supervised, max_queries, heldout_fraction, dev_fraction, heldout_by, seed, mining
    )
    data = _collect(kr, collection, files, plan, resume=cfg.resume, main=main, note=note, progress=progress)
    kr.release_models()  # the serving copy of the parent is not needed while the torch copy trains

    if progress:
        progress(mining=data.mined)
    if len(data.mined.rows) < 2:
        raise TrainingError(
            f"mining left {len(data.mined.rows)} training rows (stats: {json.dumps(data.mined.stats.as_dict())}); "
            "widen --range, lower --negatives or add queries"
        )
    final_dir, train_stats = fit(
        data.parent, data.mined.rows, cfg, run_dir=files.dir / "fit", prompts=data.prompts, progress=progress
    )
    if not main:
        return _result(files, data, train_stats, None, None)

    lineage = _lineage(collection, files, data, cfg, train_stats)
    model = kr.registry.register(final_dir, base=data.parent, lineage=lineage, prefix="ft")
    gate_plan = _GatePlan(run_gate, run_gate_modes, evals, metric, alpha, force)
    decision = _gate(kr, collection, files, data, model, gate_plan, note=note, progress=progress)
    return _result(
        files, data, train_stats, kr.registry.get(model.name), decision, files.dev if data.n_dev else None
    )


@dataclass(frozen=True)
class _RunFiles:
    """Every artefact's place in the run folder, named once so a resume reads exactly what was written."""

    dir: Path

    @property
    def queries(self) -> Path:
        return self.dir / "queries.jsonl"

    @property
    def heldout(self) -> Path:
        return self.dir / "heldout.jsonl"

    @property
    def dev_queries(self) -> Path:
        return self.dir / "dev.jsonl"

    @property
    def mined(self) -> Path:
        return self.dir / "mined.jsonl"

    @property
    def state(self) -> Path:
        return self.dir / "queries.meta.json"

    @property
    def heldout_beir(self) -> Path:
        return self.dir / "heldout"  # BEIR folder, written with the split so a resume reuses it

    @property
    def dev(self) -> Path:
        return self.dir / "dev"


@dataclass
class _DataPlan:
    """How training rows are made from the collection; a resumed run ignores all of it and reads its files."""

    qfile: Path | None
    self_supervised: str | None
    max_queries: int | None
    heldout_fraction: float
    dev_fraction: float
    heldout_by: str
    seed: int
    mining: MiningParams


@dataclass
class _Data:
    """What the collection gave the run, kept so the collection can be closed before training starts."""

    parent: ModelInfo
    prompts: dict[str, str]
    coll_version: str
    train_q: list[TrainQuery]
    heldout: list[TrainQuery]
    qstats: dict[str, Any]
    n_dev: int
    mined: MiningResult
    heldout_dir: Path | None


@dataclass
class _GatePlan:
    """Whether and how the new version is judged against its parent."""

    run_gate: bool
    modes: tuple[str, ...]
    evals: list[Path]
    metric: str
    alpha: float
    force: bool


def _open_run_dir(run_dir: Path, main: bool, resume: bool) -> None:
    """Refuse to write over another run's files unless it is being resumed."""
    if main and run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise UserInputError(
            f"run folder {run_dir} already exists: pass --resume to continue it or another --run-name"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


def _collect(
    kr: Kret,
    collection: str,
    files: _RunFiles,
    plan: _DataPlan,
    *,
    resume: bool,
    main: bool,
    note: Callable[[str], None],
    progress: ProgressFn | None,
) -> _Data:
    """Take everything training needs from the collection while it is open, then close it."""
    searcher = kr.open(collection)
    try:
        parent: ModelInfo = searcher.embedder.info
        prompts = dict(searcher.embedder.prompts)
        coll_version = searcher.collection.version
        catalog = CollectionCatalog.from_store(searcher.collection.store)
        if not len(catalog):
            raise UserInputError(f"collection {collection!r} has no chunks to mine from")
        if resume and files.mined.is_file() and files.queries.is_file() and files.state.is_file():
            note(f"resuming: re-using the split and mined set saved in {files.dir}")
            train_q, heldout = _load_queries(files.queries), _load_queries(files.heldout)
            qstats = json.loads(files.state.read_text(encoding="utf-8"))
            n_dev = int(qstats.get("n_dev", 0))
            mined = MiningResult.load(files.mined)
        else:
            note(f"reading {collection!r}: {len(catalog)} chunks in {len(catalog.by_doc)} documents")
            queries, stats = _training_queries(searcher, catalog, plan)
            split, qstats = _split(queries, stats, catalog, files, plan, main=main, note=note)
            train_q, heldout, n_dev = split.train, split.heldout, len(split.dev)
            mined = _mine(kr, searcher, train_q, split.excluded_docs, catalog, plan.mining, progress)
            if main:
                mined.save(files.mined)
                files.state.write_text(json.dumps(qstats, ensure_ascii=False, indent=2), encoding="utf-8")
        heldout_dir = None
        if heldout and main:
            # a run resumed from an older layout has no held-out BEIR folder yet
            if not (files.heldout_beir / "qrels" / "test.tsv").is_file():
                write_heldout_beir(catalog, heldout, files.heldout_beir)
            heldout_dir = files.heldout_beir
    finally:
        searcher.collection.close()
    return _Data(parent, prompts, coll_version, train_q, heldout, qstats, n_dev, mined, heldout_dir)


def _training_queries(
    searcher: Searcher, catalog: CollectionCatalog, plan: _DataPlan
) -> tuple[list[TrainQuery], QueryStats]:
    """Mining needs each query's positive in the collection; a cap is a seeded sample, so reruns agree."""
    if plan.qfile is not None:
        queries, stats = load_queries_file(plan.qfile, catalog, embedder=searcher.embedder)
    else:
        assert plan.self_supervised is not None
        queries, stats = self_supervised_queries(
            catalog, plan.self_supervised, seed=plan.seed, max_queries=plan.max_queries or 20000
        )
    if plan.max_queries is not None and len(queries) > plan.max_queries:
        import random

        keep = sorted(random.Random(plan.seed).sample(range(len(queries)), plan.max_queries))
        stats.add("capped_max_queries", len(queries) - plan.max_queries)
        queries = [queries[i] for i in keep]
    if len(queries) < 2:
        raise UserInputError(
            f"only {len(queries)} usable training queries ({_counts(stats)}); need at least 2"
        )
    return queries, stats


def _split(
    queries: list[TrainQuery],
    stats: QueryStats,
    catalog: CollectionCatalog,
    files: _RunFiles,
    plan: _DataPlan,
    *,
    main: bool,
    note: Callable[[str], None],
) -> tuple[Split, dict[str, Any]]:
    """Hold out whole groups before mining, and save the split, so no held-out query is ever trained on."""
    split = split_queries(
        queries,
        catalog,
        heldout_fraction=plan.heldout_fraction,
        dev_fraction=plan.dev_fraction,
        by=plan.heldout_by,
        seed=plan.seed,
    )
    train_q, heldout, dev = split.train, split.heldout, split.dev
    qstats = {
        **stats.as_dict(),
        "queries_sha256": queries_sha256(queries),
        "n_queries": len(queries),
        "n_train": len(train_q),
        "n_heldout": len(heldout),
        "n_dev": len(dev),
        "split": {"by": plan.heldout_by, "seed": plan.seed, **split.counts},
        "heldout_ids": [q.qid for q in heldout],
        "dev_ids": [q.qid for q in dev],
    }
    if main:
        _save_queries(files.queries, train_q)
        _save_queries(files.heldout, heldout)
        _save_queries(files.dev_queries, dev)
        if heldout:
            write_heldout_beir(catalog, heldout, files.heldout_beir, also_relevant=queries)
        if dev:
            write_heldout_beir(catalog, dev, files.dev, also_relevant=queries)
    note(
        f"queries: {_counts(stats)}; split by {plan.heldout_by}: {len(train_q)} train, {len(dev)} dev, "
        f"{len(heldout)} held out ({split.counts['groups_heldout']} of {split.counts['groups']} groups); "
        f"{len(split.excluded_docs)} documents of held-out/dev groups are never negatives"
    )
    return split, qstats


def _mine(
    kr: Kret,
    searcher: Searcher,
    train_q: list[TrainQuery],
    exclude_docs: set[str],
    catalog: CollectionCatalog,
    m: MiningParams,
    progress: ProgressFn | None,
) -> MiningResult:
    """Mine through the served search settings, so the model learns from the mistakes it makes as served."""
    opts = kr.search_options(k=m.range_max, mode=m.mode)
    return mine_negatives(
        searcher,
        train_q,
        mode=m.mode,
        range_min=m.range_min,
        range_max=m.range_max,
        margin=m.margin,
        n_negatives=m.n_negatives,
        strategy=m.strategy,
        consistency_top_k=m.consistency_top_k,
        seed=m.seed,
        rules=m.rules,
        rescaled_max=m.rescaled_max,
        exclude_docs=exclude_docs,
        catalog=catalog,
        options=opts,
        progress=progress,
    )


def _lineage(
    collection: str, files: _RunFiles, data: _Data, cfg: FitConfig, train_stats: dict[str, Any]
) -> dict[str, Any]:
    """Say exactly what the version was trained on, so it can be traced and re-trained from the same bytes."""
    from kret.evaluators.report import git_commit

    return {
        "kind": "finetune",
        "collection": {"name": collection, "version": data.coll_version},
        "parent": {
            "name": data.parent.name,
            "fingerprint": data.parent.fingerprint,
            "source": data.parent.source,
        },
        "queries": {k: v for k, v in data.qstats.items() if k not in ("heldout_ids", "dev_ids")},
        "heldout_ids": data.qstats.get("heldout_ids", []),
        "dev_ids": data.qstats.get("dev_ids", []),
        "dev_dataset": str(files.dev) if data.n_dev else None,
        "mining": {"params": asdict(data.mined.params), "stats": data.mined.stats.as_dict()},
        "mined_file": str(files.mined),
        "mined_sha256": data.mined.sha256,
        "fit_config": cfg.as_dict(),
        "train_stats": train_stats,
        "prompts": data.prompts,
        "run_dir": str(files.dir),
        "kret_version": kret_version,
        "git_commit": git_commit(),
    }


def _gate(
    kr: Kret,
    collection: str,
    files: _RunFiles,
    data: _Data,
    model: ModelInfo,
    plan: _GatePlan,
    *,
    note: Callable[[str], None],
    progress: ProgressFn | None,
) -> GateDecision | None:
    """Promote the new version only if it beats its parent; say why when there was nothing to judge it on."""
    decision = (
        gate(
            kr,
            data.parent,
            model,
            heldout_dataset=data.heldout_dir,
            eval_datasets=plan.evals,
            metric=plan.metric,
            alpha=plan.alpha,
            force=plan.force,
            collection=collection,
            out_dir=files.dir / "gate",
            modes=plan.modes,
            progress=progress,
        )
        if plan.run_gate and (data.heldout_dir is not None or plan.evals or plan.force)
        else None
    )
    if decision is None and not plan.run_gate:
        note(f"--no-gate: {model.name} is registered, not evaluated and not promoted")
    elif decision is None:
        note("no held-out queries and no --eval dataset: the gate did not run; the model was not promoted")
    return decision


def _result(
    files: _RunFiles,
    data: _Data,
    train_stats: dict[str, Any],
    model: ModelInfo | None,
    decision: GateDecision | None,
    dev_dir: Path | None = None,
) -> FinetuneResult:
    """The same report on every rank; only rank 0 has a registered model, a gate decision and a dev folder."""
    return FinetuneResult(
        files.dir,
        data.parent,
        model,
        data.qstats,
        len(data.train_q),
        len(data.heldout),
        data.mined,
        files.mined,
        train_stats,
        decision,
        dev_dir,
    )


def _counts(stats: QueryStats) -> str:
    return ", ".join(f"{k} {v}" for k, v in stats.counts.items())
