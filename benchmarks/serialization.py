"""Workload 4, serialisation at scale: pickling a cherche_faiss retriever against
FAISS' own ``write_index`` / ``read_index``.

A ``retrieve.Embedding`` retriever over N vectors (d=384, see
:mod:`embeddings`; smoke 2k, quick 100k, full 1M) is pickled with protocol 5
(what :func:`cherche_faiss.persist.dump_pickle` uses) and with the default
protocol (what ``pickle.dump(retriever, f)`` uses), and compared with a raw
``faiss.IndexFlatIP`` holding the same vectors, written and read with
``faiss.write_index`` / ``faiss.read_index``. Files go to a temporary folder
and stay in the page cache (a warm read, as right after a save). Measured,
each group timed alternately after a warm-up:

* dump: ``pickle.dump`` to a file / ``faiss.write_index``, and the file sizes;
* load in this process: ``pickle.loads`` of the bytes already in memory /
  ``faiss.read_index`` of the file;
* load in a fresh process: ``pickle.load`` / ``faiss.read_index``, timed inside
  the child after it has imported numpy, faiss and cherche_faiss (so the
  figure is deserialisation only), and the child's whole wall time as seen
  from here (interpreter start and imports included).

Target: pickle load within 1.5x of ``read_index``. Each loaded copy must answer
16 queries exactly as the original does (same keys, same similarities).

    python benchmarks/serialization.py --size quick
"""

from __future__ import annotations

import gc
import json
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Config,
    alternate,
    child_reporter,
    format_ms,
    format_ratio,
    median,
    peak_rss_bytes,
    pyplot,
    ratio,
    record,
    run_alone,
    save_figure,
    summary,
)
from embeddings import dataset  # noqa: E402

WORKLOAD = "serialization"
K = 10
CHECK_QUERIES = 16
DEFAULT = pickle.DEFAULT_PROTOCOL
SIDES: dict[str, str] = {
    "pickle5": "pickle, protocol 5",
    "pickle_default": f"pickle, protocol {DEFAULT} (default)",
    "faiss": "faiss write/read_index",
}
PICKLES = ("pickle5", "pickle_default")
OPERATIONS: dict[str, str] = {
    "dump": "dump (ms)",
    "load": "load, this process (ms)",
    "load_child": "load, fresh process (ms)",
    "child_wall": "fresh process, wall (ms)",
}

# Run in a fresh interpreter: imports first, then time the load alone, then answer the check queries.
CHILD_CODE = """\
import json, pickle, sys, time
import numpy as np
import faiss
import cherche_faiss.retrieve
kind, path, queries_path, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
queries = np.load(queries_path)
start = time.perf_counter()
if kind == "faiss":
    loaded = faiss.read_index(path)
else:
    with open(path, "rb") as handle:
        loaded = pickle.load(handle)
load_s = time.perf_counter() - start
if kind == "faiss":
    scores, ids = loaded.search(queries, k)
    answer = [[[int(i), float(s)] for i, s in zip(row_ids, row_scores)] for row_ids, row_scores in zip(ids, scores)]
else:
    answer = [[[hit["id"], hit["similarity"]] for hit in row] for row in loaded(queries, k=k)]
print(json.dumps({"load_s": load_s, "answer": answer}))
"""


def size_for(config: Config) -> int:
    """Number of vectors for ``config.size``."""
    return 2_000 if config.smoke else 1_000_000 if config.full else 100_000


def _hits_answer(retriever: Any, queries: np.ndarray) -> list:
    return [[[hit["id"], hit["similarity"]] for hit in row] for row in retriever(queries, k=K)]


def _faiss_answer(index: Any, queries: np.ndarray) -> list:
    scores, ids = index.search(queries, K)
    return [[[int(i), float(s)] for i, s in zip(row_ids, row_scores)] for row_ids, row_scores in zip(ids, scores)]


