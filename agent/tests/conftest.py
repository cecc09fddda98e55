from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args...`` the way a user runs the console script."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Himds:
    process: subprocess.Popen[str]
    port: int
    root: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_himds(extra_args: Sequence[str] = ()) -> Himds:
    """Start the real himds on a free loopback port and wait until it answers HTTP."""
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="himds-root-"))  # never the real /var/opt/azcmagent
    process = subprocess.Popen(
        [sys.executable, "-m", "arc_agent.himds.main", "--port", str(port), *extra_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "AZCMAGENT_ROOT": str(root)},
    )
    himds = Himds(process, port, root)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"himds exited with {process.returncode}: {err}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return himds
        except OSError:
            time.sleep(0.05)
    himds.stop()
    raise AssertionError("himds did not start listening within 10 s")


@pytest.fixture(scope="module")
def himds() -> Iterator[Himds]:
    server = start_himds()
    yield server
    server.stop()
