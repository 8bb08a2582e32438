"""The ``cherche-faiss`` command line."""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from .files import FILE_COMMANDS, add_file_parsers
from .serve import add_serve_parser, serve_command

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
    evaluate.add_argument(
        "folder", help="folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv (gzip accepted)"
    )
    evaluate.add_argument(
        "--pipeline",
        action="append",
        dest="pipelines",
        help="bm25, tfidf, encoder, 'bm25|encoder' or 'bm25+encoder' (repeatable; default bm25)",
    )
    evaluate.add_argument("--model", help="sentence-transformers model name or folder (default: the offline MiniLM)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100])
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_file_parsers(commands)
    add_serve_parser(commands)
    return parser


def _run_reporting_errors(command: str, handler, args: argparse.Namespace) -> int:
    """Run ``handler(args)``; a library error is one line on stderr and exit status 1, not a traceback."""
    from ..exceptions import CherFaissError

    try:
        return handler(args)
    except CherFaissError as error:
        print(f"cherche-faiss {command}: error: {error}", file=sys.stderr)
        return 1


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from ..evaluate.report import markdown_table, run_recipes

    report = run_recipes(args.folder, args.pipelines or ["bm25"], model=args.model, split=args.split, ks=args.ks)
    print(json.dumps(report["rows"], indent=1) if args.json else markdown_table(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(queries=args.queries, keep=args.keep)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "serve":
        return serve_command(args)
    if args.command in FILE_COMMANDS:
        return _run_reporting_errors(args.command, FILE_COMMANDS[args.command], args)
    return 2  # pragma: no cover - argparse rejects unknown commands
