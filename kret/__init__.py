"""kret — Korean retrieval engine for RAG.

The top-level folders of the repository install as sub-packages of this namespace: ``kret.indexer`` (files to
chunks), ``kret.engine`` (embed, store, search), ``kret.evaluators``, ``kret.trainer`` and ``kret.cli``.
"""

__version__ = "0.1.0"
