"""The HTTP server: throughput and latency with and without micro-batching.

Three ``cherche-faiss serve`` processes serve the same pickled pipeline (the
README's towns example: TfIdf k=30 + rank.Encoder k=10 + documents):

* ``batched``: the defaults, batches of up to 64 queries, a request waits up
  to 2 ms for others to join it;
* ``batched, no wait``: ``--max-wait-ms 0``, batching only the requests that
  arrive while a search runs;
* ``unbatched``: ``--no-batching``, one pipeline call per request.

This process is the load generator, so that clients never share a server's
interpreter (or its GIL): for 1, 4, 16 and 64 concurrent clients, each keeping
one request in flight on its own keep-alive connection, it sends ``POST
/search {"q": ..., "k": 10}`` with distinct queries (the first words of each
article) and times every request. The servers take turns for each client
count (which goes first rotates), over several rounds; all are warmed up
first and idle while another is measured.

Reported per client count and server: requests per second (median over
rounds), p50 and p99 latency (all requests pooled), and the mean number of
queries per pipeline call the server saw (its ``/info`` counters); the ratios
are against the unbatched server, measured side by side.

The client is a minimal HTTP/1.1 client on asyncio streams (tens of
microseconds per request), so that what is timed is the server, not an HTTP
library. Before any timing, a few answers of each server are checked against
the pipeline called in this process.

Sizes: smoke runs the hashing encoder and a few requests per client count (CI,
seconds); quick and full the offline MiniLM, with more requests at full size.

    python benchmarks/server.py [--size smoke|quick|full] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, Config, format_ms, format_ratio, median, pyplot, ratio, record, run_alone, save_figure  # noqa: E402
from save_load import towns_queries  # noqa: E402

WORKLOAD = "server"
TITLE = "HTTP server: micro-batching on and off"
KEY = "id"
ON = ["title", "article"]
RETRIEVER_K = 30
RANKER_K = 10
K = 10
CLIENTS = (1, 4, 16, 64)
MODES = ("batched", "batched_no_wait", "unbatched")
MODE_OPTIONS = {"batched": [], "batched_no_wait": ["--max-wait-ms", "0"], "unbatched": ["--no-batching"]}
MODE_NAMES = {"batched": "batched, 2 ms wait", "batched_no_wait": "batched, no wait", "unbatched": "unbatched"}
STARTUP_TIMEOUT_S = 300
SIMILARITY_TOLERANCE = 1e-5  # a query encoded alone or padded in a batch: float32 rounding
# Requests per client count and mode, per round: max(base, per_client * clients).
REQUESTS = {"smoke": (8, 2), "quick": (200, 12), "full": (1_000, 40)}


# -- the servers ---------------------------------------------------------------------------------
class Server:
    """``cherche-faiss serve PATH`` in a subprocess on a free 127.0.0.1 port (a pickle: ``--allow-pickle``).

    ``options``: the command's options; by default those of ``mode`` in :data:`MODE_OPTIONS`.
    """

    def __init__(self, path: Path, mode: str, options: Sequence[str] | None = None) -> None:
        self.mode = mode
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        options = list(MODE_OPTIONS[mode] if options is None else options)
        if Path(path).is_file():
            options.append("--allow-pickle")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cherche_faiss.cli", "serve", str(path), "--port", "0", "--no-access-log", *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.port: int | None = None

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.log.append(line)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the {self.mode} server exited with {self.process.returncode}:\n{''.join(self.log)}"
                )
            match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", "".join(self.log))
            if match and self.port is None:
                self.port = int(match.group(1))
            if self.port is not None and "Application startup complete" in "".join(self.log):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the {self.mode} server did not start in {STARTUP_TIMEOUT_S} s:\n{''.join(self.log)}")

    def info(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/info", timeout=60) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the client ------------------------------------------------------------------------------------
def search_request(query: str, k: int = K) -> bytes:
    """A complete ``POST /search`` HTTP/1.1 request, keep-alive."""
    body = json.dumps({"q": query, "k": k}).encode()
    return (
        b"POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if match is None:
        raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
    return status, await reader.readexactly(int(match.group(1)))


async def load(port: int, requests: Sequence[bytes], clients: int) -> dict[str, Any]:
    """Send ``requests`` from ``clients`` connections, one request in flight each; time every one."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    latencies = [0.0] * len(requests)
    errors: list[str] = []
    positions = iter(range(len(requests)))

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for position in positions:
            started = time.perf_counter()
            status, payload = await _exchange(reader, writer, requests[position])
            latencies[position] = time.perf_counter() - started
            if status != 200:
                errors.append(f"{status}: {payload[:200]!r}")

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client(*connection) for connection in connections)), timeout=1800)
    seconds = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


