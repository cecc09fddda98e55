"""``Lab.start(n)``: n test hosts, the control plane in the controller namespace (with extra
``serve`` options), an onboarding and an administrator principal, and the agent runtime from
the ``hybridops.arc.runtime`` playbook; ``Lab.stop()`` tears it all down. Secrets reach the hosts
on ssh's standard input, into 0600 files."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from arc_lab.environment import TESTHOSTS, TOP, VENV_BIN, LabEnv, run
from arc_lab.hosts import Host
from arc_lab.plane import ADMIN_ROLE, ONBOARDING_ROLE, ControlPlane

CA_ON_HOSTS = "/root/controlplane-ca.pem"


def publish_extensions(env: LabEnv, *database: str) -> list[dict[str, Any]]:
    """The extension packages `make extensions` built (build/extensions), published into the
    lab's control plane (which signs them); what it listed for each."""
    folder = TOP / "build" / "extensions"
    names = [line.split()[1] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    published = []
    for name in names:
        handler, version = name.removesuffix(".zip").rsplit("-", 1)
        publisher, type_ = handler.rsplit(".", 1)
        published.append(
            env.controlplane_cli("extension", "publish", str(folder / name), "--publisher", publisher,
                                 "--type", type_, "--version", version, *database)
        )  # fmt: skip
    return published


def publish_configurations(env: LabEnv, *database: str) -> list[dict[str, Any]]:
    """The machine configuration packages `make configurations` built (build/configurations),
    published into the lab's control plane (which signs them); what it listed for each."""
    folder = TOP / "build" / "configurations"
    return [
        env.controlplane_cli("configuration", "publish", str(package), *database)
        for package in sorted(folder.glob("*.zip"))
    ]


@dataclass
class Lab:
    env: LabEnv
    hosts: list[Host]
    plane: ControlPlane
    serve_options: tuple[str, ...] = ()
    database: tuple[str, ...] = ()
    """``--database-url URL`` when the control plane is not on its default SQLite file."""

    @classmethod
    def start(
        cls, count: int, *serve_options: str, install: bool = True, database_url: str | None = None
    ) -> Lab:
        """``count`` hosts, the control plane (with ``serve_options``, on ``database_url`` if
        given, else SQLite in its data directory), an onboarding and an admin service principal;
        the agent runtime installed on the hosts unless ``install`` is false."""
        env = LabEnv.read()
        database = ("--database-url", database_url) if database_url else ()
        serve_options = (*serve_options, *database)
        run(str(TESTHOSTS), "up", str(count))
        try:
            plane = cls.start_plane(env, serve_options, database)
            if install:
                cls.install_runtime()
            hosts = [Host(spec, env.ctl_ns) for spec in json.loads(run(str(TESTHOSTS), "hosts-json"))]
            ca = env.ca_file.read_text()
            for host in hosts:
                host.sh(f"cat > {CA_ON_HOSTS}", stdin=ca)
        except BaseException:
            cls.stop()
            raise
        return cls(env, hosts, plane, tuple(serve_options), database)

    @classmethod
    def start_plane(
        cls,
        env: LabEnv,
        serve_options: tuple[str, ...] = (),
        database: tuple[str, ...] = (),
        prefix: str = "lab",
    ) -> ControlPlane:
        """The control plane in the controller namespace of hosts that are up, and its
        ``{prefix}-onboarding`` and ``{prefix}-admin`` service principals."""
        init = env.controlplane_cli("init", "--port", str(env.url.rsplit(":", 1)[1]), *database)
        cls.serve(serve_options)
        scope = f"/subscriptions/{init['subscriptionId']}"
        sp = ("sp", "create", "--scope", scope, *database)
        onboarding = env.controlplane_cli(*sp, "--name", f"{prefix}-onboarding", "--role", ONBOARDING_ROLE)
        admin = env.controlplane_cli(*sp, "--name", f"{prefix}-admin", "--role", ADMIN_ROLE)
        return ControlPlane(env, init, onboarding, admin)

    @staticmethod
    def serve(serve_options: tuple[str, ...] | list[str] = ()) -> None:
        """Serve the lab's control plane (on the data it has), with ``serve_options``."""
        binary = {**os.environ, "ARC_CONTROLPLANE_BIN": str(VENV_BIN / "arc-controlplane")}
        run(str(TESTHOSTS), "controlplane", "start", *serve_options, env=binary)

    @staticmethod
    def install_runtime(limit: str | None = None) -> None:
        """The ``hybridops.arc.runtime`` playbook on the lab's hosts (or those of ``limit``)."""
        inventory = run(str(TESTHOSTS), "inventory").strip()
        env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections")}
        extra = ["--limit", limit] if limit else []
        run(
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            inventory,
            *extra,
            str(TOP / "playbooks/runtime.yml"),
            env=env,
        )

    @staticmethod
    def stop_plane() -> None:
        """Stop serving the control plane; its data stays (:meth:`serve` serves it again)."""
        subprocess.run([str(TESTHOSTS), "controlplane", "stop"], capture_output=True, check=False)

    @classmethod
    def stop(cls) -> None:
        cls.stop_plane()
        subprocess.run([str(TESTHOSTS), "down"], capture_output=True, check=False)

    def cli(self, *args: str) -> dict[str, Any]:
        """An admin command of ``arc-controlplane`` on this lab's control plane (``--json``)."""
        return self.env.controlplane_cli(*args, *self.database)

    def publish_configurations(self) -> list[dict[str, Any]]:
        """The machine configuration packages `make configurations` built, published into this
        lab's control plane."""
        return publish_configurations(self.env, *self.database)

    def publish_extensions(self) -> list[dict[str, Any]]:
        """The extension packages `make extensions` built, published into this lab's control plane."""
        return publish_extensions(self.env, *self.database)

    def kill_controlplane(self) -> None:
        """``kill -9`` the control plane: no shutdown of any kind."""
        pid = int(self.env.controlplane_pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        self.env.controlplane_pid_file.unlink()

    def restart_controlplane(self) -> None:
        """Serve again, same data, same options (after :meth:`kill_controlplane`, or a stop)."""
        self.serve(self.serve_options)

    def publish_agent(self, bundle: pathlib.Path) -> dict[str, Any]:
        """An agent bundle published into the lab's control plane (its agent package store)."""
        return self.env.controlplane_cli("agent", "publish", str(bundle), *self.database)

    def onboard_vars(self, **extra: Any) -> dict[str, Any]:
        """The `hybridops.arc.onboard` playbook's variables for this lab (a job template's
        extra variables): control plane, where the machines go, the onboarding principal."""
        init, onboarding = self.plane.init, self.plane.onboarding
        return {
            "arc_agent_control_plane_url": self.env.url,
            "arc_agent_control_plane_ca": str(self.env.ca_file),
            "arc_agent_tenant_id": init["tenantId"],
            "arc_agent_subscription_id": init["subscriptionId"],
            "arc_agent_resource_group": init["resourceGroup"],
            "arc_agent_location": init["location"],
            "arc_agent_service_principal_id": onboarding["clientId"],
            "arc_agent_service_principal_secret": onboarding["clientSecret"],
            **extra,
        }

    @staticmethod
    def write_secret_json(path: pathlib.Path, document: dict[str, Any]) -> pathlib.Path:
        """Write ``document`` to ``path`` as JSON, 0600 from the moment the file exists."""
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(document, file)
        return path

    def onboard(self) -> None:
        """The ``hybridops.arc.onboard`` playbook on every host of the lab (install, connect), as a
        fleet runs it (50 forks, pipelining); the variables in a 0600 file, never on argv."""
        inventory = run(str(TESTHOSTS), "inventory").strip()
        env = {
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections"),
            "ANSIBLE_FORKS": "50",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_PIPELINING": "true",
        }
        with tempfile.TemporaryDirectory() as tmp:
            extra = self.write_secret_json(pathlib.Path(tmp) / "onboard.json", self.onboard_vars())
            playbook = [str(VENV_BIN / "ansible-playbook"), "-i", inventory, "hybridops.arc.onboard"]
            subprocess.run([*playbook, "-e", f"@{extra}"], env=env, check=True, stdout=subprocess.DEVNULL)

    def connect(self, host: Host, name: str, *extra: str) -> dict[str, Any]:
        """Connect ``host`` as ``name`` with the onboarding principal's secret (in a 0600 file)."""
        init, onboarding = self.plane.init, self.plane.onboarding
        host.put_secret("/root/onboarding.json", {"service-principal-secret": onboarding["clientSecret"]})
        shown: dict[str, Any] = host.json(
            "connect", "-s", init["subscriptionId"], "-g", init["resourceGroup"], "-l", init["location"],
            "-n", name, "-t", init["tenantId"], "-i", onboarding["clientId"],
            "--config", "/root/onboarding.json",
            "--control-plane-url", self.env.url, "--control-plane-ca", CA_ON_HOSTS, *extra,
        )  # fmt: skip
        return shown