def _child(kind: str, path: Path, queries_path: Path, reports: list[dict]) -> Callable[[], None]:
    """A case that loads ``path`` in a fresh interpreter and appends the child's report to ``reports``."""
    return child_reporter(
        [sys.executable, "-c", CHILD_CODE, kind, str(path), str(queries_path), str(K)], f"{kind} load", reports
    )


def run(config: Config) -> list[dict]:
    """Time dump, in-process load and fresh-process load of a retriever and of a raw FAISS index.

    Returns
    -------
    list of dict
        One record from :func:`_common.record`.
    """
    import faiss

    from cherche_faiss import retrieve

    n = size_for(config)
    data = dataset(n, config)
    d = data.documents.shape[1]
    documents = [{"id": i} for i in range(n)]
    retriever = retrieve.Embedding(key="id", k=K).add(documents, embeddings_documents=data.documents)
    flat = faiss.IndexFlatIP(d)
    flat.add(data.documents)
    source = data.source
    queries = np.ascontiguousarray(data.queries[:CHECK_QUERIES])
    del data
    gc.collect()
    expected = {"retriever": _hits_answer(retriever, queries), "faiss": _faiss_answer(flat, queries)}

    with tempfile.TemporaryDirectory(prefix="cherche_faiss_bench_") as folder:
        folder_path = Path(folder)
        paths = {name: folder_path / f"{name}.bin" for name in SIDES}
        queries_path = folder_path / "queries.npy"
        np.save(queries_path, queries)

        def pickle_dump(protocol: int, path: Path) -> Callable[[], None]:
            def dump() -> None:
                with open(path, "wb") as handle:
                    pickle.dump(retriever, handle, protocol=protocol)

            return dump

        dumps = {
            "pickle5": pickle_dump(5, paths["pickle5"]),
            "pickle_default": pickle_dump(DEFAULT, paths["pickle_default"]),
            "faiss": lambda: faiss.write_index(flat, str(paths["faiss"])),
        }
        samples = {"dump": alternate(dumps, config.repeats, config.warmup)}
        sizes = {name: path.stat().st_size for name, path in paths.items()}

        # In this process: the pickles as bytes in memory, the FAISS file from the page cache.
        blobs = {name: paths[name].read_bytes() for name in ("pickle5", "pickle_default")}
        loaded: dict[str, Any] = {}

        def loads(name: str) -> Callable[[], None]:
            def load() -> None:
                loaded[name] = pickle.loads(blobs[name])

            return load

        def read() -> None:
            loaded["faiss"] = faiss.read_index(str(paths["faiss"]))

        in_process = {"pickle5": loads("pickle5"), "pickle_default": loads("pickle_default"), "faiss": read}
        samples["load"] = alternate(in_process, config.repeats, config.warmup)
        identical = {
            "load": {
                "pickle5": _hits_answer(loaded["pickle5"], queries) == expected["retriever"],
                "pickle_default": _hits_answer(loaded["pickle_default"], queries) == expected["retriever"],
                "faiss": _faiss_answer(loaded["faiss"], queries) == expected["faiss"],
            }
        }
        blobs.clear()  # free the copies before the fresh-process runs
        loaded.clear()
        gc.collect()

        # In fresh processes, the load timed inside the child; the process wall time by alternate.
        reports: dict[str, list[dict]] = {name: [] for name in SIDES}
        children = {
            name: _child("faiss" if name == "faiss" else "pickle", paths[name], queries_path, reports[name])
            for name in SIDES
        }
        samples["child_wall"] = alternate(children, config.repeats, config.warmup)
        samples["load_child"] = {
            name: [report["load_s"] for report in reports[name][-config.repeats :]] for name in SIDES
        }
        identical["load_child"] = {
            name: all(
                report["answer"] == expected["faiss" if name == "faiss" else "retriever"] for report in reports[name]
            )
            for name in SIDES
        }

    medians = {
        operation: {name: median(values) for name, values in by_side.items()} for operation, by_side in samples.items()
    }
    ratios = {
        operation: {name: ratio(medians[operation][name], medians[operation]["faiss"]) for name in PICKLES}
        for operation in medians
    }
    ratios["size"] = {name: ratio(sizes[name], sizes["faiss"]) for name in PICKLES}
    params = {"n": n, "d": d, "k": K, "repeats": config.repeats, "default_protocol": DEFAULT, "source": source}
    return [
        record(
            WORKLOAD,
            f"N={n}",
            params,
            median_s=medians,
            summary={
                operation: {name: summary(values) for name, values in by_side.items()}
                for operation, by_side in samples.items()
            },
            size_bytes=sizes,
            ratio_vs_faiss=ratios,
            identical=identical,
            peak_rss_bytes=peak_rss_bytes(),
        )
    ]


