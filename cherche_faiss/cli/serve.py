"""``cherche-faiss serve``: a saved pipeline over HTTP (FastAPI and uvicorn, the server extra)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_serve_parser", "serve_command", "API_KEY_ENV"]

# -- serve ----------------------------------------------------------------------------------------
API_KEY_ENV = "CHERCHE_FAISS_API_KEY"


def add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help='serve a saved pipeline over HTTP (needs pip install "cherche-faiss[server]")',
        description="Serve a saved pipeline with FastAPI and uvicorn: POST /search, GET /health, GET /info, "
        "/docs. Requests arriving together are searched in one batch.",
    )
    serve.add_argument(
        "path", help="folder written by cherche_faiss.save(pipeline, folder), or a pickle with --allow-pickle"
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    serve.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept a pickle file: unpickling runs code chosen by its author, so only for files you trust",
    )
    serve.add_argument(
        "--mmap", action="store_true", help="map the saved folder's vectors from disk instead of reading them"
    )
    serve.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "onnx", "torch"),
        help="encoder of a save that holds ONNX copies (cherche_faiss.save(..., onnx=True)): auto "
        "(ONNX when onnxruntime is installed), onnx (never imports torch) or torch (default auto)",
    )
    serve.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        default=None,
        help="serve the shards of sharded retrievers (cherche_faiss.distributed) from a Ray cluster, one actor "
        "per shard loading its own folder: auto (the cluster this machine belongs to), HOST:PORT, "
        "ray://HOST:10001, or local (a new local cluster); the save's path must be one every node reads. "
        "Without it, shards load into this process",
    )
    serve.add_argument(
        "--api-key-env",
        metavar="NAME",
        help=f"require the key held by environment variable NAME in the X-API-Key header "
        f"(default: ${API_KEY_ENV} when set; never pass the key itself on the command line)",
    )
    serve.add_argument("--max-batch-size", type=int, default=64, help="most queries per pipeline call (default 64)")
    serve.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="how long a request waits for others to join its batch (default 2)",
    )
    serve.add_argument("--no-batching", action="store_true", help="search each request alone")
    serve.add_argument(
        "--max-pending",
        type=int,
        default=None,
        metavar="N",
        help="most queries waiting for the worker; beyond, /search answers 503 with Retry-After "
        "(default 16 x --max-batch-size, 1024)",
    )
    serve.add_argument("--max-k", type=int, default=1000, help="largest k a request may ask for (default 1000)")
    serve.add_argument("--max-queries", type=int, default=64, help="most queries in one request (default 64)")
    serve.add_argument("--max-query-length", type=int, default=2048, help="most characters per query (default 2048)")
    serve.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)")
    serve.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads FAISS, torch and onnxruntime use per search (default: available cores - 1)",
    )
    serve.add_argument("--no-warmup", action="store_true", help="do not answer a warm-up query before serving")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    serve.add_argument("--no-access-log", action="store_true", help="do not log every request")


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-env NAME, else from $CHERCHE_FAISS_API_KEY, else None."""
    import os

    from ..exceptions import InvalidInputError

    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "")
        if not key.strip():
            raise InvalidInputError(
                f"--api-key-env {args.api_key_env}: that environment variable is not set or is empty. "
                f"Export it (export {args.api_key_env}=...) before starting the server."
            )
        return key
    return os.environ.get(API_KEY_ENV) or None


def serve_command(args: argparse.Namespace) -> int:
    import logging

    from ..exceptions import CherFaissError

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logger = logging.getLogger("cherche_faiss")
    logger.addHandler(handler)
    logger.setLevel(args.log_level.upper())
    try:
        from ..server import create_app, load_served, require_server_extra, serve
        from ..server.runner import is_loopback

        require_server_extra()  # before loading a pipeline for nothing
        api_key = _api_key(args)
        pipeline = load_served(
            args.path,
            allow_pickle=args.allow_pickle,
            mmap=args.mmap,
            backend=args.backend,
            ray_address=args.ray_address,
        )
        app = create_app(
            pipeline,
            api_key=api_key,
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            batching=not args.no_batching,
            max_pending=args.max_pending,
            max_k=args.max_k,
            max_queries=args.max_queries,
            max_query_length=args.max_query_length,
            max_body_bytes=args.max_body_bytes,
            threads=args.threads,
            warmup=not args.no_warmup,
            freeze_gc=True,
            source=args.path,
        )
        if api_key is not None:
            logger.info("an API key is required on /search and /info (X-API-Key header)")
        elif not is_loopback(args.host):
            logger.warning(
                "listening on %s without an API key: anyone who reaches this port can search. "
                "Set %s or pass --api-key-env NAME.",
                args.host,
                API_KEY_ENV,
            )
        try:
            started = serve(
                app, host=args.host, port=args.port, log_level=args.log_level, access_log=not args.no_access_log
            )
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