async def answers(port: int, queries: Sequence[str]) -> list[list[dict]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    found = []
    for query in queries:
        status, payload = await _exchange(reader, writer, search_request(query))
        if status != 200:
            raise RuntimeError(f"the server answered {status} to {query!r}: {payload[:300]!r}")
        found.append(json.loads(payload)["hits"])
    writer.close()
    return found


def same_hits(actual: Sequence[Mapping], expected: Sequence[Mapping]) -> bool:
    return [hit[KEY] for hit in actual] == [hit[KEY] for hit in expected] and all(
        abs(a["similarity"] - e["similarity"]) <= SIMILARITY_TOLERANCE for a, e in zip(actual, expected)
    )


# -- the workload ------------------------------------------------------------------------------------
def build(config: Config, documents: list[dict]) -> tuple[Any, str]:
    """The README's pipeline: MiniLM at quick and full size, the hashing encoder at smoke size."""
    from cherche_faiss import data, rank, retrieve
    from cherche_faiss.encoders import HashingEncoder, SentenceTransformerEncoder

    if config.smoke:
        encoder, name = HashingEncoder(), "hashing encoder"
    else:
        encoder, name = SentenceTransformerEncoder(data.minilm_path(), device="cpu"), "all-MiniLM-L6-v2 (offline)"
    retriever = retrieve.TfIdf(key=KEY, on=ON, documents=documents, k=RETRIEVER_K)
    ranker = rank.Encoder(key=KEY, on=ON, encoder=encoder, k=RANKER_K)
    return (retriever + ranker + documents).add(documents, show_progress=False), name


def requests_per_cell(config: Config, clients: int) -> int:
    base, per_client = REQUESTS[config.size]
    return max(base, per_client * clients)


def run(config: Config) -> list[dict]:
    """Both servers, every client count, modes alternating, ``repeats`` rounds (3 at most at quick size)."""
    from cherche_faiss import data
    from cherche_faiss.persist import dump_pickle

    documents = data.load_towns()
    pipeline, encoder_name = build(config, documents)
    queries = towns_queries(documents)
    rounds = 1 if config.smoke else (config.repeats if config.full else min(config.repeats, 3))
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_server_") as folder:
        path = Path(folder) / "search.pkl"
        dump_pickle(pipeline, path)
        servers = {mode: Server(path, mode) for mode in MODES}  # all start at once
        try:
            for server in servers.values():
                server.wait_ready()
            checked = queries[:5]
            expected = [pipeline(query, k=K) for query in checked]
            correct = {}
            for mode, server in servers.items():
                found = asyncio.run(answers(server.port, checked))
                correct[mode] = all(same_hits(a, e) for a, e in zip(found, expected))
                asyncio.run(load(server.port, [search_request(q) for q in queries[:40]], clients=4))  # warm-up
            settings = {mode: server.info() for mode, server in servers.items()}
            samples: dict[tuple[str, int], dict[str, list]] = {
                (mode, clients): {"latencies": [], "rates": [], "errors": [], "queries": [], "batches": [], "calls": []}
                for mode in MODES
                for clients in CLIENTS
            }
            step = 0
            for _ in range(rounds):
                for clients in CLIENTS:
                    order = MODES[step % len(MODES) :] + MODES[: step % len(MODES)]
                    step += 1
                    count = requests_per_cell(config, clients)
                    offset = step * 37  # another slice of the queries each time
                    requests = [search_request(queries[(offset + i) % len(queries)]) for i in range(count)]
                    for mode in order:
                        before = servers[mode].info()["stats"]
                        result = asyncio.run(load(servers[mode].port, requests, clients))
                        after = servers[mode].info()["stats"]
                        cell = samples[(mode, clients)]
                        cell["latencies"].extend(result["latencies"])
                        cell["rates"].append(count / result["seconds"])
                        cell["errors"].extend(result["errors"])
                        cell["queries"].append(after["queries"] - before["queries"])
                        cell["batches"].append(after["batches"] - before["batches"])
                        cell["calls"].append(after["pipeline_calls"] - before["pipeline_calls"])
        finally:
            for server in servers.values():
                server.stop()
    for (mode, clients), cell in samples.items():
        latencies = np.asarray(cell["latencies"])
        records.append(
            record(
                WORKLOAD,
                "load",
                {"mode": mode, "clients": clients, "requests_per_round": requests_per_cell(config, clients)},
                requests_per_s=median(cell["rates"]),
                rates=cell["rates"],
                requests=int(latencies.size),
                p50_s=float(np.percentile(latencies, 50)),
                p99_s=float(np.percentile(latencies, 99)),
                mean_s=float(latencies.mean()),
                errors=len(cell["errors"]),
                first_errors=cell["errors"][:3],
                mean_batch_queries=sum(cell["queries"]) / sum(cell["batches"]) if sum(cell["batches"]) else None,
                pipeline_calls=sum(cell["calls"]),
            )
        )
    records.append(
        record(
            WORKLOAD,
            "settings",
            {"size": config.size},
            encoder=encoder_name,
            rounds=rounds,
            clients=list(CLIENTS),
            k=K,
            retriever_k=RETRIEVER_K,
            ranker_k=RANKER_K,
            documents=len(documents),
            distinct_queries=len(queries),
            answers_equal=correct,
            batching={mode: settings[mode]["batching"] for mode in MODES},
            threads={mode: settings[mode]["threads"] for mode in MODES},
            cpu_count=os.cpu_count(),
            load_average=list(os.getloadavg()),
        )
    )
    return records


# -- reporting ---------------------------------------------------------------------------------------
def _cells(records: Sequence[Mapping]) -> dict[tuple[str, int], Mapping[str, Any]]:
    return {
        (rec["params"]["mode"], rec["params"]["clients"]): rec["metrics"]
        for rec in records
        if rec["workload"] == WORKLOAD and rec["case"] == "load"
    }


def _settings(records: Sequence[Mapping]) -> Mapping[str, Any]:
    for rec in records:
        if rec["workload"] == WORKLOAD and rec["case"] == "settings":
            return {**rec["params"], **rec["metrics"]}
    return {}


def markdown(records: Sequence[Mapping]) -> str:
    """One row per client count and server: req/s, p50, p99, ratios to the unbatched server, queries per call."""
    cells = _cells(records)
    settings = _settings(records)
    lines = [
        f"### {TITLE}",
        "",
        "| clients | server | req/s | req/s vs unbatched | p50 | p99 | p99 vs unbatched | queries per call | errors |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for clients in CLIENTS:
        baseline = cells.get(("unbatched", clients))
        for mode in MODES:
            cell = cells.get((mode, clients))
            if cell is None:
                continue
            versus = mode != "unbatched" and baseline is not None
            batch = "-" if cell["mean_batch_queries"] is None else f"{cell['mean_batch_queries']:.1f}"
            lines.append(
                f"| {clients} | {MODE_NAMES[mode]} | {cell['requests_per_s']:,.0f} "
                f"| {format_ratio(ratio(cell['requests_per_s'], baseline['requests_per_s'])) if versus else '-'} "
                f"| {format_ms(cell['p50_s'])} ms | {format_ms(cell['p99_s'])} ms "
                f"| {format_ratio(ratio(baseline['p99_s'], cell['p99_s'])) if versus else '-'} "
                f"| {batch} | {cell['errors']} |"
            )
    threads = (settings.get("threads") or {}).get("batched") or {}
    batching = (settings.get("batching") or {}).get("batched") or {}
    equal = settings.get("answers_equal") or {}
    lines += [
        "",
        (
            f"Pipeline: TfIdf k={settings.get('retriever_k')} + rank.Encoder k={settings.get('ranker_k')} "
            f"({settings.get('encoder')}) + documents, towns ({settings.get('documents')} passages); every request "
            f'`{{"q": <one of {settings.get("distinct_queries")} distinct queries>, "k": {settings.get("k")}}}`. '
            f"Three `cherche-faiss serve` processes (batches of at most {batching.get('max_batch_size')} queries), "
            f"{threads.get('threads')} search thread(s) each (FAISS {threads.get('faiss_omp')}, torch "
            f"{threads.get('torch')}), loaded from this process with one request in flight per client; servers "
            f"taking turns per client count over {settings.get('rounds')} round(s). req/s: median over rounds; "
            "p50/p99: all requests pooled. Ratios against the unbatched server: req/s over its req/s, its p99 "
            "over this p99 (above 1, batching is ahead). Answers checked against the in-process pipeline: "
            + ", ".join(f"{MODE_NAMES[mode]} {'equal' if ok else '**DIFFERENT**'}" for mode, ok in equal.items())
            + "."
        ),
    ]
    return "\n".join(lines) + "\n"


def plot(records: Sequence[Mapping], results_dir: Path) -> list[Path]:
    """Throughput and p50/p99 latency against the number of clients, batched and unbatched."""
    plt = pyplot()

    cells = _cells(records)
    colors = {"batched": "tab:blue", "batched_no_wait": "tab:green", "unbatched": "tab:gray"}
    figure, (rate_ax, latency_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode in MODES:
        clients = [c for c in CLIENTS if (mode, c) in cells]
        name = MODE_NAMES[mode]
        rate_ax.plot(
            clients, [cells[(mode, c)]["requests_per_s"] for c in clients], "o-", color=colors[mode], label=name
        )
        latency_ax.plot(
            clients, [cells[(mode, c)]["p50_s"] * 1e3 for c in clients], "o-", color=colors[mode], label=f"{name} p50"
        )
        latency_ax.plot(
            clients, [cells[(mode, c)]["p99_s"] * 1e3 for c in clients], "s--", color=colors[mode], label=f"{name} p99"
        )
    for axis in (rate_ax, latency_ax):
        axis.set_xscale("log", base=2)
        axis.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        axis.set_xlabel("concurrent clients")
        axis.legend()
    rate_ax.set_ylim(bottom=0)
    rate_ax.set_ylabel("requests / s")
    rate_ax.set_title("Throughput")
    latency_ax.set_yscale("log")
    latency_ax.set_ylabel("ms per request (log)")
    latency_ax.set_title("Latency")
    figure.suptitle(TITLE)
    figure.tight_layout()
    return [save_figure(figure, results_dir, "server.png")]


def main(argv: list[str] | None = None) -> int:
    return run_alone(__doc__, run, markdown, plot, argv)


if __name__ == "__main__":
    sys.exit(main())
