"""Saving and loading: the safe folder format (``cherche_faiss.save`` / ``load``) against pickle.

Two workloads, each side timed alternately in one run:

* **towns**: Cherche's Save & Load pipeline (TF-IDF retriever, MiniLM ranker by
  reference, ``+ documents``) on the packaged towns corpus. Save and load in
  this process, and the size on disk, for ``cherche_faiss.save`` / ``load``
  (with and without ``mmap``), ``dump_pickle`` / ``load_pickle`` (whole-file
  checksum) and plain ``pickle.dump`` / ``pickle.load``.
* **retriever**: an ``Embedding`` retriever over N x 384 vectors derived from
  real MiniLM sentence vectors (``Flat`` index), loaded in a fresh process:
  load time (timed inside the child, after its imports), resident memory the
  load added, and the first query's time (a mapped index reads its pages then).

Sizes: smoke 2,000 vectors and the hashing encoder (CI); quick 100,000; full
1,000,000 (``make bench-full``).
"""

from __future__ import annotations

import gc
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Config, alternate, child_reporter, format_ms, format_ratio, median, record, run_alone  # noqa: E402
from embeddings import dataset  # noqa: E402

WORKLOAD = "storage"
K = 10
QUERIES = ["bordeaux", "aerospace industry", "football club", "wine", "the largest city"]
CHECK_QUERIES = 8

TOWNS_SIDES = {
    "safe": "cherche_faiss.save / load",
    "safe_mmap": "cherche_faiss.load(mmap=True)",
    "dump_pickle": "dump_pickle / load_pickle",
    "pickle": "pickle.dump / pickle.load",
}
CHILD_SIDES = {
    "pickle": "pickle.load",
    "load_pickle": "load_pickle (whole-file CRC)",
    "safe": "cherche_faiss.load",
    "safe_mmap": "cherche_faiss.load(mmap=True)",
    "safe_mmap_noverify": "cherche_faiss.load(mmap=True, verify=False)",
}

# A fresh interpreter: imports, then the load alone (timed), resident memory, then the first query.
CHILD_CODE = """\
import json, pickle, sys, time
import numpy as np
import faiss, scipy.sparse
import cherche_faiss

def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096

side, path, queries_path, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
queries = np.load(queries_path)
before = resident()
start = time.perf_counter()
if side == "pickle":
    with open(path, "rb") as handle:
        loaded = pickle.load(handle)
elif side == "load_pickle":
    loaded = cherche_faiss.load_pickle(path)
else:
    loaded = cherche_faiss.load(path, mmap=side.startswith("safe_mmap"), verify=side != "safe_mmap_noverify")
load_s = time.perf_counter() - start
grown = resident() - before
start = time.perf_counter()
first = loaded(queries[:1], k=k)
first_s = time.perf_counter() - start
answer = [[[hit["id"], hit["similarity"]] for hit in row] for row in loaded(queries, k=k)]
print(json.dumps({"load_s": load_s, "rss_grown": grown, "first_query_s": first_s, "answer": answer}))
"""


def size_for(config: Config) -> int:
    return 2_000 if config.smoke else 1_000_000 if config.full else 100_000


def _disk_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -- towns ----------------------------------------------------------------------------------------
def _towns_pipeline(config: Config) -> Any:
    from cherche_faiss import data, rank, retrieve

    towns = data.load_towns()
    if config.smoke:
        from cherche_faiss.encoders import HashingEncoder

        encoder: Any = HashingEncoder(dimension=384)
    else:
        from cherche_faiss.encoders import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(data.minilm_path(), device="cpu")
    retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=towns, k=30)
    ranker = rank.Encoder(key="id", on=["title", "article"], encoder=encoder, k=K)
    return (retriever + ranker + towns).add(towns, show_progress=False)


