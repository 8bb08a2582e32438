"""Strict JSON reading for the safe format.

Python's ``json`` reads ``NaN``, ``Infinity`` and ``-Infinity``, which are not
JSON and which a save never writes (``allow_nan=False``; such floats are tagged
``$float``): a file holding them was edited or damaged, and is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..exceptions import CorruptFileError

__all__ = ["parse", "loads", "read"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse(text: str | bytes) -> Any:
    """``json.loads(text)``, refusing ``NaN`` and the infinities.

    Raises
    ------
    ValueError
        ``text`` is not valid JSON (``json.JSONDecodeError`` is one).
    RecursionError
        ``text`` nests deeper than Python can parse.
    """
    return json.loads(text, parse_constant=_reject_constant)


def loads(text: str, what: str) -> Any:
    """:func:`parse`, with invalid JSON said as a :class:`CorruptFileError` naming ``what``."""
    try:
        return parse(text)
    except (ValueError, RecursionError) as error:
        raise CorruptFileError(f"{what} is not valid JSON ({error}).") from None


def read(path: Path, what: str, name: str | None = None) -> Any:
    """The JSON value in the file ``path`` (shown as ``name``, by default its file name).

    Raises
    ------
    CorruptFileError
        The file is not UTF-8 text or not valid JSON.
    """
    name = path.name if name is None else name
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CorruptFileError(f"{what}: {name} is not UTF-8 text ({error}).") from None
    return loads(text, f"{what} ({name})")
