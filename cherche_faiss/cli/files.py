"""``cherche-faiss build``, ``search``, ``info`` and ``export-onnx``: saves and exports on disk."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_file_parsers", "filter_argument", "FILE_COMMANDS"]


def add_file_parsers(commands: argparse._SubParsersAction) -> None:
    from .build import RETRIEVERS

    build = commands.add_parser(
        "build",
        help="build a pipeline from a JSONL corpus and save it (cherche_faiss.save: no pickle)",
        description="Read one JSON document per line, index it and save the pipeline to a folder that "
        "cherche-faiss search, info and serve (and cherche_faiss.load) read.",
    )
    build.add_argument("corpus", help="JSONL file, one document per line (.gz accepted)")
    build.add_argument("--out", required=True, help="folder to save to (an earlier save there is replaced atomically)")
    build.add_argument("--model", help="sentence-transformers model name or folder (default: the offline MiniLM)")
    build.add_argument(
        "--index",
        default="auto",
        help="FAISS index: auto (exact below 100,000 documents, IVF above), Flat, HNSW32, "
        "IVF4096,Flat, IVF4096,SQ8, IVF4096,PQ48 ... (default auto)",
    )
    build.add_argument("--retriever", default="encoder", choices=RETRIEVERS, help="default encoder (dense, MiniLM)")
    build.add_argument("--key", help="the documents' key field (default id, else _id)")
    build.add_argument("--on", nargs="+", help="fields to search (default: the first document's text fields)")
    build.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    build.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    build.add_argument("--batch-size", type=int, default=64, help="documents encoded per batch (default 64)")
    build.add_argument("--keys-only", action="store_true", help="hits hold keys and similarities, not whole documents")
    build.add_argument(
        "--embed-weights",
        action="store_true",
        help="store the model's files (safetensors) in the save, so that it loads where the model is not installed",
    )
    build.add_argument(
        "--onnx",
        action="store_true",
        help="answer queries with ONNX Runtime, without torch: with --model an ONNX export folder "
        "(cherche-faiss export-onnx), documents are encoded with it too; with a sentence-transformers "
        "model, they are encoded with torch and the save also holds the model exported to ONNX",
    )
    build.add_argument(
        "--int8",
        action="store_true",
        help="with --onnx and a sentence-transformers model: the save's ONNX copy has int8 weights "
        "(faster on CPUs with int8 instructions, cosine about 0.99 to the model's)",
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bars")

    search = commands.add_parser("search", help="load a saved pipeline and print the hits of queries as JSON")
    search.add_argument("path", help="folder written by cherche-faiss build or cherche_faiss.save")
    search.add_argument("queries", nargs="+", help="one query (prints a list of hits) or several (a list per query)")
    search.add_argument("-k", type=int, default=None, help="hits per query (default: the pipeline's)")
    search.add_argument(
        "--filter",
        type=filter_argument,
        metavar="JSON",
        help='search only the documents this filter allows: a JSON object such as \'{"year": {"$gte": 2020}}\' '
        "or a JSON array of allowed keys (see docs/filtering.md)",
    )
    search.add_argument("--mmap", action="store_true", help="map the indexes from disk instead of reading them")
    search.add_argument("--no-verify", action="store_true", help="skip the SHA-256 checks (sizes are still checked)")
    search.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    search.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "onnx", "torch"),
        help="encoder of a save that holds ONNX copies: auto (ONNX when onnxruntime is installed), "
        "onnx (never imports torch) or torch (default auto)",
    )

    info = commands.add_parser("info", help="print what a save holds: components, sizes, versions, checksums")
    info.add_argument("path", help="folder written by cherche-faiss build or cherche_faiss.save")
    info.add_argument("--no-verify", action="store_true", help="do not check the files' SHA-256")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    export = commands.add_parser(
        "export-onnx",
        help="export a sentence-transformers model to ONNX, for encoding without torch",
        description="Export the model's transformer with torch.onnx.export and write model.onnx, tokenizer.json, "
        "the pooling and length settings and a manifest with SHA-256s. Needs torch and sentence-transformers; "
        "the folder is then read by OnnxEncoder with onnxruntime and tokenizers only.",
    )
    export.add_argument("model", help="sentence-transformers model name or folder")
    export.add_argument("--out", required=True, help="folder to write (an earlier export there is replaced)")
    export.add_argument(
        "--int8",
        action="store_true",
        help="quantise the weights to int8 (smaller and faster, cosine about 0.99 to the model's)",
    )
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")


def filter_argument(text: str) -> Any:
    """``--filter``: JSON, checked with :func:`~cherche_faiss.filters.parse_filter` before anything is loaded.

    Raises
    ------
    argparse.ArgumentTypeError
        The text is not JSON, or not a valid filter (the message names the offending part).

    Examples
    --------
    >>> filter_argument('{"year": {"$gte": 2020}}')
    {'year': {'$gte': 2020}}
    >>> filter_argument("{year: 2020}")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: not valid JSON (Expecting property name enclosed in double quotes at character 1) ...
    """
    import json

    from ..exceptions import InvalidFilterError
    from ..filters import parse_filter

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({error.msg} at character {error.pos}) in {text!r}. Quote it for the shell and "
            """write keys and strings in double quotes, e.g. --filter '{"year": {"$gte": 2020}, "lang": "en"}'."""
        ) from None
    try:
        parse_filter(value)
    except InvalidFilterError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _build(args: argparse.Namespace) -> int:
    import json

    from .. import persist
    from .build import build_pipeline, read_jsonl

    documents = read_jsonl(args.corpus)
    pipeline = build_pipeline(
        documents,
        key=args.key,
        on=args.on,
        retriever=args.retriever,
        model=args.model,
        index=args.index,
        k=args.k,
        device=args.device,
        batch_size=args.batch_size,
        documents_in_hits=not args.keys_only,
        embed_weights=args.embed_weights,
        show_progress=not args.no_progress,
    )
    # A sentence-transformers encoder gets its ONNX copy in the save (an ONNX model needs none).
    if args.int8 and not args.onnx:
        from ..exceptions import InvalidInputError

        raise InvalidInputError("--int8 sets the precision of the ONNX copy: pass it with --onnx.")
    path = persist.save(pipeline, args.out, onnx=("int8" if args.int8 else True) if args.onnx else False)
    print(json.dumps({"saved": str(path), "documents": len(documents), "pipeline": repr(pipeline)}, indent=1))
    return 0


def _search(args: argparse.Namespace) -> int:
    import json

    from .. import persist

    pipeline = persist.load(
        args.path, device=args.device, mmap=args.mmap, verify=not args.no_verify, backend=args.backend
    )
    queries = args.queries[0] if len(args.queries) == 1 else args.queries
    options = {} if args.filter is None else {"filter": args.filter}
    print(json.dumps(pipeline(queries, k=args.k, **options), indent=1, ensure_ascii=False, default=str))
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from ..persist.inspect import describe_save, format_description

    info = describe_save(args.path, verify=not args.no_verify)
    print(json.dumps(info, indent=1, default=str) if args.json else format_description(info))
    return 0 if info["checksums"] in ("verified", "not checked") else 1


def _export_onnx(args: argparse.Namespace) -> int:
    import json

    from ..encoders import export_onnx
    from ..encoders._onnx_files import MANIFEST

    folder = export_onnx(args.model, args.out, quantize="int8" if args.int8 else None, opset=args.opset)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    print(
        json.dumps(
            {
                "exported": str(folder),
                "settings": manifest["settings"],
                "fidelity": manifest["fidelity"],
                "bytes": sum(entry["size"] for entry in manifest["files"].values()),
            },
            indent=1,
        )
    )
    return 0


#: The commands of this module, by name.
FILE_COMMANDS = {"build": _build, "search": _search, "info": _info, "export-onnx": _export_onnx}