def run_towns(config: Config) -> dict:
    import cherche_faiss

    search = _towns_pipeline(config)
    expected = search(QUERIES)
    folder = Path(tempfile.mkdtemp(prefix="cherche_faiss_storage_"))
    try:
        paths = {"safe": folder / "safe", "dump_pickle": folder / "stamped.pkl", "pickle": folder / "plain.pkl"}

        def plain_dump() -> None:
            with open(paths["pickle"], "wb") as handle:
                pickle.dump(search, handle, protocol=5)

        saves = {
            "safe": lambda: cherche_faiss.save(search, paths["safe"]),
            "dump_pickle": lambda: cherche_faiss.dump_pickle(search, paths["dump_pickle"]),
            "pickle": plain_dump,
        }
        save_samples = alternate(saves, config.repeats, config.warmup)
        loaded: dict[str, Any] = {}

        def plain_load() -> None:
            with open(paths["pickle"], "rb") as handle:
                loaded["pickle"] = pickle.load(handle)

        loads: dict[str, Callable[[], None]] = {
            "safe": lambda: loaded.__setitem__("safe", cherche_faiss.load(paths["safe"])),
            "safe_mmap": lambda: loaded.__setitem__("safe_mmap", cherche_faiss.load(paths["safe"], mmap=True)),
            "dump_pickle": lambda: loaded.__setitem__("dump_pickle", cherche_faiss.load_pickle(paths["dump_pickle"])),
            "pickle": plain_load,
        }
        load_samples = alternate(loads, config.repeats, config.warmup)
        identical = {name: copy(QUERIES) == expected for name, copy in loaded.items()}
        sizes = {name: _disk_bytes(path) for name, path in paths.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    save_s = {name: median(values) for name, values in save_samples.items()}
    load_s = {name: median(values) for name, values in load_samples.items()}
    return {
        "save_s": save_s,
        "load_s": load_s,
        "size_bytes": sizes,
        "identical": identical,
        "ratio_vs_pickle": {
            "save": save_s["safe"] / save_s["pickle"],
            "load": load_s["safe"] / load_s["pickle"],
            "load_mmap": load_s["safe_mmap"] / load_s["pickle"],
            "size": sizes["safe"] / sizes["pickle"],
        },
    }


# -- a large retriever, loaded in fresh processes --------------------------------------------------
def run_retriever(config: Config) -> dict:
    import cherche_faiss
    from cherche_faiss import retrieve

    n = size_for(config)
    data = dataset(n, config)
    built = {
        "retriever": retrieve.Embedding(key="id", k=K).add(
            [{"id": i} for i in range(n)], embeddings_documents=data.documents, show_progress=False
        )
    }  # cleared before the children run: the closures below read it from here
    queries = np.ascontiguousarray(data.queries[:CHECK_QUERIES])
    source, d = data.source, data.documents.shape[1]
    del data
    gc.collect()
    expected = [[[hit["id"], hit["similarity"]] for hit in row] for row in built["retriever"](queries, k=K)]
    folder = Path(tempfile.mkdtemp(prefix="cherche_faiss_storage_"))
    try:
        paths = {"safe": folder / "safe", "load_pickle": folder / "stamped.pkl", "pickle": folder / "plain.pkl"}
        queries_path = folder / "queries.npy"
        np.save(queries_path, queries)

        def plain_dump() -> None:
            with open(paths["pickle"], "wb") as handle:
                pickle.dump(built["retriever"], handle, protocol=5)

        saves = {
            "safe": lambda: cherche_faiss.save(built["retriever"], paths["safe"]),
            "load_pickle": lambda: cherche_faiss.dump_pickle(built["retriever"], paths["load_pickle"]),
            "pickle": plain_dump,
        }
        save_samples = alternate(saves, max(1, config.repeats // 2), 0)
        sizes = {name: _disk_bytes(path) for name, path in paths.items()}
        built.clear()
        gc.collect()
        reports: dict[str, list[dict]] = {name: [] for name in CHILD_SIDES}
        children = {name: _child(name, paths, queries_path, reports[name]) for name in CHILD_SIDES}
        alternate(children, config.repeats, config.warmup)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    take = lambda name, key: median([report[key] for report in reports[name][-config.repeats :]])  # noqa: E731
    load_s = {name: take(name, "load_s") for name in CHILD_SIDES}
    return {
        "n": n,
        "d": d,
        "source": source,
        "save_s": {name: median(values) for name, values in save_samples.items()},
        "size_bytes": sizes,
        "load_s": load_s,
        "rss_grown_bytes": {name: take(name, "rss_grown") for name in CHILD_SIDES},
        "first_query_s": {name: take(name, "first_query_s") for name in CHILD_SIDES},
        "identical": {name: all(_same(report["answer"], expected) for report in reports[name]) for name in CHILD_SIDES},
        "ratio_vs_pickle": {name: load_s[name] / load_s["pickle"] for name in CHILD_SIDES},
    }


def _same(answer: list, expected: list) -> bool:
    """The same keys in the same order, similarities equal to float32 rounding (a mapped flat file
    is searched by FAISS, an index in memory by NumPy's BLAS: sums in another order)."""
    return all(
        [key for key, _ in row] == [key for key, _ in row_expected]
        and np.allclose([score for _, score in row], [score for _, score in row_expected], atol=1e-5)
        for row, row_expected in zip(answer, expected)
    ) and len(answer) == len(expected)


def _child(side: str, paths: dict[str, Path], queries_path: Path, reports: list[dict]) -> Callable[[], None]:
    path = paths["safe" if side.startswith("safe") else side]
    return child_reporter(
        [sys.executable, "-c", CHILD_CODE, side, str(path), str(queries_path), str(K)], f"{side} load", reports
    )


def run(config: Config) -> list[dict]:
    """Both workloads; one record each."""
    towns = run_towns(config)
    retriever = run_retriever(config)
    return [
        record(
            WORKLOAD, "towns", {"repeats": config.repeats, "model": "hashing" if config.smoke else "MiniLM"}, **towns
        ),
        record(
            WORKLOAD,
            f"retriever N={retriever['n']}",
            {"n": retriever["n"], "d": retriever["d"], "source": retriever["source"], "repeats": config.repeats},
            **{key: value for key, value in retriever.items() if key not in ("n", "d", "source")},
        ),
    ]


def _row(label: str, values: dict, shown: Callable[[Any], str]) -> str:
    """A table row over the towns sides; "-" where a side has no value (mmap saves nothing)."""
    return f"| {label} | " + " | ".join(shown(values[name]) if name in values else "-" for name in TOWNS_SIDES) + " |"


def markdown(records: list[dict]) -> str:
    records = [r for r in records if r["workload"] == WORKLOAD]
    if not records:
        return "### Save and load\n\nNo results.\n"
    towns = next(r["metrics"] for r in records if r["case"] == "towns")
    big = next(r for r in records if r["case"].startswith("retriever"))
    m, p = big["metrics"], big["params"]
    lines = [
        "### Save and load: the safe folder format against pickle",
        "",
        f"**Towns pipeline** (TF-IDF + {records[0]['params']['model']} ranker + documents), in this process, medians "
        f"of {records[0]['params']['repeats']} alternated runs:",
        "",
        "| | " + " | ".join(TOWNS_SIDES.values()) + " |",
        "|---|" + "---:|" * len(TOWNS_SIDES),
        _row("save (ms)", towns["save_s"], format_ms),
        _row("load (ms)", towns["load_s"], format_ms),
        _row("on disk (kB)", towns["size_bytes"], lambda size: f"{size / 1e3:,.0f}"),
        "",
        f"Safe format / pickle: save {format_ratio(towns['ratio_vs_pickle']['save'])}, load "
        f"{format_ratio(towns['ratio_vs_pickle']['load'])} "
        f"({format_ratio(towns['ratio_vs_pickle']['load_mmap'])} with mmap), "
        f"size {format_ratio(towns['ratio_vs_pickle']['size'])}. Identical answers after loading: "
        + ("yes" if all(towns["identical"].values()) else f"**no** {towns['identical']}")
        + ".",
        "",
        f"**Retriever of {p['n']:,} x {p['d']} vectors** (Flat; {p['source']}), each load in a fresh process "
        f"(timed inside it, after its imports), medians of {p['repeats']}:",
        "",
        "| | load (ms) | load / pickle.load | resident memory added (MiB) | first query (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in CHILD_SIDES.items():
        lines.append(
            f"| {label} | {format_ms(m['load_s'][name])} | {format_ratio(m['ratio_vs_pickle'][name])} | "
            f"{m['rss_grown_bytes'][name] / 2**20:,.1f} | {format_ms(m['first_query_s'][name])} |"
        )
    lines += [
        "",
        f"Save: safe format {format_ms(m['save_s']['safe'])} ms, "
        f"dump_pickle {format_ms(m['save_s']['load_pickle'])} ms, "
        f"pickle.dump {format_ms(m['save_s']['pickle'])} ms; "
        f"on disk {m['size_bytes']['safe'] / 2**20:,.1f} MiB against {m['size_bytes']['pickle'] / 2**20:,.1f} MiB. "
        "The same hits in every child (similarities to float32 rounding): "
        + ("yes" if all(m["identical"].values()) else f"**no** {m['identical']}")
        + ".",
        "",
    ]
    return "\n".join(lines)


def plot(records: list[dict], results_dir: Path) -> list[Path]:
    return []


def main(argv: list[str] | None = None) -> int:
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
