"""Packaged data and the offline model: ``load_towns()`` and ``minilm_path()``."""

from .beir import BeirDataset, load_beir
from .models import minilm_path
from .towns import load_towns

__all__ = ["load_towns", "minilm_path", "load_beir", "BeirDataset"]
