"""Token-budget batching across documents (engine/batching.py): order, budget, completion."""

from __future__ import annotations

import random

import pytest

from kret.engine.batching import Completion, padded_tokens, token_batches


def test_batches_cover_every_text_once_sorted_and_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(5, 512) for _ in range(1000)]
    batches = token_batches(lengths, 4096)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)  # one global length order
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 4096
    # short texts travel in big batches, long ones in small
    assert len(batches[0]) > 8 * len(batches[-1])


def test_sorting_removes_most_padding():
    rng = random.Random(1)
    # documents of mixed chunk lengths, as a corpus of short and long passages gives
    lengths = [rng.choice([rng.randint(10, 60), rng.randint(400, 512)]) for _ in range(2000)]
    sorted_cost = padded_tokens(lengths, token_batches(lengths, 32 * 512))
    in_order = [list(range(i, min(i + 32, len(lengths)))) for i in range(0, len(lengths), 32)]
    assert sorted_cost < 0.7 * padded_tokens(lengths, in_order)
    assert sorted_cost <= 1.05 * sum(lengths)  # almost no padding left


def test_over_budget_and_capped_lengths():
    assert token_batches([10, 5000, 10], 100) == [[0, 2], [1]]
    # a text past the model's window costs only the window
    assert token_batches([600, 600], 1024, max_len=512) == [[0, 1]]
    assert token_batches([], 100) == []
    with pytest.raises(ValueError):
        token_batches([1], 0)


def test_completion_reports_each_owner_once_when_its_last_chunk_is_done():
    c = Completion([2, 1, 0, 3])
    assert c.empty() == [2]
    assert c.done([0, 3]) == []
    assert c.done([1, 3, 0]) == [1, 0]
    assert c.done([3]) == [3]
    with pytest.raises(ValueError):
        c.done([1])


def test_vectors_are_those_of_document_order_embedding(tiny_kret, tmp_path):
    """Sorting by length changes which texts share a forward pass, not the vectors: every stored chunk's
    vector equals what embedding the chunks in document order (the old batches) gives."""
    import shutil
    from pathlib import Path

    import numpy as np

    from kret.engine.collection import open_collection

    docs = tmp_path / "docs"
    shutil.copytree(Path(__file__).resolve().parents[2] / "samples" / "ko", docs)
    tiny_kret.settings.embed_batch_tokens = 512  # many small sorted batches
    tiny_kret.index([docs])
    with open_collection(tiny_kret.backend, "default") as coll:
        points = sorted(
            coll.store.scroll_chunks(with_vectors=True),
            key=lambda p: (p.payload["doc_id"], p.payload["chunk_index"]),
        )
        emb = tiny_kret.embedder(tiny_kret._model_of(coll, None))
    from kret.indexer.document import Chunk

    texts = [
        Chunk(
            p.payload["doc_id"],
            p.payload["chunk_index"],
            p.payload["text"],
            p.payload["title"],
            p.payload["heading"],
        ).embed_text
        for p in points
    ]
    lengths = emb.count_tokens(texts)
    assert len(set(lengths)) > 3  # mixed lengths: the sorted order really differs from document order
    old = np.concatenate([emb.encode_passages(texts[i : i + 128]) for i in range(0, len(texts), 128)])
    stored = np.asarray([p.dense for p in points], dtype=np.float32)
    assert np.allclose(stored, old, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("batch_size", "window", "budget"),
    [
        (32, 512, 4096),  # e5 at kret's defaults: capped (was 16,384; bench/embed_budget.py)
        (16, 128, 2048),  # a small batch x window stays as it was
        (32, 8192, 8192),  # a long-window model: one full text per call at least
    ],
)
def test_default_token_budget_is_capped_but_fits_one_full_window(batch_size, window, budget):
    from types import SimpleNamespace

    from kret.engine.ingest import default_batch_tokens

    embedder = SimpleNamespace(batch_size=batch_size, max_seq_length=window)
    assert default_batch_tokens(embedder) == budget
