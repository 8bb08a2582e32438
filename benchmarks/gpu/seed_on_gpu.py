"""The seed's GPU case on the lent GPU machine: MiniLM on cuda, the pipeline pickled and saved there.

Writes to $OUT: seed.pkl (pickle, model by reference), seed_save.tar (cherche_faiss.save, by reference),
expected.json (the hits on the GPU), report.json (timings, devices, the ONNX-copy check).
"""

import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np

OUT = os.environ["OUT"]
MODEL = sys.argv[1]
DEVICE = os.environ.get("SEED_DEVICE", "cuda")  # "cpu" for a dry run here
report = {"python": platform.python_version()}

import torch  # noqa: E402

report["torch"] = torch.__version__
report["cuda_available"] = torch.cuda.is_available()
report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None

import faiss  # noqa: E402
import onnxruntime  # noqa: E402
import sentence_transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

import cherche_faiss  # noqa: E402
from cherche_faiss import data, rank, retrieve  # noqa: E402

report.update(
    faiss=faiss.__version__,
    sentence_transformers=sentence_transformers.__version__,
    onnxruntime=onnxruntime.__version__,
    onnx_providers=onnxruntime.get_available_providers(),
    faiss_gpus=faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
)

# -- the seed, as written in the README, with the model on cuda --------------------------------------
documents = data.load_towns()
model = SentenceTransformer(MODEL, device=DEVICE)
report["model_device"] = str(model.device)
retriever = retrieve.TfIdf(key="id", on=["title", "article"], documents=documents, k=30)
ranker = rank.Encoder(key="id", on=["title", "article"], encoder=model.encode, k=10)
search = retriever + ranker
search.add(documents=documents)
queries = ["bordeaux", "wine", "aerospace industry", "football club", "metro", "paris", "toulouse airbus"]
expected = search(queries)
json.dump({"queries": queries, "hits": expected}, open(f"{OUT}/expected.json", "w"))
report["encoder_device_in_pipeline"] = str(ranker.encoder.model.device)

with open(f"{OUT}/seed.pkl", "wb") as handle:
    pickle.dump(search, handle)
report["pickle_bytes"] = os.path.getsize(f"{OUT}/seed.pkl")
pickled = open(f"{OUT}/seed.pkl", "rb").read()
report["pickle_mentions_cuda_tensor"] = b"torch.cuda" in pickled or b"_rebuild_device_tensor" in pickled

saved = cherche_faiss.save(search, "/tmp/seed_save")
with tarfile.open(f"{OUT}/seed_save.tar", "w") as tar:
    tar.add(saved, arcname="seed_save")

# The ONNX copy is exported on the GPU machine (90 MB: too large to bring back), then loaded there in
# a CPU-only process without torch and compared.
started = time.perf_counter()
onnx_saved = cherche_faiss.save(search, "/tmp/seed_save_onnx", onnx=True)
report["save_onnx_s"] = time.perf_counter() - started
child = r"""
import json, sys, time
t = time.perf_counter()
import cherche_faiss
s = cherche_faiss.load(sys.argv[1], backend="onnx")
hits = s(json.loads(sys.argv[2]))
print(json.dumps({"hits": hits, "s": time.perf_counter() - t, "torch": "torch" in sys.modules}))
"""
env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
for name, path in (("onnx_cpu_child", onnx_saved),):
    done = subprocess.run(
        [sys.executable, "-c", child, str(path), json.dumps(queries)], capture_output=True, text=True, env=env
    )
    if done.returncode:
        report[name] = {"error": done.stderr[-2000:]}
        continue
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    report[name] = {
        "same_ids": [[h["id"] for h in a] for a in answer["hits"]] == [[h["id"] for h in a] for a in expected],
        "max_similarity_diff": max(
            abs(a["similarity"] - b["similarity"]) for x, y in zip(answer["hits"], expected) for a, b in zip(x, y)
        ),
        "load_and_answer_s": answer["s"],
        "torch_imported": answer["torch"],
    }

# -- encoding speed there: torch on cuda vs ONNX (CPU provider unless onnxruntime-gpu is there) -------
texts = json.load(open(sys.argv[2]))
abstracts, claims = texts["abstracts"], texts["queries"]
from cherche_faiss.encoders import OnnxEncoder, export_onnx  # noqa: E402

folder = export_onnx(model, "/tmp/minilm_onnx")
onnx = OnnxEncoder(folder)
speed = {}


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


for batch in (32, 64):
    model.encode(abstracts[:64], batch_size=batch)
    onnx.encode(abstracts[:64], batch_size=batch)
    rows = {}
    for _ in range(2):
        sync()
        t = time.perf_counter()
        model.encode(abstracts, batch_size=batch)
        sync()
        rows.setdefault("torch_cuda_docs_per_s", []).append(len(abstracts) / (time.perf_counter() - t))
        t = time.perf_counter()
        onnx.encode(abstracts, batch_size=batch)
        rows.setdefault("onnx_cpu_docs_per_s", []).append(len(abstracts) / (time.perf_counter() - t))
    speed[f"batch_{batch}"] = {name: max(values) for name, values in rows.items()}
single = {"torch_cuda_ms": [], "onnx_cpu_ms": []}
for claim in claims[:100]:
    t = time.perf_counter()
    model.encode([claim])
    single["torch_cuda_ms"].append((time.perf_counter() - t) * 1e3)
    t = time.perf_counter()
    onnx.encode([claim])
    single["onnx_cpu_ms"].append((time.perf_counter() - t) * 1e3)
speed["single_query_p50_ms"] = {name: float(np.median(values)) for name, values in single.items()}
gpu_vectors = model.encode(abstracts[:128], convert_to_numpy=True)
onnx_vectors = onnx.encode(abstracts[:128])
speed["cosine_onnx_cpu_vs_torch_cuda_min"] = float((gpu_vectors * onnx_vectors).sum(axis=1).min())
speed["onnx_threads"] = os.cpu_count()
report["speed"] = speed
json.dump(report, open(f"{OUT}/report.json", "w"), indent=1)
print(json.dumps(report, indent=1))
shutil.rmtree("/tmp/seed_save_onnx", ignore_errors=True)
