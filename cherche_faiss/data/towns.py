"""The towns corpus: short factual passages about eight towns, written for this project."""

from __future__ import annotations

import json
from importlib import resources

__all__ = ["load_towns"]


def load_towns() -> list[dict]:
    """Load the packaged towns corpus (176 passages about 8 towns).

    Returns
    -------
    list of dict
        Documents with fields ``id`` (0..N-1), ``title`` (the town), ``url``
        and ``article`` (one passage). A new list on every call.

    Examples
    --------
    >>> from cherche_faiss import data
    >>> documents = data.load_towns()
    >>> len(documents), sorted(documents[0])
    (176, ['article', 'id', 'title', 'url'])
    >>> sorted({document["title"] for document in documents})[:3]
    ['Bordeaux', 'Lyon', 'Marseille']
    """
    text = resources.files(__package__).joinpath("towns.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
