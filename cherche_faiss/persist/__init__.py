"""Loading saved components with clear errors."""

from .pickle import dump_pickle, load_pickle

__all__ = ["dump_pickle", "load_pickle"]
