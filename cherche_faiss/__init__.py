"""cherche_faiss: Cherche's neural-search API on FAISS indexes.

>>> from cherche_faiss import data, retrieve, rank
>>> documents = data.load_towns()
>>> retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=5)
>>> retriever("bordeaux wine")[0]["id"] in {d["id"] for d in documents if d["title"] == "Bordeaux"}
True

Importing the package is cheap: FAISS, torch and sentence-transformers are
imported the first time they are needed.
"""

from . import (
    compose,
    data,
    distributed,
    encoders,
    evaluate,
    exceptions,
    filters,
    index,
    qa,
    query,
    rank,
    retrieve,
    utils,
)
from ._version import __version__
from .compose import Pipeline
from .config import config_context, get_config, set_config
from .persist import dump_pickle, load, load_pickle, save

__all__ = [
    "__version__",
    "compose",
    "data",
    "distributed",
    "encoders",
    "evaluate",
    "exceptions",
    "filters",
    "index",
    "qa",
    "query",
    "rank",
    "retrieve",
    "utils",
    "Pipeline",
    "set_config",
    "get_config",
    "config_context",
    "save",
    "load",
    "dump_pickle",
    "load_pickle",
]
