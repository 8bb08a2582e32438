"""A tiny exported model for unit tests: an embedding-table ONNX graph and a word-level tokenizer.

It has the layout :func:`cherche_faiss.encoders.export_onnx` writes (``model.onnx``,
``tokenizer.json``, the sentence-transformers files and, on request, the
manifest with SHA-256s), so that :class:`~cherche_faiss.encoders.OnnxEncoder`
runs its real code path (onnxruntime, tokenizers, pooling) in milliseconds
and without torch. ``reference_vectors`` computes what the encoder must return.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = sorted(
    {
        word
        for text in [
            "paris france eiffel tower capital city montreal quebec canada largest bordeaux red wine garonne",
            "toulouse aircraft airbus based there lyon food silk history rennes brittany metro is the of in and",
            "for its known famous with a builds stands",
        ]
        for word in text.split()
    }
)
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def tokenizer_json(max_length: int = 64) -> str:
    """A lower-casing word-level tokenizer with [CLS] ... [SEP], padded to 24 and cut at 64.

    The encoder must override both: padding to each batch's longest text, truncation at max_seq_length.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocabulary = {token: number for number, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    # What the encoder must override: a fixed padding length and a shorter truncation.
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=24)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer.to_str()


def table(dimension: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(SPECIAL) + len(WORDS), dimension)).astype(np.float32)


def write_model(folder: Path, dimension: int = 8) -> None:
    """``model.onnx``: token vectors = rows of an embedding table (input_ids -> Gather)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "sequence", dimension])
    weights = numpy_helper.from_array(table(dimension), name="table")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["token_embeddings"], axis=0)],
        "tiny",
        inputs,
        [output],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))


def make_tiny_export(
    folder: Path,
    pooling: str | list = "mean",
    normalize: bool = True,
    manifest: bool = True,
    max_seq_length: int = 16,
    dimension: int = 8,
    extra_modules: tuple = (),
) -> Path:
    """Write a tiny export to ``folder`` (created) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    write_model(folder, dimension)
    (folder / "tokenizer.json").write_text(tokenizer_json(), encoding="utf-8")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    for kind in extra_modules:
        modules.append(
            {
                "idx": len(modules),
                "name": str(len(modules)),
                "path": kind,
                "type": f"sentence_transformers.models.{kind}",
            }
        )
    (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": dimension, "pooling_mode": pooling, "include_prompt": True}),
        encoding="utf-8",
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}), encoding="utf-8")
    if manifest:
        from cherche_faiss.encoders._onnx_files import OnnxSettings
        from cherche_faiss.encoders.onnx_export import _file_table, _write_manifest

        settings = OnnxSettings(
            max_seq_length=max_seq_length,
            pooling=[pooling] if isinstance(pooling, str) else pooling,
            normalize=normalize,
            dimension=dimension,
        )
        _write_manifest(
            folder,
            _file_table(folder),
            settings,
            "tiny",
            ["input_ids", "attention_mask", "token_type_ids"],
            17,
            {"min_cosine": 1.0},
        )
    return folder


def reference_vectors(texts: list[str], max_seq_length: int = 16, normalize: bool = True) -> np.ndarray:
    """Mean of the table rows of each text's tokens ([CLS] and [SEP] included), truncated, optionally normalised."""
    vocabulary = {token: number for number, token in enumerate(SPECIAL + WORDS)}
    rows = table()
    vectors = []
    for text in texts:
        words = [vocabulary.get(word, 1) for word in _words(text.lower())][: max_seq_length - 2]
        vector = rows[[2, *words, 3]].mean(axis=0)
        vectors.append(vector / np.linalg.norm(vector) if normalize else vector)
    return np.array(vectors, dtype=np.float32)


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"\w+|[^\w\s]+", text)
