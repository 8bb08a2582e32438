"""Packaged data and the offline model: ``load_towns()`` and ``minilm_path()``; ``arxiv_tags()``
reads Cherche's Semanlink data from an installed Cherche."""

from .beir import BeirDataset, load_beir
from .models import minilm_path
from .semanlink import arxiv_tags
from .towns import load_towns

__all__ = ["load_towns", "minilm_path", "load_beir", "BeirDataset", "arxiv_tags"]
