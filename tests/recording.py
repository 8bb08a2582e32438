"""A pipeline stand-in for the server tests that records how it is called."""

from __future__ import annotations

import threading

from cherche_faiss.exceptions import InvalidInputError


class CallRecorder:
    """Records every call (queries and k, the thread, how many ran at once); may hold each call
    at ``gate`` or refuse a query ``fail_on`` with a library error. Subclasses answer in :meth:`answer`."""

    refusal = "cannot search"

    def __init__(
        self, fail_on: str | None = None, gate: threading.Event | None = None, gate_timeout: float = 20
    ) -> None:
        self.calls: list[tuple[object, int | None]] = []
        self.threads: set[str] = set()
        self.active = 0
        self.most_active = 0
        self.fail_on = fail_on
        self.gate = gate
        self.gate_timeout = gate_timeout
        self._lock = threading.Lock()

    def __call__(self, q, k=None):
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.calls.append((q, k))
            self.threads.add(threading.current_thread().name)
            self.record()
            if self.gate is not None:
                self.gate.wait(timeout=self.gate_timeout)
            texts = [q] if isinstance(q, str) else q
            if self.fail_on is not None and self.fail_on in texts:
                raise InvalidInputError(f"{self.refusal} {self.fail_on!r}")
            return self.answer(q, k, texts)
        finally:
            with self._lock:
                self.active -= 1

    def record(self) -> None:
        """Note more about a call, in the thread that makes it."""

    def answer(self, q, k, texts: list[str]):
        raise NotImplementedError
