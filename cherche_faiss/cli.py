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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(queries=args.queries, keep=args.keep)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
