"""Device names and the policy that decides where an index or a model lives.

Three kinds of names are accepted everywhere: ``"cpu"``, ``"cuda"`` /
``"cuda:N"`` and ``"auto"`` (the first GPU when one is usable, else the CPU).
Explicit requests that cannot be honoured raise
:class:`~cherche_faiss.exceptions.DeviceUnavailableError`; states loaded from a
pickle never raise for that reason: they fall back to the CPU with a
:class:`~cherche_faiss.exceptions.DeviceFallbackWarning`.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

from ..exceptions import DeviceFallbackWarning, DeviceUnavailableError, InvalidInputError

__all__ = [
    "LOAD_DEVICE_ENV",
    "parse_device",
    "faiss_gpu_count",
    "resolve_faiss_device",
    "faiss_load_device",
    "resolve_torch_device",
    "torch_load_device",
    "resolve_onnx_device",
    "onnx_load_device",
    "gpu_resources",
]

#: Environment variable read when a pickled state is loaded: ``cpu`` keeps every
#: index and model on the CPU, ``auto`` (the default) restores the saved device
#: when it exists, ``cuda:N`` moves everything to that GPU.
LOAD_DEVICE_ENV = "CHERCHE_FAISS_DEVICE"

_DEVICE_PATTERN = re.compile(r"^(cpu|auto|cuda(?::(\d+))?)$")


def parse_device(device: Any) -> str:
    """Normalise a device name to ``"cpu"``, ``"auto"`` or ``"cuda:N"``.

    Examples
    --------
    >>> parse_device("cuda")
    'cuda:0'
    >>> parse_device(" CPU ")
    'cpu'
    """
    if not isinstance(device, str):
        raise InvalidInputError(
            f"device must be a string, got {device!r} ({type(device).__name__}). Use 'cpu', 'cuda', 'cuda:N' or 'auto'."
        )
    name = device.strip().lower()
    match = _DEVICE_PATTERN.match(name)
    if match is None:
        raise InvalidInputError(
            f"unknown device {device!r}. Expected 'cpu', 'cuda', 'cuda:N' (N a GPU number) "
            "or 'auto' (a GPU when one is usable, else the CPU)."
        )
    if name == "cuda":
        return "cuda:0"
    return name


def gpu_number(device: str) -> int:
    """The GPU number of a parsed ``"cuda:N"`` device name."""
    return int(device.split(":", 1)[1])


def faiss_gpu_count() -> int:
    """Number of GPUs faiss can use here: 0 for a faiss-cpu build or a machine without GPU."""
    import faiss

    if "GPU" not in faiss.get_compile_options() or not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def _load_policy() -> str:
    value = os.environ.get(LOAD_DEVICE_ENV, "auto")
    try:
        return parse_device(value)
    except InvalidInputError:
        raise InvalidInputError(
            f"environment variable {LOAD_DEVICE_ENV}={value!r} is not a device name. "
            "Set it to 'cpu', 'auto' or 'cuda:N', or unset it."
        ) from None


def _load_device(saved: str, available: int, what: str) -> str:
    """Shared load policy: where a state saved on ``saved`` goes when ``available`` GPUs exist."""
    policy = _load_policy()
    if policy == "cpu":
        return "cpu"
    wanted = saved if policy == "auto" else policy
    if wanted == "cpu":
        return "cpu"
    if gpu_number(wanted) < available:
        return wanted
    warnings.warn(
        f"{what} was saved for {wanted!r} but no such GPU is usable here "
        f"({available} GPU(s) visible); it was loaded on the CPU instead. "
        f"Set {LOAD_DEVICE_ENV}=cpu to silence this warning, or call .to('cuda:N') later.",
        DeviceFallbackWarning,
        stacklevel=4,
    )
    return "cpu"


def _torch_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def onnx_gpu_count() -> int:
    """GPUs onnxruntime can use here: 1 when its CUDA execution provider is installed, else 0.

    onnxruntime does not count devices; a missing ``cuda:N`` fails when the session starts.
    """
    import onnxruntime

    return 1 if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else 0


# What an unusable GPU request says, per runtime: (no GPU at all, not that many GPUs).
_UNAVAILABLE = {
    "faiss": (
        "device {device!r} was requested but this faiss build has no usable GPU (faiss-cpu installed, or no GPU "
        "visible). Install the GPU build with `pip install cherche-faiss[gpu]` on a machine with a CUDA GPU, or use "
        "device='cpu' or device='auto'.",
        "device {device!r} was requested but faiss sees only {count} GPU(s) (cuda:0 to cuda:{last}). Pick one of "
        "those or use device='auto'.",
    ),
    "torch": (
        "device {device!r} was requested for a model but torch sees {count} CUDA GPU(s). Use device='auto' or "
        "device='cpu', or install a CUDA build of torch.",
    )
    * 2,
    "onnx": (
        "device {device!r} was requested for an ONNX encoder but onnxruntime has no CUDA execution provider. Use "
        "device='auto' or device='cpu', or install onnxruntime-gpu instead of onnxruntime.",
    )
    * 2,
}


def _resolve(device: str, count: Callable[[], int], runtime: str, counts_devices: bool = True) -> str:
    """A device asked for explicitly, given the function ``count`` of the GPUs ``runtime`` can use.

    ``counts_devices=False``: the runtime only says whether it can use GPUs at
    all (``count`` 0 or 1); any ``cuda:N`` is then accepted. Raises
    :class:`DeviceUnavailableError` for a GPU that cannot be used.
    """
    device = parse_device(device)
    if device == "cpu":
        return device  # never probe for GPUs when it cannot matter
    available = count()
    if device == "auto":
        return "cuda:0" if available > 0 else "cpu"
    none, few = _UNAVAILABLE[runtime]
    if available == 0:
        raise DeviceUnavailableError(none.format(device=device, count=0, last=-1))
    if counts_devices and gpu_number(device) >= available:
        raise DeviceUnavailableError(few.format(device=device, count=available, last=available - 1))
    return device


def _restored(saved: str, count: Callable[[], int], what: str) -> str:
    """Where ``what``, saved for ``saved``, is rebuilt by a load: the load policy and the GPUs ``count()`` sees."""
    policy = _load_policy()
    if policy == "cpu" or (saved == "cpu" and policy == "auto"):
        return "cpu"  # never probe for GPUs when it cannot matter
    if saved == "auto" and policy == "auto":
        return "cuda:0" if count() > 0 else "cpu"
    return _load_device(saved, count(), what)


def resolve_faiss_device(device: str) -> str:
    """Resolve a device asked for explicitly for a FAISS index (construction, ``to``)."""
    return _resolve(device, faiss_gpu_count, "faiss")


def resolve_torch_device(device: str) -> str:
    """Resolve a device asked for explicitly for a torch model."""
    return _resolve(device, _torch_gpu_count, "torch")


def resolve_onnx_device(device: str) -> str:
    """Resolve a device asked for explicitly for an onnxruntime session."""
    return _resolve(device, onnx_gpu_count, "onnx", counts_devices=False)


def faiss_load_device(saved: str) -> str:
    """Device on which a FAISS index saved on ``saved`` is rebuilt when loaded."""
    return _restored(saved, faiss_gpu_count, "a FAISS index")


def torch_load_device(saved: str) -> str:
    """Device on which a model saved for ``saved`` is rebuilt after loading."""
    return _restored(saved, _torch_gpu_count, "a model")


def onnx_load_device(saved: str) -> str:
    """Device on which an ONNX encoder saved for ``saved`` runs after loading."""
    return _restored(saved, onnx_gpu_count, "an ONNX encoder")


@functools.cache
def gpu_resources(gpu: int) -> Any:
    """One ``faiss.StandardGpuResources`` per GPU and process (they hold scratch memory)."""
    import faiss

    return faiss.StandardGpuResources()
