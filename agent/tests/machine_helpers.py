"""A real agent for the tests that need one: its root, its himds process, its CLI, and a connect
to a running control plane."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import free_port, run_module
from controlplane_env import ControlPlane
from himds_helpers import wait_for

from arc_agent import ipc
from arc_agent.paths import AgentPaths


class Machine:
    """One agent: its root, its himds process and its CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = AgentPaths.under(root)
        self.env = {**os.environ, "AZCMAGENT_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
        self.port = free_port()
        self.himds: subprocess.Popen[bytes] | None = None
        self.output = root.parent / "himds.out"
        self.wrap: list[str] = []
        """Put before every command of this machine (e.g. a private mount namespace)."""

    def start_himds(self) -> None:
        # Its output goes to a file: a pipe nobody reads fills up and blocks himds's logging.
        self.output = self.root.parent / f"himds-{self.port}.out"
        with self.output.open("ab") as output:
            self.himds = subprocess.Popen(
                [*self.wrap, sys.executable, "-m", "arc_agent.himds.main", "--port", str(self.port), "-v"],
                stdout=output,
                stderr=output,
                env=self.env,
            )
        wait_for(lambda: ipc.ask(self.paths.himds_socket, {"op": "status"}) is not None, 15, "himds answers")

    def stop_himds(self) -> str:
        assert self.himds is not None
        self.himds.terminate()
        try:
            self.himds.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"himds did not stop within 15 s of SIGTERM; its log and threads:\n{self.kill_himds()}"
            ) from None
        err = self.output.read_text(encoding="utf-8", errors="replace")
        assert self.himds.returncode == 0, err
        self.himds = None
        return err

    def kill_himds(self) -> str:
        """Its log, with every thread's stack (SIGUSR1), after killing it."""
        assert self.himds is not None
        self.himds.send_signal(signal.SIGUSR1)
        time.sleep(1)
        self.himds.kill()
        self.himds.wait()
        self.himds = None
        return self.output.read_text(encoding="utf-8", errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        if self.wrap:
            argv = [*self.wrap, sys.executable, "-m", "arc_agent.cli.main", *args]
            return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60, check=False)
        return run_module("arc_agent.cli.main", *args, env=self.env, timeout=60)

    def local(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", target, headers={"Metadata": "true", **(headers or {})})
            reply = conn.getresponse()
            body = reply.read()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, json.loads(body or b"null")
        finally:
            conn.close()


def connect(plane: ControlPlane, machine: Machine, tmp_path: Path, name: str, *extra: str) -> dict[str, Any]:
    secrets = tmp_path / "secret.json"
    secrets.write_text(json.dumps({"service-principal-secret": plane.onboarding.client_secret}))
    result = machine.cli(
        "connect", "-s", plane.subscription_id, "-g", plane.resource_group, "-l", plane.location,
        "-t", plane.tenant_id, "-n", name, "-i", plane.onboarding.client_id, "--config", str(secrets),
        "--control-plane-url", plane.url, "--control-plane-ca", str(plane.ca_file), "-j", *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown
