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
    _add_serve_parser(commands)
    return parser


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
            batching=not args.no_batching, max_k=args.max_k, max_queries=args.max_queries,
            max_query_length=args.max_query_length, max_body_bytes=args.max_body_bytes, threads=args.threads,
            warmup=not args.no_warmup, freeze_gc=True, source=args.path,
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
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
