"""Evaluate named pipelines on a BEIR folder and format the results as a table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_recipes", "markdown_table"]


def run_recipes(
    folder: str | Path,
    pipelines: Sequence[str] = ("bm25",),
    model: str | None = None,
    split: str = "test",
    ks: Sequence[int] = (1, 10, 100),
) -> dict[str, Any]:
    """Build each named pipeline (see ``recipes.RECIPES``) on the folder's corpus and evaluate it.

    One encoder serves every recipe of the run and encodes each text once.
    Returns ``{"dataset", "split", "queries", "documents", "ks", "rows"}``,
    one row per pipeline with its metrics and build / search seconds.
    """
    from ..data import load_beir, minilm_path
    from ..encoders import SentenceTransformerEncoder
    from .evaluate import evaluate
    from .recipes import RECIPES, MemoEncoder, build

    dataset = load_beir(folder, split=split)
    encoder = None
    if any(RECIPES.get(name, (None, False))[1] for name in pipelines):
        encoder = MemoEncoder(SentenceTransformerEncoder(model or minilm_path(), normalize_embeddings=True))
    rows = []
    for name in pipelines:
        started = time.perf_counter()
        pipeline = build(name, dataset.corpus, encoder, k=max(ks))
        built = time.perf_counter() - started
        scores = evaluate(pipeline, dataset.queries, dataset.qrels, ks=tuple(ks), show_progress=False)
        rows.append({"pipeline": name, "build_s": built, "search_s": time.perf_counter() - started - built, **scores})
    return {
        "dataset": Path(folder).name,
        "split": split,
        "queries": rows[0]["queries"] if rows else 0,
        "documents": len(dataset.corpus),
        "ks": list(ks),
        "rows": rows,
    }


def markdown_table(report: dict[str, Any]) -> str:
    """The report of :func:`run_recipes` as a markdown table."""
    ks = report["ks"]
    columns = [f"ndcg@{k}" for k in ks] + [f"recall@{k}" for k in ks] + [f"mrr@{10 if 10 in ks else ks[-1]}"]
    lines = [
        f"{report['dataset']} ({report['split']}: {report['queries']} queries, {report['documents']} documents)",
        "",
        "| pipeline | " + " | ".join(columns) + " | build s | search s |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['pipeline'].replace('|', chr(92) + '|')} | "
            + " | ".join(f"{row[c]:.4f}" for c in columns)
            + f" | {row['build_s']:.1f} | {row['search_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"
