"""Torch-free serving: the ONNX query encoder against the torch path and against Cherche 2.2.1.

The seed pipeline (README: TfIdf k=30 + rank.Encoder k=10 with the offline
MiniLM, on towns) is built once with ``SentenceTransformer(path).encode`` and
answered three ways, side by side in one run:

* ``Cherche 2.2.1``: the same code with Cherche's import, torch encoder, pickled;
* ``torch``: cherche_faiss with the sentence-transformers encoder
  (``cherche_faiss.load(save, backend="torch")``);
* ``onnx``: the same save, made with ``cherche_faiss.save(search, path, onnx=True)``,
  loaded with ``backend="onnx"`` (onnxruntime + tokenizers, no torch imported).

Measured, sides alternating:

1. one query end to end, p50/p95/p99, over the 176 distinct towns queries;
2. cold start in a fresh process (``CUDA_VISIBLE_DEVICES=""``): from the
   first line of the child (before any import) to the first answer; and the
   resident memory of that process after 20 more queries;
3. document encoding throughput on SciFact abstracts, ONNX vs torch, batches of 32 and 64;
4. int8 (opt-in) beside float32: single-query encoding latency, cosine to torch;
5. SciFact nDCG@10 of ``retrieve.Encoder`` (documents encoded by torch once,
   cached) with the query encoder torch, ONNX float32 and ONNX int8;
6. ``cherche-faiss serve`` of the same save with ``--backend onnx`` and
   ``--backend torch`` at 1, 4, 16 and 64 clients.

    python benchmarks/torch_free.py [--size smoke|quick|full]
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import asyncio
import gzip
import itertools
import json
import pickle
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CACHE_DIR,
    SCIFACT,
    Config,
    alternate,
    child_reporter,
    median,
    pyplot,
    ratio,
    record,
    run_alone,
    save_figure,
    summary,
)
from save_load import (
    build_pipeline,
    cherche_available,
    format_ratio,
    format_seconds,
    interleaved_latencies,
    towns_queries,
)  # noqa: E402

WORKLOAD = "torch_free"
TITLE = "Torch-free serving: ONNX query encoder vs torch vs Cherche (towns, MiniLM)"
SIDES = ("cherche", "torch", "onnx", "onnx_mmap")
SIDE_NAMES = {
    "cherche": "Cherche 2.2.1",
    "torch": "cherche_faiss, torch",
    "onnx": "cherche_faiss, ONNX",
    "onnx_mmap": "ONNX, load(mmap=True)",
}
CLIENTS = (1, 4, 16, 64)
ANSWERED_AFTER_LOAD = 20
_DOC_CACHE_TAG = "scifact-abstracts-minilm-normalized-v1"

# A fresh interpreter: the clock starts before any import, stops at the first answer; then the
# process answers more queries and reports its resident memory.
CHILD = """
import time
started = time.perf_counter()
import json, pickle, sys
path, side, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if side == "cherche":
    with open(path, "rb") as handle:
        search = pickle.load(handle)
else:
    import cherche_faiss
    search = cherche_faiss.load(path, backend=side.split("_")[0], mmap=side.endswith("_mmap"))
loaded = time.perf_counter()
first = search(queries[0])
answered = time.perf_counter()
for query in queries[1:]:
    search(query)
status = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in open("/proc/self/status")
          if line.startswith(("VmRSS:", "VmHWM:"))}
print(json.dumps({"load_s": loaded - started, "first_answer_s": answered - started, "rss": status["VmRSS"],
                  "peak_rss": status["VmHWM"], "torch": "torch" in sys.modules,
                  "first": [[hit["id"], float(hit["similarity"])] for hit in first]}))
