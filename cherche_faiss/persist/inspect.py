"""What a save holds, read from its manifest without building anything (``cherche-faiss info``)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from .._version import __version__
from ..exceptions import CherFaissError, IncompatibleStateError
from ._digest import verify_files
from ._opened import OpenedSave
from .safe import read_save

__all__ = ["describe_save", "format_description"]


def _shown(value: Any) -> Any:
    """A parameter as it reads in the manifest, with references and files summarised."""
    if isinstance(value, dict):
        if "$component" in value:
            return f"<component {value['$component']}>"
        if "$tuple" in value:
            return tuple(_shown(item) for item in value["$tuple"]) if isinstance(value["$tuple"], list) else value
        tags = [key for key in value if isinstance(key, str) and key.startswith("$")]
        if tags:
            return f"<{tags[0][1:]}>"
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


def _node(nodes: list, number: int, seen: set[int]) -> dict[str, Any]:
    node = nodes[number]
    described: dict[str, Any] = {"class": str(node.get("class", "?")).rpartition(".")[2], "component": number}
    if number in seen:
        described["shared"] = True  # the same object appears earlier in the tree
        return described
    seen.add(number)
    params = node.get("params", {}) if isinstance(node.get("params"), dict) else {}
    state = node.get("state", {}) if isinstance(node.get("state"), dict) else {}
    described["params"] = {name: _shown(value) for name, value in params.items() if not _is_reference(value)}
    if isinstance(params.get("files"), dict):  # an embedded ONNX model: its file names, not their tags
        described["params"]["files"] = f"<{len(params['files'])} embedded files>"
    for name in ("_keys", "_documents", "_texts"):
        count = _count(state.get(name))
        if count is not None:
            described["documents"] = count
    index = state.get("_index")
    if isinstance(index, dict) and index.get("$object") == "faiss.Index" and isinstance(index.get("value"), dict):
        facts = index["value"]
        described["faiss"] = {"file": facts.get("file"), "vectors": facts.get("ntotal"), "dimension": facts.get("d")}
    children = []
    for value in [*params.values(), *state.values()]:
        for reference in _references(value):
            if isinstance(reference, int) and 0 <= reference < len(nodes):
                children.append(_node(nodes, reference, seen))
    if children:
        described["children"] = children
    copy = node.get("onnx")
    if isinstance(copy, int) and not isinstance(copy, bool) and 0 <= copy < len(nodes):
        described["onnx_copy"] = _node(nodes, copy, seen)  # what load(..., backend="onnx") answers with
    return described


def _is_reference(value: Any) -> bool:
    """A parameter holding components (shown as children, not as a value)."""
    return isinstance(value, (dict, list)) and bool(_references(value))


def _references(value: Any) -> list:
    if isinstance(value, dict):
        if "$component" in value:
            return [value["$component"]]
        return [ref for item in value.values() for ref in _references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


def _count(value: Any) -> int | None:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict) and isinstance(value.get("n"), int):
        return value["n"]
    return None


def describe_save(path: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Describe the save at ``path``: versions, components, sizes, files and their checksums.

    Nothing is built and no file but the manifest is parsed; with ``verify``
    every file's SHA-256 is checked (``"checksums": "verified"``), and damage is
    reported in ``"checksums"`` rather than raised.

    Examples
    --------
    >>> import os, tempfile
    >>> import cherche_faiss
    >>> from cherche_faiss import retrieve
    >>> retriever = retrieve.TfIdf(key="id", on="title", documents=[{"id": 0, "title": "Paris"}])
    >>> path = cherche_faiss.save(retriever, os.path.join(tempfile.mkdtemp(), "search"))
    >>> info = describe_save(path)
    >>> info["components"]["class"], info["components"]["documents"], info["checksums"]
    ('TfIdf', 1, 'verified')
    """
    return read_save(Path(os.path.abspath(os.fspath(path))), functools.partial(_describe, verify=verify))


def _describe(opened: OpenedSave, manifest: dict[str, Any], verify: bool) -> dict[str, Any]:
    files = manifest.get("files")
    nodes = manifest.get("components")
    if not isinstance(files, dict) or not isinstance(nodes, list) or not isinstance(manifest.get("root"), int):
        raise IncompatibleStateError(f"the manifest of {opened.target} is damaged: no file or component table.")
    if verify:
        try:
            opened.hold(files)
            verify_files(opened, files)
            checksums = "verified"
        except CherFaissError as error:
            if opened.replaced():
                raise  # a save replaced the folder meanwhile: described again from the new one
            checksums = f"FAILED: {error}"
    else:
        checksums = "not checked"
    return {
        "path": str(opened.target),
        "format_version": manifest.get("format_version"),
        "saved_by": manifest.get("cherche_faiss_version"),
        "loaded_by": __version__,
        "created": manifest.get("created"),
        "versions": manifest.get("versions", {}),
        "components": _node(nodes, manifest["root"], set()),
        "files": len(files),
        "bytes": sum(entry.get("size", 0) for entry in files.values() if isinstance(entry, dict)),
        "checksums": checksums,
    }


def format_description(info: dict[str, Any]) -> str:
    """:func:`describe_save`'s result as indented text."""
    lines = [
        f"{info['path']}",
        f"  format version {info['format_version']}, saved by cherche_faiss {info['saved_by']} on "
        f"{info['created']} (this is {info['loaded_by']})",
        f"  {info['files']} files, {info['bytes'] / 1e6:,.1f} MB; checksums {info['checksums']}",
        "  components:",
    ]

    def walk(node: dict[str, Any], depth: int) -> None:
        facts = []
        if "documents" in node:
            facts.append(f"{node['documents']:,} documents")
        if "faiss" in node:
            faiss = node["faiss"]
            facts.append(f"FAISS index of {faiss['vectors']:,} vectors, d={faiss['dimension']}")
        params = ", ".join(f"{name}={value!r}" for name, value in node.get("params", {}).items())
        shared = " (shared, see above)" if node.get("shared") else ""
        extra = f" [{'; '.join(facts)}]" if facts else ""
        lines.append(f"{'    ' * depth}- {node['class']}({params}){extra}{shared}")
        for child in node.get("children", []):
            walk(child, depth + 1)
        if "onnx_copy" in node:
            lines.append(f"{'    ' * (depth + 1)}ONNX copy (used by backend 'onnx', and 'auto' with onnxruntime):")
            walk(node["onnx_copy"], depth + 1)

    walk(info["components"], 1)
    return "\n".join(lines)
