from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from arc_lab.postgres import PostgresServer


def controlplane_command() -> list[str]:
    """The installed ``arc-controlplane`` script next to this interpreter, else ``python -m``."""
    script = shutil.which("arc-controlplane", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "arc_controlplane"]


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*controlplane_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ca_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only the control plane's CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca_file))
    return context


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_file: Path
    ca_file: Path
    """The certificate clients trust: the managed CA, or the operator's own certificate."""

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(data_dir: Path, extra: Sequence[str] = (), trust: Path | None = None) -> Server:
    """Start ``arc-controlplane serve`` on a free port; return once /healthz answers over TLS.

    ``trust`` is the certificate to trust, by default the managed CA in ``data_dir/pki``.
    """
    port = free_port()
    log_file = data_dir.parent / f"serve-{port}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [*controlplane_command(), "serve", "--data-dir", str(data_dir), "--port", str(port), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, data_dir, log_file, trust or data_dir / "pki" / "ca.pem")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"arc-controlplane exited with {process.returncode}:\n{server.log()}")
        if server.ca_file.exists():
            try:
                with urllib.request.urlopen(
                    server.url("/healthz"), context=ca_context(server.ca_file), timeout=2
                ):
                    return server
            except OSError:
                pass
        time.sleep(0.1)
    server.stop()
    raise AssertionError(f"arc-controlplane did not answer within 20 s:\n{server.log()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("controlplane") / "data")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    directory = Path(tempfile.mkdtemp(prefix="arc-cp-pg-"))
    server = PostgresServer.start(directory, free_port())
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'controlplane.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()
