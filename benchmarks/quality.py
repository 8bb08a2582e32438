"""Retrieval quality on SciFact: every named pipeline of ``cherche-faiss evaluate``.

    python benchmarks/quality.py            # about 4 minutes on 2 cores (MiniLM encodes 5,183 abstracts)

Writes ``results/quality.json`` and ``results/quality.md``; the quality
table in docs/quality.md is this output. Published references: all-MiniLM-L6-v2 exact search
nDCG@10 = 0.645 (MTEB), BM25 = 0.665 (BEIR), Cherche 2.2.1's character-n-gram
BM25 = 0.6815 (measured on this split).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, SCIFACT, environment  # noqa: E402

PIPELINES = ["bm25", "bm25-cherche", "tfidf", "tfidf-sklearn", "encoder", "bm25|encoder", "bm25+encoder"]
KS = [1, 10, 100]


def main() -> int:
    if not SCIFACT.is_dir():
        print(f"SciFact is not at {SCIFACT}: this benchmark needs ../shared/data/scifact.", file=sys.stderr)
        return 1
    from cherche_faiss.evaluate.report import markdown_table, run_recipes

    report = run_recipes(SCIFACT, PIPELINES, ks=KS)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "quality.json").write_text(json.dumps({"environment": environment(), **report}, indent=1) + "\n")
    table = markdown_table(report)
    (RESULTS_DIR / "quality.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