# -- reporting -------------------------------------------------------------------------------------
_ms, _x = format_ms, format_ratio


def markdown(records: list[dict]) -> str:
    """A section with one table per N: operations as rows, sides and ratios as columns."""
    records = [r for r in records if r["workload"] == WORKLOAD]
    if not records:
        return "### Serialisation at scale\n\nNo results.\n"
    parts = ["### Serialisation at scale\n"]
    for r in records:
        p, m = r["params"], r["metrics"]
        header = [f"N = {p['n']:,}", *SIDES.values(), "protocol 5 / FAISS", f"protocol {p['default_protocol']} / FAISS"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for operation, label in OPERATIONS.items():
            cells = [label] + [_ms(m["median_s"][operation][name]) for name in SIDES]
            cells += [_x(m["ratio_vs_faiss"][operation][name]) for name in PICKLES]
            lines.append("| " + " | ".join(cells) + " |")
        cells = ["file size (MiB)"] + [f"{m['size_bytes'][name] / 2**20:,.1f}" for name in SIDES]
        cells += [_x(m["ratio_vs_faiss"]["size"][name]) for name in PICKLES]
        lines.append("| " + " | ".join(cells) + " |")
        same = all(all(by_side.values()) for by_side in m["identical"].values())
        parts.append(
            "\n".join(lines)
            + f"\n\nd={p['d']}; {p['source']}. Medians of {p['repeats']} alternated runs; files in the page cache. "
            '"This process" loads the pickle with `pickle.loads` from bytes in memory and the FAISS index with '
            '`read_index` from its file; "fresh process" is timed inside a new interpreter after its imports. '
            "Target: pickle load <= 1.5x `read_index`. Loaded copies answer identically: "
            + ("yes." if same else f"**no** ({json.dumps(m['identical'])}).")
            + "\n"
        )
    return "\n".join(parts)


def plot(records: list[dict], results_dir: Path) -> list[Path]:
    """A grouped bar chart per N: dump, load here, load in a fresh process; one bar per side."""
    plt = pyplot()

    records = [r for r in records if r["workload"] == WORKLOAD]
    paths: list[Path] = []
    operations = ["dump", "load", "load_child"]
    for r in records:
        figure, axis = plt.subplots(figsize=(7, 4))
        width = 0.8 / len(SIDES)
        for offset, (name, label) in enumerate(SIDES.items()):
            values = [r["metrics"]["median_s"][operation][name] * 1e3 for operation in operations]
            positions = [i + (offset - (len(SIDES) - 1) / 2) * width for i in range(len(operations))]
            axis.bar(positions, values, width=width, label=label)
        axis.set_xticks(range(len(operations)))
        axis.set_xticklabels([OPERATIONS[operation].replace(" (ms)", "") for operation in operations])
        axis.set_ylabel("ms (median)")
        axis.set_title(f"Serialising {r['params']['n']:,} x {r['params']['d']} vectors")
        axis.legend(fontsize="small")
        axis.grid(True, axis="y", alpha=0.3)
        figure.tight_layout()
        name = f"serialization_{r['params']['n']}.png" if len(records) > 1 else "serialization.png"
        paths.append(save_figure(figure, results_dir, name))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Run this workload alone."""
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
