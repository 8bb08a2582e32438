"""The ``cherche-faiss`` command line."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cherche-faiss", description="Neural search on FAISS, Cherche's API.")
    parser.add_argument("--version", action="version", version=f"cherche-faiss {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="build Cherche's Save & Load pipeline on the towns corpus, pickle it, reload it "
        "in a fresh CPU-only process and compare the answers",
    )
    demo.add_argument("--query", action="append", dest="queries", help="a query to answer (repeatable)")
    demo.add_argument("--keep", metavar="PATH", help="keep the pickle at PATH instead of a temporary file")
    evaluate = commands.add_parser("evaluate", help="evaluate pipelines on a BEIR-format folder and print a table")
    evaluate.add_argument("folder", help="folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv (gzip accepted)")
    evaluate.add_argument(
        "--pipeline", action="append", dest="pipelines",
        help="bm25, tfidf, encoder, 'bm25|encoder' or 'bm25+encoder' (repeatable; default bm25)",
    )
    evaluate.add_argument("--model", help="sentence-transformers model name or folder (default: the offline MiniLM)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100])
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_persist_parsers(commands)
    _add_serve_parser(commands)
    return parser


# -- build, search, info --------------------------------------------------------------------------
def _add_persist_parsers(commands: argparse._SubParsersAction) -> None:
    from .build import RETRIEVERS

    build = commands.add_parser(
        "build", help="build a pipeline from a JSONL corpus and save it (cherche_faiss.save: no pickle)",
        description="Read one JSON document per line, index it and save the pipeline to a folder that "
        "cherche-faiss search, info and serve (and cherche_faiss.load) read.",
    )
    build.add_argument("corpus", help="JSONL file, one document per line (.gz accepted)")
    build.add_argument("--out", required=True, help="folder to save to (an earlier save there is replaced atomically)")
    build.add_argument("--model", help="sentence-transformers model name or folder (default: the offline MiniLM)")
    build.add_argument("--index", default="auto",
                       help="FAISS index: auto (exact below 100,000 documents, IVF above), Flat, HNSW32, "
                       "IVF4096,Flat, IVF4096,SQ8, IVF4096,PQ48 ... (default auto)")
    build.add_argument("--retriever", default="encoder", choices=RETRIEVERS, help="default encoder (dense, MiniLM)")
    build.add_argument("--key", help="the documents' key field (default id, else _id)")
    build.add_argument("--on", nargs="+", help="fields to search (default: the first document's text fields)")
    build.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    build.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    build.add_argument("--batch-size", type=int, default=64, help="documents encoded per batch (default 64)")
    build.add_argument("--keys-only", action="store_true", help="hits hold keys and similarities, not whole documents")
    build.add_argument("--embed-weights", action="store_true",
                       help="store the model's files (safetensors) in the save, so that it loads where the model is not installed")
    build.add_argument("--no-progress", action="store_true", help="no progress bars")

    search = commands.add_parser("search", help="load a saved pipeline and print the hits of queries as JSON")
    search.add_argument("path", help="folder written by cherche-faiss build or cherche_faiss.save")
    search.add_argument("queries", nargs="+", help="one query (prints a list of hits) or several (a list per query)")
    search.add_argument("-k", type=int, default=None, help="hits per query (default: the pipeline's)")
    search.add_argument("--mmap", action="store_true", help="map the indexes from disk instead of reading them")
    search.add_argument("--no-verify", action="store_true", help="skip the SHA-256 checks (sizes are still checked)")
    search.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")

    info = commands.add_parser("info", help="print what a save holds: components, sizes, versions, checksums")
    info.add_argument("path", help="folder written by cherche-faiss build or cherche_faiss.save")
    info.add_argument("--no-verify", action="store_true", help="do not check the files' SHA-256")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")


def _build(args: argparse.Namespace) -> int:
    import json

    from . import persist
    from .build import build_pipeline, read_jsonl

    documents = read_jsonl(args.corpus)
    pipeline = build_pipeline(
        documents, key=args.key, on=args.on, retriever=args.retriever, model=args.model, index=args.index,
        k=args.k, device=args.device, batch_size=args.batch_size, documents_in_hits=not args.keys_only,
        embed_weights=args.embed_weights, show_progress=not args.no_progress,
    )
    path = persist.save(pipeline, args.out)
    print(json.dumps({"saved": str(path), "documents": len(documents), "pipeline": repr(pipeline)}, indent=1))
    return 0


def _search(args: argparse.Namespace) -> int:
    import json

    from . import persist

    pipeline = persist.load(args.path, device=args.device, mmap=args.mmap, verify=not args.no_verify)
    queries = args.queries[0] if len(args.queries) == 1 else args.queries
    print(json.dumps(pipeline(queries, k=args.k), indent=1, ensure_ascii=False, default=str))
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from .persist.inspect import describe_save, format_description

    info = describe_save(args.path, verify=not args.no_verify)
    print(json.dumps(info, indent=1, default=str) if args.json else format_description(info))
    return 0 if info["checksums"] in ("verified", "not checked") else 1


def _run_reporting_errors(command: str, handler, args: argparse.Namespace) -> int:
    """Run ``handler(args)``; a library error is one line on stderr and exit status 1, not a traceback."""
    from .exceptions import CherFaissError

    try:
        return handler(args)
    except CherFaissError as error:
        print(f"cherche-faiss {command}: error: {error}", file=sys.stderr)
        return 1


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluate.report import markdown_table, run_recipes

    report = run_recipes(args.folder, args.pipelines or ["bm25"], model=args.model, split=args.split, ks=args.ks)
    print(json.dumps(report["rows"], indent=1) if args.json else markdown_table(report))
    return 0


# -- serve ----------------------------------------------------------------------------------------
API_KEY_ENV = "CHERCHE_FAISS_API_KEY"


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help='serve a saved pipeline over HTTP (needs pip install "cherche-faiss[server]")',
        description="Serve a saved pipeline with FastAPI and uvicorn: POST /search, GET /health, GET /info, "
        "/docs. Requests arriving together are searched in one batch.",
    )
    serve.add_argument("path", help="folder written by cherche_faiss.save(pipeline, folder), or a pickle with --allow-pickle")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    serve.add_argument("--allow-pickle", action="store_true",
                       help="accept a pickle file: unpickling runs code chosen by its author, so only for files you trust")
    serve.add_argument("--mmap", action="store_true", help="map the saved folder's vectors from disk instead of reading them")
    serve.add_argument("--api-key-env", metavar="NAME",
                       help=f"require the key held by environment variable NAME in the X-API-Key header "
                       f"(default: ${API_KEY_ENV} when set; never pass the key itself on the command line)")
    serve.add_argument("--max-batch-size", type=int, default=64, help="most queries per pipeline call (default 64)")
    serve.add_argument("--max-wait-ms", type=float, default=2.0,
                       help="how long a request waits for others to join its batch (default 2)")
    serve.add_argument("--no-batching", action="store_true", help="search each request alone")
    serve.add_argument("--max-pending", type=int, default=None, metavar="N",
                       help="most queries waiting for the worker; beyond, /search answers 503 with Retry-After "
                       "(default 16 x --max-batch-size, 1024)")
    serve.add_argument("--max-k", type=int, default=1000, help="largest k a request may ask for (default 1000)")
    serve.add_argument("--max-queries", type=int, default=64, help="most queries in one request (default 64)")
    serve.add_argument("--max-query-length", type=int, default=2048, help="most characters per query (default 2048)")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)")
    serve.add_argument("--threads", type=int, default=None,
                       help="threads FAISS and torch use per search (default: available cores - 1)")
    serve.add_argument("--no-warmup", action="store_true", help="do not answer a warm-up query before serving")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.add_argument("--no-access-log", action="store_true", help="do not log every request")


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-env NAME, else from $CHERCHE_FAISS_API_KEY, else None."""
    import os

    from .exceptions import InvalidInputError

    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "")
        if not key.strip():
            raise InvalidInputError(
                f"--api-key-env {args.api_key_env}: that environment variable is not set or is empty. "
                f"Export it (export {args.api_key_env}=...) before starting the server."
            )
        return key
    return os.environ.get(API_KEY_ENV) or None


