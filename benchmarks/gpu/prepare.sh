#!/usr/bin/env bash
# Prepare the two carries of the seed's GPU check (see README.md here): run from the repository root.
# The model (91 MB) and a faiss-cpu wheel (19 MB) do not fit in one 64 MiB carry, so they travel in two
# calls to the same warm machine: .gpu/a (wheels, the model's small files, its first 42 MB, texts, the
# script) and .gpu/b (the rest of the weights).
set -euo pipefail
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/a/model_small .gpu/b
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .gpu/a faiss-cpu==1.15.1 bm25s==0.3.16 pystemmer==3.1.0
model=$(.venv/bin/python -c "from cherche_faiss.data import minilm_path; print(minilm_path())")
(cd "$model" && find . -type f ! -name model.safetensors -exec cp --parents {} "$OLDPWD/.gpu/a/model_small/" \;)
head -c 42000000 "$model/model.safetensors" > .gpu/a/partA
tail -c +42000001 "$model/model.safetensors" > .gpu/b/partB
cp benchmarks/gpu/seed_on_gpu.py .gpu/a/
.venv/bin/python - <<'PY'
import gzip, itertools, json
corpus = "../shared/data/scifact/corpus.jsonl.gz"
docs = [json.loads(line) for line in itertools.islice(gzip.open(corpus, "rt"), 512)]
claims = [json.loads(line)["text"] for line in itertools.islice(open("../shared/data/scifact/queries.jsonl"), 300)]
json.dump({"abstracts": [d["title"] + " " + d["text"] for d in docs], "queries": claims}, open(".gpu/a/texts.json", "w"))
PY
echo "model path to recreate on the GPU machine: $model"
du -sh .gpu/a .gpu/b
