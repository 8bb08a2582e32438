"""Real servers for the server tests: uvicorn in a thread, or ``cherche-faiss serve`` in a subprocess.

Both bind 127.0.0.1 only, on a port the OS picks, and are always stopped
(the thread joined, the process waited for) when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60


@contextlib.contextmanager
def served(app, timeout: float = STARTUP_TIMEOUT_S) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound here: no race for a "free" port
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))

    def run() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when the application fails to start
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test server failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the test server did not start within {timeout} s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        if thread.is_alive():  # pragma: no cover - would leave a port bound
            raise RuntimeError("the test server did not stop within 30 s")


class ServeProcess:
    """``cherche-faiss serve ARGS`` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, python: str | None = None) -> None:
        """``python``: another interpreter (a virtual environment's), which then runs the cherche_faiss
        installed there instead of this checkout's."""
        command = [
            python or sys.executable,
            "-m",
            "cherche_faiss.cli",
            "serve",
            *args,
            "--port",
            "0",
            "--no-access-log",
        ]
        environment = {**os.environ, **(env or {})}
        if python is None:
            environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
        else:
            environment.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            cwd=REPO if python is None else Path(python).parent,  # python -m puts the cwd first on sys.path
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url: str | None = None

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Wait for the port in the log, then for ``/health``; returns the base URL."""
        deadline = time.monotonic() + timeout
        while self.url is None:
            match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", self.output)
            if match:
                self.url = match.group(1)
            elif self.process.poll() is not None:
                raise RuntimeError(f"cherche-faiss serve exited with {self.process.returncode}:\n{self.output}")
            elif time.monotonic() > deadline:
                raise TimeoutError(f"cherche-faiss serve did not start:\n{self.output}")
            else:
                time.sleep(0.05)
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self.url
            if self.process.poll() is not None:
                raise RuntimeError(f"cherche-faiss serve exited with {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"cherche-faiss serve did not answer /health:\n{self.output}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        """Send ``sig`` (Ctrl+C by default) and wait for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return self.process.returncode

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def post_all(base_url: str, bodies: list, concurrency: int, headers: dict | None = None) -> list:
    """POST every body to /search with ``concurrency`` clients at once; returns the responses in order."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    responses: list = [None] * len(bodies)
    positions = iter(range(len(bodies)))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30, headers=headers) as client:

        async def client_loop() -> None:
            for position in positions:
                responses[position] = await client.post("/search", json=bodies[position])

        await asyncio.wait_for(asyncio.gather(*(client_loop() for _ in range(concurrency))), timeout=120)
    return responses


def port_is_closed(url: str) -> bool:
    """Whether nothing listens at ``url`` any more."""
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0
