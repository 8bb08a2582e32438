"""MkDocs hook: links from docs/ to files of the repository outside docs/.

The pages link benchmark results as ``../benchmarks/results/latest.md``, which
works when reading docs/ in the repository. For the site, each such file (and
the files it links to beside it, such as its plots) is added under ``repo/``
and the link is rewritten to point there, so ``mkdocs build --strict`` checks
every link and nothing is copied into docs/.
"""

from __future__ import annotations

import os
import posixpath
import re

from mkdocs.structure.files import File

_LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")
_PREFIX = "repo"


def _repo_target(config, page_src_uri: str, target: str) -> str | None:
    """The repository-relative path of a link leaving docs/, or None."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    docs_dir = os.path.abspath(config["docs_dir"])
    root = os.path.dirname(os.path.abspath(config["config_file_path"]))
    page_dir = os.path.dirname(os.path.join(docs_dir, page_src_uri))
    path = os.path.normpath(os.path.join(page_dir, target))
    if path.startswith(docs_dir + os.sep) or not path.startswith(root + os.sep):
        return None
    if not os.path.isfile(path):
        return None
    return os.path.relpath(path, root).replace(os.sep, "/")


def on_files(files, config):
    root = os.path.dirname(os.path.abspath(config["config_file_path"]))
    wanted: list[str] = []
    for file in list(files):
        if not file.src_uri.endswith(".md") or file.abs_src_path is None:
            continue
        with open(file.abs_src_path, encoding="utf-8") as handle:
            text = handle.read()
        for match in _LINK.finditer(text):
            rel = _repo_target(config, file.src_uri, match.group(2))
            if rel is not None:
                wanted.append(rel)
    queue = list(dict.fromkeys(wanted))
    seen: set[str] = set()
    while queue:
        rel = queue.pop()
        if rel in seen:
            continue
        seen.add(rel)
        abs_path = os.path.join(root, rel)
        files.append(File.generated(config, f"{_PREFIX}/{rel}", abs_src_path=abs_path))
        if rel.endswith(".md"):  # a results page: bring the plots it shows
            with open(abs_path, encoding="utf-8") as handle:
                text = handle.read()
            for match in _LINK.finditer(text):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), match.group(2)))
                if "://" not in match.group(2) and os.path.isfile(os.path.join(root, target)):
                    queue.append(target)
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri.startswith(_PREFIX + "/"):
        return markdown

    def rewrite(match):
        rel = _repo_target(config, page.file.src_uri, match.group(2))
        if rel is None:
            return match.group(0)
        page_dir = posixpath.dirname(page.file.src_uri)
        new = posixpath.relpath(f"{_PREFIX}/{rel}", page_dir or ".")
        return match.group(1) + new + match.group(3)

    return _LINK.sub(rewrite, markdown)
