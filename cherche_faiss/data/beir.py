"""Load a dataset in BEIR's layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import CorruptFileError, InvalidInputError, MissingFileError

__all__ = ["BeirDataset", "load_beir"]


@dataclass
class BeirDataset:
    """A BEIR dataset: documents (``id``, ``title``, ``text``), queries and judgments."""

    corpus: list[dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise MissingFileError(
        f"{folder} has no {name} (nor {name}.gz). A BEIR folder holds corpus.jsonl, queries.jsonl and "
        "qrels/<split>.tsv, optionally gzipped."
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"cannot read {path}: {error}") from None


def _jsonl(path: Path) -> Iterator[dict]:
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorruptFileError(f"{path}, line {number}, is not valid JSON: {error}") from None
        if not isinstance(record, dict) or "_id" not in record:
            raise CorruptFileError(
                f'{path}, line {number}, has no \'_id\' field; BEIR records look like {{"_id": ..., "text": ...}}.'
            )
        yield record


def load_beir(folder: str | Path, split: str = "test", unknown_documents: str = "error") -> BeirDataset:
    """Load a BEIR-format folder.

    Parameters
    ----------
    folder
        Holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``
        (each may be gzipped).
    split
        Which qrels file: ``"test"``, ``"dev"``, ``"train"``.
    unknown_documents
        What to do with judgments naming documents absent from the corpus:
        ``"error"`` (the default: the score would silently be wrong) or
        ``"drop"`` them.

    Returns
    -------
    BeirDataset
        Documents as dicts with ``id``, ``title`` and ``text``; only the
        queries judged in ``split``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder} is not a folder; pass the folder of a BEIR dataset.")
    if unknown_documents not in ("error", "drop"):
        raise InvalidInputError(f"unknown_documents must be 'error' or 'drop', got {unknown_documents!r}.")
    corpus = [
        {"id": str(record["_id"]), "title": record.get("title") or "", "text": record.get("text") or ""}
        for record in _jsonl(_find(folder, "corpus.jsonl"))
    ]
    if not corpus:
        raise InvalidInputError(f"the corpus of {folder} is empty: there is nothing to search.")
    all_queries = {str(record["_id"]): record.get("text") or "" for record in _jsonl(_find(folder, "queries.jsonl"))}
    qrels: dict[str, dict[str, int]] = {}
    path = _find(folder / "qrels", f"{split}.tsv")
    rows = csv.reader(io.StringIO("".join(line for _, line in _lines(path))), delimiter="\t")
    for number, row in enumerate(rows, start=1):
        if number == 1 and row and row[0] == "query-id":
            continue
        if len(row) < 3:
            raise CorruptFileError(f"{path}, row {number}: expected query-id, corpus-id, score; got {row}.")
        try:
            grade = int(float(row[2]))
        except ValueError:
            raise CorruptFileError(f"{path}, row {number}: score {row[2]!r} is not a number.") from None
        qrels.setdefault(row[0], {})[row[1]] = grade
    missing_queries = [query_id for query_id in qrels if query_id not in all_queries]
    if missing_queries:
        raise CorruptFileError(f"{path} judges queries absent from queries.jsonl, e.g. {missing_queries[:3]}.")
    documents = {document["id"] for document in corpus}
    unknown = sorted({doc for judgments in qrels.values() for doc in judgments if doc not in documents})
    if unknown:
        if unknown_documents == "error":
            raise CorruptFileError(
                f"{path} judges {len(unknown)} documents absent from the corpus, e.g. {unknown[:3]}; scores "
                "would be wrong. Fix the files or pass unknown_documents='drop'."
            )
        qrels = {q: {d: g for d, g in judged.items() if d in documents} for q, judged in qrels.items()}
    queries = {query_id: all_queries[query_id] for query_id in qrels}
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels, split=split)
