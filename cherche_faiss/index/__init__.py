"""FAISS indexes addressed by document keys, chosen automatically or by factory string,
and tuned to a target recall; ``Faiss``, Cherche's index class, on top of them."""

from .auto import IndexChoice, choose_index
from .compat import Faiss
from .faiss import FaissIndex
from .tuning import TuningResult, tune_search_params

__all__ = ["FaissIndex", "IndexChoice", "choose_index", "TuningResult", "tune_search_params", "Faiss"]
