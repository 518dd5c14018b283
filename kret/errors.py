"""Typed errors of kret.

Library code raises these so that callers (the CLI, the LangChain retriever, a user's script) can tell a
user mistake from a bug. The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``;
anything that is not a ``KretError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class KretError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code: int = 1


class UserInputError(KretError):
    """The user asked for something that cannot be done as asked (bad flag value, empty query...)."""

    exit_code = 2


class ConfigError(UserInputError):
    """Settings (env vars, kret.toml) are invalid or inconsistent."""


class EmptyQueryError(UserInputError):
    """The query has no searchable content."""


class UnknownFilterKeyError(UserInputError):
    """A filter names a payload key that no document in the collection has."""


class ModelError(KretError):
    """A model could not be found, built, loaded or verified."""

    exit_code = 3


class ModelMismatchError(KretError):
    """A collection was built with one model and is being used with another."""

    exit_code = 4


class CollectionNotFoundError(KretError):
    """No collection (index) of that name exists yet."""

    exit_code = 5


class IndexInUseError(KretError):
    """Another kret process holds the embedded index open."""

    exit_code = 6


class StoreError(KretError):
    """The vector store (Qdrant Edge or a Qdrant server) failed or cannot be reached."""

    exit_code = 7


class LoaderError(KretError):
    """One input file could not be read; the indexer records it and goes on."""


class DatasetError(UserInputError):
    """An evaluation or training data file is missing or malformed (message names file and line)."""


class TrainingError(KretError):
    """Training could not start or could not finish."""

    exit_code = 8


class RegistryError(KretError):
    """A model version is unknown, or cannot be removed because a collection uses it."""


class CollectionNameError(UserInputError):
    """A collection name is not a plain name (it would reach the filesystem or the server as a path)."""


class DiskSpaceError(StoreError):
    """Not enough free disk space to write safely: refused before Qdrant maps files it could not back."""

    exit_code = 9


class MissingExtraError(UserInputError):
    """An optional part of kret (an extra such as ``kret[train]``) is not installed; the message names the
    ``pip install`` that adds it."""