"""


def _sizes(config: Config) -> dict[str, Any]:
    if config.smoke:
        return {
            "latency_queries": 10,
            "cold": 1,
            "abstracts": 16,
            "batches": (32,),
            "encode_repeats": 1,
            "int8": False,
            "ndcg": False,
            "clients": (1, 4),
            "requests": (8, 2),
            "rounds": 1,
        }
    return {
        "latency_queries": None,
        "cold": config.repeats if config.full else min(config.repeats, 3),
        "abstracts": 512 if config.full else 128,
        "batches": (32, 64),
        "encode_repeats": 3 if config.full else 2,
        "int8": True,
        "ndcg": SCIFACT.is_dir(),
        "clients": CLIENTS,
        "requests": (1_000, 40) if config.full else (200, 12),
        "rounds": 3 if config.full else 2,
    }


def _abstracts(n: int) -> list[str]:
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        return [d["title"] + " " + d["text"] for d in itertools.islice(map(json.loads, handle), n)]


def _claims() -> list[str]:
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as handle:
        return [q["text"] for q in map(json.loads, handle)]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- the measurements ------------------------------------------------------------------------------
def _latency(pipelines: Mapping[str, Any], queries: list[str]) -> list[dict]:
    samples = interleaved_latencies({side: pipeline for side, pipeline in pipelines.items()}, queries)
    return [record(WORKLOAD, "single_query", {"side": side}, **summary(values)) for side, values in samples.items()]


def _cold(paths: Mapping[str, Path], queries: list[str], repeats: int) -> list[dict]:
    reports: dict[str, list[dict]] = {side: [] for side in paths}
    environment = {"CUDA_VISIBLE_DEVICES": ""}
    os.environ.update(environment)
    try:
        cases = {
            side: child_reporter(
                [sys.executable, "-c", CHILD, str(path), side, json.dumps(queries)], f"{side} cold start", reports[side]
            )
            for side, path in paths.items()
        }
        wall = alternate(cases, repeats=repeats, warmup=0)
    finally:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    records = []
    for side, runs in reports.items():
        records.append(
            record(
                WORKLOAD,
                "cold_start",
                {"side": side},
                first_answer_s=median([run["first_answer_s"] for run in runs]),
                load_s=median([run["load_s"] for run in runs]),
                process_wall_s=median(wall[side]),
                rss_bytes=median([run["rss"] for run in runs]),
                peak_rss_bytes=median([run["peak_rss"] for run in runs]),
                torch_imported=any(run["torch"] for run in runs),
                first=runs[-1]["first"],
                runs=len(runs),
            )
        )
    return records


def _encoding(model: Any, onnx: Any, texts: list[str], batches: Sequence[int], repeats: int) -> list[dict]:
    records = []
    for batch in batches:
        samples = alternate(
            {
                "torch": lambda batch=batch: model.encode(texts, batch_size=batch),
                "onnx": lambda batch=batch: onnx.encode(texts, batch_size=batch),
            },
            repeats=repeats,
            warmup=1,
        )
        records.append(
            record(
                WORKLOAD,
                "encoding",
                {"batch_size": batch, "texts": len(texts)},
                **{f"{side}_docs_per_s": len(texts) / median(values) for side, values in samples.items()},
            )
        )
    return records


def _int8(model: Any, encoders: Mapping[str, Any], claims: list[str], abstracts: list[str]) -> list[dict]:
    samples = interleaved_latencies(
        {
            "torch": lambda q: model.encode([q]),
            **{name: (lambda q, e=e: e.encode([q])) for name, e in encoders.items()},
        },
        claims,
    )
    texts = claims + abstracts
    reference = model.encode(texts, convert_to_numpy=True, batch_size=64)
    records = []
    for name, encoder in encoders.items():
        cosines = _cosines(encoder.encode(texts, batch_size=64), reference)
        size = os.path.getsize(Path(encoder.path) / "model.onnx")
        records.append(
            record(
                WORKLOAD,
                "precision",
                {"encoder": name},
                p50_s=median(samples[name]),
                torch_p50_s=median(samples["torch"]),
                min_cosine=float(cosines.min()),
                mean_cosine=float(cosines.mean()),
                texts=len(texts),
                bytes=size,
            )
        )
    return records


def _document_vectors(model: Any, corpus: list[dict]) -> np.ndarray:
    """MiniLM vectors of the SciFact abstracts, normalised, cached in benchmarks/.cache."""
    path = CACHE_DIR / f"{_DOC_CACHE_TAG}-{len(corpus)}.npy"
    if path.is_file():
        return np.load(path)
    vectors = model.encode(
        [d["title"] + " " + d["text"] for d in corpus], batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors


def _ndcg(model: Any, encoders: Mapping[str, Any]) -> list[dict]:
    from cherche_faiss import retrieve
    from cherche_faiss.data import load_beir
    from cherche_faiss.encoders import CallableEncoder
    from cherche_faiss.evaluate import evaluate

    dataset = load_beir(SCIFACT)
    vectors = _document_vectors(model, dataset.corpus)
    records = []
    queries = {"torch": CallableEncoder(lambda texts: model.encode(texts, normalize_embeddings=True)), **encoders}
    for name, query_encoder in queries.items():
        search = retrieve.Embedding(key="id", k=100).add(dataset.corpus, embeddings_documents=vectors)

        def answer(q: Any, k: int | None = None, encoder: Any = query_encoder, search: Any = search) -> Any:
            texts = [q] if isinstance(q, str) else list(q)
            hits = search(encoder.encode(texts), k=k)
            return hits[0] if isinstance(q, str) else hits

        scores = evaluate(answer, dataset.queries, dataset.qrels, ks=(10, 100), key="id", show_progress=False)
        records.append(
            record(
                WORKLOAD,
                "ndcg",
                {"query_encoder": name},
                ndcg_at_10=scores["ndcg@10"],
                recall_at_100=scores["recall@100"],
                queries=scores["queries"],
            )
        )
    return records


SERVED = {"onnx": "ONNX", "onnx_int8": "ONNX int8", "torch": "torch"}


def _server(saves: Mapping[str, Path], queries: list[str], sizes: dict[str, Any]) -> list[dict]:
    from server import Server, load, search_request

    servers = {side: Server(saves[side], side, ["--backend", side.split("_")[0]]) for side in saves}
    samples: dict[tuple[str, int], list[float]] = {}
    p99: dict[tuple[str, int], list[float]] = {}
    errors: dict[tuple[str, int], int] = {}
    try:
        for server in servers.values():
            server.wait_ready()
        for server in servers.values():
            asyncio.run(load(server.port, [search_request(q) for q in queries[:40]], clients=4))  # warm-up
        step = 0
        for _ in range(sizes["rounds"]):
            for clients in sizes["clients"]:
                base, per_client = sizes["requests"]
                requests = [
                    search_request(queries[(step * 37 + i) % len(queries)])
                    for i in range(max(base, per_client * clients))
                ]
                order = list(servers)[step % len(servers) :] + list(servers)[: step % len(servers)]
                step += 1
                for side in order:
                    result = asyncio.run(load(servers[side].port, requests, clients))
                    samples.setdefault((side, clients), []).append(len(requests) / result["seconds"])
                    p99.setdefault((side, clients), []).extend(result["latencies"])
                    errors[(side, clients)] = errors.get((side, clients), 0) + len(result["errors"])
        threads = {side: server.info()["threads"] for side, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    return [
        record(
            WORKLOAD,
            "server",
            {"side": side, "clients": clients},
            requests_per_s=median(rates),
            p50_s=float(np.percentile(p99[(side, clients)], 50)),
            p99_s=float(np.percentile(p99[(side, clients)], 99)),
            errors=errors[(side, clients)],
            threads=threads[side],
        )
        for (side, clients), rates in samples.items()
    ]


def run(config: Config) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    import cherche_faiss
    from cherche_faiss import data
    from cherche_faiss.encoders import OnnxEncoder, export_onnx

    sizes = _sizes(config)
    documents = data.load_towns()
    queries = towns_queries(documents)[: sizes["latency_queries"]]
    model = SentenceTransformer(data.minilm_path(), device="cpu")
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_torch_free_") as folder:
        folder = Path(folder)
        ours = build_pipeline("cherche_faiss", documents, model.encode)
        save = cherche_faiss.save(ours, folder / "search", onnx=True)
        pipelines = {
            "torch": cherche_faiss.load(save, backend="torch"),
            "onnx": cherche_faiss.load(save, backend="onnx"),
        }
        paths: dict[str, Path] = {"torch": save, "onnx": save, "onnx_mmap": save}
        if cherche_available():
            cherche = build_pipeline("cherche", documents, model.encode)
            with open(folder / "cherche.pkl", "wb") as handle:
                pickle.dump(cherche, handle)
            pipelines = {"cherche": cherche, **pipelines}
            paths = {"cherche": folder / "cherche.pkl", **paths}
        expected = [hit["id"] for hit in ours("bordeaux")]
        agree = {side: [hit["id"] for hit in pipeline("bordeaux")] == expected for side, pipeline in pipelines.items()}
        records += _latency(pipelines, queries)
        records += _cold(paths, ["bordeaux", *queries[:ANSWERED_AFTER_LOAD]], sizes["cold"])

        fp32 = OnnxEncoder(export_onnx(model, folder / "fp32"))
        encoders = {"onnx_fp32": fp32}
        if sizes["int8"]:
            encoders["onnx_int8"] = OnnxEncoder(export_onnx(model, folder / "int8", quantize="int8"))
        if SCIFACT.is_dir():
            records += _encoding(model, fp32, _abstracts(sizes["abstracts"]), sizes["batches"], sizes["encode_repeats"])
        if sizes["int8"] and SCIFACT.is_dir():
            records += _int8(model, encoders, _claims()[:300], _abstracts(128))
        if sizes["ndcg"]:
            records += _ndcg(model, encoders)
        saves = {"onnx": save, "torch": save}
        if sizes["int8"]:
            saves["onnx_int8"] = cherche_faiss.save(ours, folder / "search-int8", onnx="int8")
        records += _server(saves, towns_queries(documents), sizes)
    records.append(
        record(
            WORKLOAD,
            "settings",
            {"size": config.size},
            answers_agree=agree,
            sides=list(pipelines),
            cpu_count=os.cpu_count(),
            load_average=list(os.getloadavg()),
            queries=len(queries),
        )
    )
    return records


# -- reporting ---------------------------------------------------------------------------------------
def _by(records: Sequence[Mapping], case: str, key: str) -> dict[Any, Mapping[str, Any]]:
    return {
        rec["params"][key]: rec["metrics"] for rec in records if rec["workload"] == WORKLOAD and rec["case"] == case
    }


def _verdict(value: float | None, goal: float, below: bool = True) -> str:
    if value is None:
        return "not measured"
    return "**met**" if (value <= goal if below else value >= goal) else "**missed**"


def markdown(records: Sequence[Mapping]) -> str:
    single = _by(records, "single_query", "side")
    cold = _by(records, "cold_start", "side")
    lines = [
        f"### {TITLE}",
        "",
        "| | " + " | ".join(SIDE_NAMES[s] for s in SIDES if s in single or s in cold) + " |",
        "| --- |" + " ---: |" * sum(s in single or s in cold for s in SIDES),
    ]
    shown = [s for s in SIDES if s in single or s in cold]
    for label, metric in (("one query p50", "p50_s"), ("p95", "p95_s"), ("p99", "p99_s")):
        lines.append(
            f"| {label} | "
            + " | ".join(format_seconds(single[s][metric]) if s in single else "as ONNX" for s in shown)
            + " |"
        )
    for label, metric in (
        ("cold start: load + first answer", "first_answer_s"),
        ("whole child process", "process_wall_s"),
    ):
        lines.append(
            f"| {label} | " + " | ".join(format_seconds(cold[s][metric]) if s in cold else "-" for s in shown) + " |"
        )
    lines.append(
        "| resident memory, loaded and answering | "
        + " | ".join(f"{cold[s]['rss_bytes'] / 2**20:,.0f} MiB" if s in cold else "-" for s in shown)
        + " |"
    )
    lines.append(
        "| torch imported | " + " | ".join(str(cold[s]["torch_imported"]) if s in cold else "-" for s in shown) + " |"
    )
    goals = []
    if "cherche" in single:
        p50 = ratio(single["onnx"]["p50_s"], single["cherche"]["p50_s"])
        goals.append(f"one query p50, ONNX / Cherche: {format_ratio(p50)} (goal <= 0.4x: {_verdict(p50, 0.4)})")
        start = ratio(cold["onnx"]["first_answer_s"], cold["cherche"]["first_answer_s"])
        goals.append(f"cold start, ONNX / Cherche: {format_ratio(start)} (goal <= 0.2x: {_verdict(start, 0.2)})")
    for side in ("onnx", "onnx_mmap"):
        memory = (
            ratio(cold[side]["rss_bytes"], cold["torch"]["rss_bytes"]) if "torch" in cold and side in cold else None
        )
        goals.append(
            f"resident memory, {SIDE_NAMES[side]} / torch path: {format_ratio(memory)} "
            f"(goal <= 0.4x: {_verdict(memory, 0.4)})"
        )
    for batch, cell in sorted(_by(records, "encoding", "batch_size").items()):
        speed = ratio(cell["onnx_docs_per_s"], cell["torch_docs_per_s"])
        goals.append(
            f"document encoding, batch {batch}: ONNX {cell['onnx_docs_per_s']:.1f} vs torch "
            f"{cell['torch_docs_per_s']:.1f} abstracts/s = {format_ratio(speed)} "
            f"(goal >= 1.2x: {_verdict(speed, 1.2, below=False)})"
        )
    served = {
        (rec["params"]["side"], rec["params"]["clients"]): rec["metrics"]
        for rec in records
        if rec["workload"] == WORKLOAD and rec["case"] == "server"
    }
    if served:
        kinds = [side for side in SERVED if any(s == side for s, _ in served)]
        lines += [
            "",
            "| clients | "
            + " | ".join(f"{SERVED[k]} req/s" for k in kinds)
            + " | "
            + " | ".join(f"{SERVED[k]} / torch" for k in kinds if k != "torch")
            + " | "
            + " | ".join(f"{SERVED[k]} p50 / p99" for k in kinds)
            + " | errors |",
            "| ---: |" + " ---: |" * (3 * len(kinds)),
        ]
        for clients in sorted({c for _, c in served}):
            cells = {k: served[(k, clients)] for k in kinds}
            lines.append(
                f"| {clients} | "
                + " | ".join(f"{cells[k]['requests_per_s']:,.0f}" for k in kinds)
                + " | "
                + " | ".join(
                    format_ratio(ratio(cells[k]["requests_per_s"], cells["torch"]["requests_per_s"]))
                    for k in kinds
                    if k != "torch"
                )
                + " | "
                + " | ".join(
                    f"{format_seconds(cells[k]['p50_s'])} / {format_seconds(cells[k]['p99_s'])}" for k in kinds
                )
                + f" | {sum(cell['errors'] for cell in cells.values())} |"
            )
        for kind in ("onnx", "onnx_int8"):
            if (kind, 16) in served:
                gain = ratio(served[(kind, 16)]["requests_per_s"], served[("torch", 16)]["requests_per_s"])
                goals.append(
                    f"server at 16 clients, {SERVED[kind]} / torch: {format_ratio(gain)} "
                    f"(goal >= 2x: {_verdict(gain, 2.0, below=False)})"
                )
    precision = _by(records, "precision", "encoder")
    ndcg = _by(records, "ndcg", "query_encoder")
    if precision or ndcg:
        lines += [
            "",
            "| query encoder | one query p50 | vs torch | lowest / mean cosine to torch | SciFact nDCG@10 |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        if "torch" in ndcg or precision:
            torch_p50 = next(iter(precision.values()))["torch_p50_s"] if precision else None
            lines.append(
                f"| torch (sentence-transformers) | {format_seconds(torch_p50)} | 1.0x | 1 / 1 | "
                f"{ndcg['torch']['ndcg_at_10']:.4f} |"
                if "torch" in ndcg
                else ""
            )
        for name in ("onnx_fp32", "onnx_int8"):
            if name in precision:
                cell = precision[name]
                score = f"{ndcg[name]['ndcg_at_10']:.4f}" if name in ndcg else "-"
                lines.append(
                    f"| {name.replace('_', ' ')} | {format_seconds(cell['p50_s'])} | "
                    f"{format_ratio(ratio(cell['torch_p50_s'], cell['p50_s']))} faster | "
                    f"{cell['min_cosine']:.6f} / {cell['mean_cosine']:.6f} | {score} |"
                )
        if "torch" in ndcg and "onnx_fp32" in ndcg:
            gap = abs(ndcg["onnx_fp32"]["ndcg_at_10"] - ndcg["torch"]["ndcg_at_10"])
            goals.append(
                f"SciFact nDCG@10 with the ONNX query encoder: {ndcg['onnx_fp32']['ndcg_at_10']:.4f} against torch's "
                f"{ndcg['torch']['ndcg_at_10']:.4f}, a gap of {gap:.4f} (goal <= 0.001: {_verdict(gap, 0.001)})"
            )
    settings = next(
        (rec["metrics"] for rec in records if rec["workload"] == WORKLOAD and rec["case"] == "settings"), {}
    )
    lines += [
        "",
        "Goals: " + "; ".join(goals) + ".",
        "",
        f"Answers to 'bordeaux' agree with the in-process pipeline: {settings.get('answers_agree')}. Single "
        "queries interleaved side by side; cold starts in fresh processes, sides alternating (medians); "
        "the cold clock starts before the child's first import.",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def plot(records: Sequence[Mapping], results_dir: Path) -> list[Path]:
    plt = pyplot()
    single = _by(records, "single_query", "side")
    cold = _by(records, "cold_start", "side")
    shown = [s for s in SIDES if s in single or s in cold]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(
        [SIDE_NAMES[s] for s in shown if s in single],
        [single[s]["p50_s"] * 1e3 for s in shown if s in single],
        color="tab:blue",
    )
    left.set_ylabel("ms, one query end to end (p50)")
    right.bar(
        [SIDE_NAMES[s] for s in shown if s in cold],
        [cold[s]["first_answer_s"] for s in shown if s in cold],
        color="tab:orange",
    )
    right.set_ylabel("s, fresh process to first answer")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle(TITLE)
    figure.tight_layout()
    return [save_figure(figure, results_dir, "torch_free.png")]


def main(argv: list[str] | None = None) -> int:
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
