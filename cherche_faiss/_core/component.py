"""The base class of every component: parameters as attributes, a generated
``repr`` and versioned pickling (after scikit-learn's ``BaseEstimator``).

A pickled component is a plain dict::

    {"_cherche_faiss_version": "0.1.0", "_class": "cherche_faiss.retrieve.TfIdf",
     "_state_version": 1, "state": {...}}

so that a state written by another version is recognised before anything in
it is used: another library version warns (:class:`InconsistentVersionWarning`),
a state this class cannot read raises :class:`IncompatibleStateError`.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar

from .._version import __version__
from ..exceptions import CherFaissError, IncompatibleStateError, InconsistentVersionWarning

__all__ = ["Component"]

#: The key of a pickled component's state that holds the version that pickled it (read by
#: ``cherche_faiss.persist.versions`` without unpickling).
VERSION_KEY = "_cherche_faiss_version"


class Component:
    """Base of indexes, encoders, retrievers, rankers and pipelines.

    Subclasses store each ``__init__`` parameter verbatim as an attribute of
    the same name (so ``repr`` and ``get_params`` can read them back) and may
    override :meth:`_get_state` / :meth:`_set_state` to control what a pickle
    holds.  ``_state_version`` is raised when the layout of the state changes.
    """

    _state_version: ClassVar[int] = 1

    # -- parameters ---------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, parameter in signature.parameters.items()
            if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters of this component, as given."""
        return {name: getattr(self, name, None) for name in self._param_names()}

    def _repr_extra(self) -> dict[str, Any]:
        """Facts shown in ``repr`` besides the parameters (sizes, devices ...)."""
        return {}

    def __repr__(self) -> str:
        shown = {
            name: value
            for name, value in self.get_params().items()
            if name not in ("documents", "embeddings_documents")
        }
        parts = [f"{name}={_short_repr(value)}" for name, value in shown.items()]
        # Facts are shown whole: "auto" index choices explain themselves there.
        parts += [f"{name}={value!r}" for name, value in self._repr_extra().items()]
        body = ", ".join(parts)
        return f"{type(self).__name__}({body})"

    # -- pickling -----------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        """What a pickle of this component holds (override to drop or convert attributes)."""
        return dict(self.__dict__)

    def _set_state(self, state: dict[str, Any]) -> None:
        """Rebuild the component from :meth:`_get_state`'s output."""
        self.__dict__.update(state)

    # -- the safe on-disk format (cherche_faiss.persist.save / load) ----------------------
    def _save_state(self) -> dict[str, Any]:
        """What :func:`cherche_faiss.persist.save` stores: by default what a pickle holds.

        The constructor parameters among these attributes are written as the
        component's ``params`` (and passed to ``__init__`` again on load, which
        validates them); the others are restored by :meth:`_load_state`.
        """
        return self._get_state()

    def _load_state(self, state: dict[str, Any], context: Any = None) -> None:
        """Restore the attributes :meth:`_save_state` gave, after ``__init__`` ran with the params.

        ``context`` carries the load options (``device``, ``mmap``) for the
        components that use them.
        """
        self._set_state(state)

    def _check_loaded(self) -> None:
        """Raise :class:`IncompatibleStateError` when the attributes just restored are inconsistent
        (a save edited by hand, say); subclasses check what they rely on."""

    def __getstate__(self) -> dict[str, Any]:
        return {
            VERSION_KEY: __version__,
            "_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "_state_version": self._state_version,
            "state": self._get_state(),
        }

    def __setstate__(self, state: Any) -> None:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        if not isinstance(state, dict) or VERSION_KEY not in state or "state" not in state:
            raise IncompatibleStateError(
                f"cannot restore a {type(self).__name__} from this pickle: its state is a "
                f"{type(state).__name__} without the cherche_faiss version stamp. It was not "
                "written by cherche_faiss (or by a pre-release); rebuild the component and "
                "pickle it again."
            )
        saved_version = state[VERSION_KEY]
        if saved_version != __version__:
            warnings.warn(
                f"this {type(self).__name__} was pickled by cherche_faiss {saved_version} and "
                f"is loaded by {__version__}; results may differ. Save it again with this "
                "version to silence the warning.",
                InconsistentVersionWarning,
                stacklevel=2,
            )
        saved_state_version = state.get("_state_version")
        if saved_state_version != self._state_version:
            raise IncompatibleStateError(
                f"cannot restore {name}: its state has layout version {saved_state_version!r} "
                f"but cherche_faiss {__version__} reads version {self._state_version}. Load it "
                f"with cherche_faiss {saved_version}, or rebuild the component."
            )
        if not isinstance(state["state"], dict):
            raise IncompatibleStateError(
                f"cannot restore {name}: its state is a {type(state['state']).__name__}, not a "
                "dict. The pickle is damaged or was edited; rebuild the component."
            )
        try:
            self._set_state(state["state"])
            self._check_loaded()  # a damaged pickle must fail here, not crash a C extension later
        except CherFaissError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise IncompatibleStateError(
                f"cannot restore {name}: its state does not have the expected content "
                f"({type(error).__name__}: {error}). The pickle is damaged, was edited, or was "
                "written by an incompatible version; rebuild the component."
            ) from error


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
