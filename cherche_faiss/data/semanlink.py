"""Cherche's Semanlink arXiv tagging data set, read from an installed Cherche (it is not ours to ship)."""

from __future__ import annotations

from typing import Any

from ..exceptions import MissingDependencyError

__all__ = ["arxiv_tags"]


def arxiv_tags(
    arxiv_title: bool = True,
    arxiv_summary: bool = True,
    comment: bool = False,
    broader_prefLabel_text: bool = True,
    broader_altLabel_text: bool = True,
    prefLabel_text: bool = True,
    altLabel_text: bool = True,
) -> tuple[list[dict], list[tuple[str, list[dict]]]]:
    """Semanlink's tags and the arXiv papers tagged with them: ``(documents, query_answers)``.

    The documents are the tags (key ``"uri"``); each query is a paper (its
    title, summary and comment as chosen) with the tags it was given as
    answers: the data of ``evaluate.evaluation``'s example in Cherche. The
    data set ships with Cherche, under its own terms, not with this library:
    this function reads it from an installed Cherche (``pip install
    cherche==2.2.1``; its files are ``cherche/data/semanlink/*.json``) and
    returns exactly what Cherche's ``data.arxiv_tags`` returns. The
    arguments are Cherche's.

    Raises
    ------
    MissingDependencyError
        Cherche is not installed.
    """
    try:
        from cherche.data.semanlink import arxiv_tags as cherche_arxiv_tags
    except ImportError:
        raise MissingDependencyError(
            "data.arxiv_tags reads Cherche's Semanlink data set, which cherche_faiss does not ship (the data is "
            "Cherche's). Install Cherche to get it: `pip install cherche==2.2.1` (the files are "
            "cherche/data/semanlink/arxiv.json and tags.json in that package)."
        ) from None
    options: dict[str, Any] = {
        "arxiv_title": arxiv_title,
        "arxiv_summary": arxiv_summary,
        "comment": comment,
        "broader_prefLabel_text": broader_prefLabel_text,
        "broader_altLabel_text": broader_altLabel_text,
        "prefLabel_text": prefLabel_text,
        "altLabel_text": altLabel_text,
    }
    return cherche_arxiv_tags(**options)
