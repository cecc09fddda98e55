"""A test host, reached over ssh through the lab's controller namespace."""

from __future__ import annotations

import json
import pathlib
import shlex
import subprocess
from typing import Any


class Host:
    def __init__(self, spec: dict[str, str], ctl_ns: str) -> None:
        self.name = spec["name"]
        self.address = spec["address"]
        self.key = spec["key"]
        self.ctl_ns = ctl_ns

    def _ssh(self) -> list[str]:
        return [
            "ssh", "-i", self.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", f"ProxyCommand=ip netns exec {self.ctl_ns} socat - TCP:%h:%p",
            f"root@{self.address}",
        ]  # fmt: skip

    def sh(
        self, command: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._ssh(), command],
            input=stdin,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name}: {command!r} exited {result.returncode}: {result.stderr}")
        return result

    def put_tree(self, local: pathlib.Path, remote: str) -> None:
        """Copy the folder ``local`` to ``remote`` on the host (tar over ssh)."""
        tar = subprocess.run(["tar", "-C", str(local), "-c", "."], capture_output=True, check=True).stdout
        target = shlex.quote(remote)
        result = subprocess.run(
            [*self._ssh(), f"mkdir -p {target} && tar -C {target} -x"],
            input=tar, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"{self.name}: copying {local} to {remote}: {result.stderr.decode()}")

    def put_secret(self, path: str, document: dict[str, str]) -> None:
        """A 0600 file from standard input: the secret never is on a command line."""
        self.sh(f"umask 077 && cat > {shlex.quote(path)}", stdin=json.dumps(document))

    def azcmagent(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.sh("azcmagent " + " ".join(shlex.quote(a) for a in args), check=False)

    def json(self, *args: str) -> Any:
        result = self.azcmagent(*args, "-j")
        assert result.returncode == 0, f"{self.name}: azcmagent {args}: {result.stdout}{result.stderr}"
        return json.loads(result.stdout)
