"""Saving and loading components.

* :func:`save` / :func:`load`: a folder of plain files (JSON, ``.npy``, FAISS
  files) with a SHA-256 per file, written atomically; loading runs no code
  from the files and can memory-map the indexes. The format to share and to
  deploy.
* :func:`dump_pickle` / :func:`load_pickle`: pickle with clear errors. Unpickling
  runs code chosen by whoever wrote the file: load only pickles you trust.
"""

from .pickle import dump_pickle, load_pickle
from .safe import load, read_manifest, save

__all__ = ["save", "load", "read_manifest", "dump_pickle", "load_pickle"]
