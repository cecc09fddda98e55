"""Where the lab is: the repository, the host script, and the lab's network and paths."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
from dataclasses import dataclass
from typing import Any

TOP = pathlib.Path(__file__).resolve().parents[4]
"""The repository (this package is installed from tests/lab, editable)."""
TESTHOSTS = TOP / "tests" / "hosts" / "testhosts.sh"
VENV_BIN = TOP / ".venv" / "bin"


def run(*args: str, env: dict[str, str] | None = None, timeout: float | None = None) -> str:
    """``args``' standard output; RuntimeError naming the command and its stderr if it fails."""
    result = subprocess.run(list(args), capture_output=True, text=True, env=env, check=False, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class LabEnv:
    """One lab (``ARC_TESTHOSTS_LAB`` picks it): its network, namespaces and paths."""

    lab: int
    net: str
    ctl_ns: str
    state_dir: pathlib.Path
    url: str
    """The control plane's URL on the test network."""
    key: pathlib.Path

    @classmethod
    def read(cls, environ: dict[str, str] | None = None) -> LabEnv:
        """The current lab, as ``testhosts.sh env`` describes it."""
        document = json.loads(run(str(TESTHOSTS), "env", env=environ))
        return cls(
            lab=int(document["lab"]),
            net=document["net"],
            ctl_ns=document["ctl_ns"],
            state_dir=pathlib.Path(document["state_dir"]),
            url=document["controlplane_url"],
            key=pathlib.Path(document["key"]),
        )

    @property
    def data_dir(self) -> pathlib.Path:
        """The control plane's data directory."""
        return self.state_dir / "controlplane" / "data"

    @property
    def ca_file(self) -> pathlib.Path:
        return self.data_dir / "pki" / "ca.pem"

    @property
    def controlplane_pid_file(self) -> pathlib.Path:
        return self.state_dir / "controlplane" / "pid"

    def controlplane_cli(self, *args: str) -> dict[str, Any]:
        """``arc-controlplane ARGS --data-dir DATA --json`` (the admin commands), parsed."""
        out = run(str(VENV_BIN / "arc-controlplane"), *args, "--data-dir", str(self.data_dir), "--json")
        document: dict[str, Any] = json.loads(out)
        return document


def free_port() -> int:
    """A TCP port nothing listens on now (on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