def _serve(args: argparse.Namespace) -> int:
    import logging

    from .exceptions import CherFaissError

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logger = logging.getLogger("cherche_faiss")
    logger.addHandler(handler)
    logger.setLevel(args.log_level.upper())
    try:
        from .server import create_app, load_served, require_server_extra, serve
        from .server.runner import is_loopback

        require_server_extra()  # before loading a pipeline for nothing
        api_key = _api_key(args)
        pipeline = load_served(args.path, allow_pickle=args.allow_pickle, mmap=args.mmap)
        app = create_app(
            pipeline, api_key=api_key, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
            batching=not args.no_batching, max_pending=args.max_pending, max_k=args.max_k,
            max_queries=args.max_queries, max_query_length=args.max_query_length,
            max_body_bytes=args.max_body_bytes, threads=args.threads, warmup=not args.no_warmup, freeze_gc=True,
            source=args.path,
        )
        if api_key is not None:
            logger.info("an API key is required on /search and /info (X-API-Key header)")
        elif not is_loopback(args.host):
            logger.warning("listening on %s without an API key: anyone who reaches this port can search. "
                           "Set %s or pass --api-key-env NAME.", args.host, API_KEY_ENV)
        try:
            started = serve(app, host=args.host, port=args.port, log_level=args.log_level,
                            access_log=not args.no_access_log)
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once it has shut down cleanly
            started = True
    except CherFaissError as error:
        print(f"cherche-faiss serve: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # while loading
        return 130
    finally:
        logger.removeHandler(handler)
    return 0 if started else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(queries=args.queries, keep=args.keep)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "serve":
        return _serve(args)
    handlers = {"build": _build, "search": _search, "info": _info}
    if args.command in handlers:
        return _run_reporting_errors(args.command, handlers[args.command], args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
