"""What retrievers and rankers that keep their vectors in a :class:`FaissIndex` share."""

from __future__ import annotations

from typing import Any

from ..exceptions import IncompatibleStateError
from .faiss import FaissIndex

__all__ = ["check_loaded_vectors"]


def check_loaded_vectors(component: Any) -> None:
    """After a load: ``component.index`` is a FaissIndex and its encoders can encode."""
    name = type(component).__name__
    if not isinstance(getattr(component, "index", None), FaissIndex):
        raise IncompatibleStateError(f"the saved index of this {name} is not a FaissIndex.")
    for attribute in ("encoder", "query_encoder"):
        if attribute not in vars(component):
            continue
        encoder = vars(component)[attribute]
        if isinstance(encoder, (str, bytes)) or not callable(getattr(encoder, "encode", None)):  # str.encode is not one
            raise IncompatibleStateError(f"the saved {attribute} of this {name} cannot encode texts.")
