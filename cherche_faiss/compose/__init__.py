"""Composition of retrievers and rankers: pipelines (``+``) and fusions (``|``, ``&``, ``*``)."""

from . import fusion
from .combine import Intersection, Union, Vote
from .pipeline import DocumentMap, Pipeline

__all__ = ["Pipeline", "DocumentMap", "Union", "Intersection", "Vote", "fusion"]
