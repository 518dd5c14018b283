"""Training queries for hard-negative fine-tuning, tied to documents of an indexed collection.

Mining needs to know, for every query, which document of the collection is its positive: that document's
chunks must never be mined as negatives, and the held-out evaluation scores it as the relevant document.
So every source of queries is resolved against the collection first:

* ``from_file``: a file of query -> positive, where the positive is a document id, a file path, or a passage
  text (matched to a chunk or document of the collection: exact text first, then a near-identical dense match);
* ``self_supervised``: pairs read from the collection itself: document titles / section headings -> their
  document, and inverse-cloze pairs (one sentence -> the rest of its chunk).

``catalog`` is the collection as both read it; ``records`` the query type and counts. How the queries are
split into train / dev / held-out lives in ``kret.trainer.split``.

Malformed input lines are a user mistake and raise ``DatasetError`` naming the file and line (a silently
shrunk training set is worse than a clear error). Well-formed rows whose positive is not in the collection
(the collection changed, the text was edited) are *skipped and counted* in ``QueryStats``: that is data
drift, not a broken file, and the counts say how much of the file was usable.
"""

from kret.trainer.queries.catalog import ChunkRecord, CollectionCatalog
from kret.trainer.queries.from_file import DENSE_MATCH_THRESHOLD, load_queries_file
from kret.trainer.queries.records import QueryStats, TrainQuery, match_key, normalize_text, queries_sha256
from kret.trainer.queries.self_supervised import SELF_SUPERVISED_KINDS, self_supervised_queries

__all__ = [
    "DENSE_MATCH_THRESHOLD",
    "SELF_SUPERVISED_KINDS",
    "ChunkRecord",
    "CollectionCatalog",
    "QueryStats",
    "TrainQuery",
    "load_queries_file",
    "match_key",
    "normalize_text",
    "queries_sha256",
    "self_supervised_queries",
]
