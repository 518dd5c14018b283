"""``kret tune``: calibrate a collection's hybrid fusion on labelled queries, or undo it."""

from __future__ import annotations

import click

from kret.cli.common import CONTEXT, console, get_kret, out, print_json
from kret.errors import UserInputError


@click.command("tune", context_settings=CONTEXT)
@click.option("-c", "--collection", help="Collection to calibrate (default: settings).")
@click.option(
    "--queries",
    type=click.Path(exists=True, dir_okay=False),
    help="Labelled queries as `kret train finetune` takes them (JSONL/TSV: query -> positive).",
)
@click.option(
    "--dataset",
    type=click.Path(exists=True, file_okay=False),
    help="A BEIR-style folder (queries.jsonl, qrels/<split>.tsv) whose corpus this collection holds.",
)
@click.option("--split", default="dev", show_default=True, help="qrels/<split>.tsv of --dataset.")
@click.option(
    "--folds", default=5, show_default=True, type=click.IntRange(2, 20), help="Cross-validation folds."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fold split.")
@click.option("--dry-run", is_flag=True, help="Measure and report, store nothing.")
@click.option("--force", is_flag=True, help="Store the best candidate even if its gain is not significant.")
@click.option(
    "--reset", is_flag=True, help="Remove the collection's calibration (back to the default fusion)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def tune(ctx, collection, queries, dataset, split, folds, seed, dry_run, force, reset, as_json) -> None:
    """Pick this collection's fusion parameters from labelled queries, by cross-validation.

    Every query runs once per branch (dense, Kiwi BM25); DBSF with one fitted branch weight and the
    query-adaptive fusion are fitted on K-1 folds and scored on the K-th. The best is compared with the
    default fusion (paired test, 95 % CI over queries) and stored in the collection's manifest only when
    the CI lies above 0 (--force stores it anyway). Searches then use it unless --fusion is given.

    \b
    Examples:
      kret tune -c docs --queries labelled.jsonl
      kret tune -c eval-korquad-dev-… --dataset ../data/korquad-dev --split test --dry-run
      kret tune -c docs --reset
    """
    kr = get_kret(ctx)
    if reset:
        if queries or dataset:
            raise UserInputError("--reset takes no --queries/--dataset")
        removed = kr.reset_tuning(collection)
        if as_json:
            print_json({"reset": removed is not None, "removed": removed})
        else:
            console.print(
                "calibration removed" if removed else "nothing to reset: the collection has no calibration"
            )
        return
    result = kr.tune(
        collection,
        queries=queries,
        dataset=dataset,
        split=split,
        folds=folds,
        seed=seed,
        store=not dry_run,
        force=force,
    )
    if as_json:
        print_json(result.to_dict())
        return
    out.print(
        f"collection {result.collection} ({result.queries} labelled queries, {result.folds}-fold CV, "
        f"data sha256 {result.data_sha256[:12]})",
        highlight=False,
    )
    for name, value in result.candidates.items():
        tag = f"default ({result.default})" if name == "default" else name
        out.print(f"  out-of-fold NDCG@10  {tag:<20} {value:.4f}", highlight=False)
    out.print(
        f"best: {result.chosen}  Δ NDCG@10 vs {result.default} {result.delta:+.4f} "
        f"[95 % CI {result.ci_low:+.4f}, {result.ci_high:+.4f}], p = {result.p_value:.3f}",
        highlight=False,
    )
    out.print(f"params: {result.params}", highlight=False)
    state = "stored in the manifest" if result.stored else "not stored" + (" (--dry-run)" if dry_run else "")
    out.print(f"{result.reason}; {state}", highlight=False)
