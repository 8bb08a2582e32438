"""MkDocs hook: Sphinx roles left in the numpydoc docstrings, rendered as links.

The docstrings say ``:func:`create_app``` or ``:class:`~cherche_faiss.exceptions.CorruptFileError```
(Sphinx's roles); Markdown renders them as ``:func:<code>create_app</code>``. On the API pages this hook
drops the role, shortens ``~a.b.C`` to ``C`` as Sphinx does, and makes each name an optional
cross-reference (mkdocs-autorefs): a link where the name has a heading in the reference, plain code
where it has none, never a warning. The docstrings stay as they are.
"""

from __future__ import annotations

import html
import re

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):<code>(~?)([^<]+)</code>")


def on_page_content(content, page, config, files):
    src = page.file.src_uri
    if not src.startswith("api/"):
        return content
    module = page.meta.get("module")

    def link(match):
        tilde, name = match.group(1), html.unescape(match.group(2)).strip()
        shown = name.rsplit(".", 1)[-1] if tilde else name
        if name.startswith("cherche_faiss."):
            identifier = name
        elif module and not name.startswith("."):
            identifier = f"{module}.{name}"
        else:
            return f"<code>{html.escape(shown)}</code>"
        return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(shown)}</code></autoref>'

    return _ROLE.sub(link, content)
