"""The lab: test hosts with the agent runtime, and the control plane on the test network.

Shared by the tests that run the agent on real hosts (tests/agent/) and the benchmarks that
measure it there (benchmarks/agent_footprint.py). `Lab.start(n)` brings up n hosts, the control
plane in the controller namespace (with extra `serve` options), an onboarding and an
administrator principal, and installs the runtime with the `hybridops.arc.runtime` playbook;
`Lab.stop()` tears it all down. Secrets reach the hosts on ssh's standard input, into 0600 files.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import shlex
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "agent" / "tests"))
from certificates import certificate_pem, key_pem, self_signed  # noqa: E402  (agent/tests/certificates.py)

TESTHOSTS = str(TOP / "tests/hosts/testhosts.sh")
# The lab these tests use (ARC_TESTHOSTS_LAB picks one of several; see testhosts.sh).
LAB: dict[str, Any] = json.loads(
    subprocess.run([TESTHOSTS, "env"], check=True, capture_output=True, text=True).stdout
)
STATE = pathlib.Path(LAB["state_dir"])
DATA = STATE / "controlplane" / "data"
URL: str = LAB["controlplane_url"]
CTL_NS: str = LAB["ctl_ns"]
ADMIN_ROLE = "Azure Connected Machine Resource Administrator"
ONBOARDING_ROLE = "Azure Connected Machine Onboarding"
API = "2026-09-01"
CA_ON_HOSTS = "/root/controlplane-ca.pem"


def run(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def controlplane(*args: str) -> dict[str, Any]:
    out = run(str(TOP / ".venv/bin/arc-controlplane"), *args, "--data-dir", str(DATA), "--json")
    document: dict[str, Any] = json.loads(out)
    return document


class Host:
    def __init__(self, spec: dict[str, str]) -> None:
        self.name = spec["name"]
        self.address = spec["address"]
        self.key = spec["key"]

    def _ssh(self) -> list[str]:
        return [
            "ssh", "-i", self.key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", f"ProxyCommand=ip netns exec {CTL_NS} socat - TCP:%h:%p",
            f"root@{self.address}",
        ]  # fmt: skip

    def sh(
        self, command: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._ssh(), command],
            input=stdin, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
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


class ControlPlane:
    def __init__(self, init: dict[str, Any], onboarding: dict[str, Any], admin: dict[str, Any]) -> None:
        self.init = init
        self.onboarding = onboarding
        self.admin = admin
        self.context = ssl.create_default_context(cafile=str(DATA / "pki" / "ca.pem"))

    def token(self, client_id: str, secret: str) -> str:
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": "https://management.azure.com/.default",
            }
        ).encode()
        url = f"{URL}/{self.init['tenantId']}/oauth2/v2.0/token"
        with self._open(urllib.request.Request(url, data=form)) as reply:
            return str(json.load(reply)["access_token"])

    def machine(self, name: str) -> dict[str, Any] | None:
        path = (
            f"/subscriptions/{self.init['subscriptionId']}/resourceGroups/{self.init['resourceGroup']}"
            f"/providers/Microsoft.HybridCompute/machines/{name}?api-version={API}"
        )
        token = self.token(self.admin["clientId"], self.admin["clientSecret"])
        request = urllib.request.Request(URL + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with self._open(request) as reply:
                document: dict[str, Any] = json.load(reply)
                return document
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def certificate_principal(self, name: str) -> tuple[str, str]:
        """A new Onboarding principal that signs in with a certificate: (PEM of certificate and
        key, client id)."""
        certificate, key = self_signed(name, days=7)
        cert_pem, private_pem = certificate_pem(certificate).decode(), key_pem(key).decode()
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as public:
            public.write(cert_pem)
            public.flush()
            created = controlplane(
                "sp", "create", "--name", name, "--role", ONBOARDING_ROLE, "--certificate", public.name,
                "--scope", f"/subscriptions/{self.init['subscriptionId']}",
            )  # fmt: skip
        return cert_pem + private_pem, str(created["clientId"])

    def status(self, name: str) -> str:
        machine = self.machine(name)
        return "" if machine is None else str(machine["properties"]["status"])

    def _open(self, request: urllib.request.Request) -> Any:
        # The control plane lives in the controller namespace: reach it from there.
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.context))
        return _in_controller_namespace(lambda: opener.open(request, timeout=30))


def _in_controller_namespace(call: Callable[[], Any]) -> Any:
    """Run ``call`` with this thread in the lab's controller network namespace (setns), then come back."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet = 0x40000000
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{CTL_NS}") as target:
        if libc.setns(target.fileno(), clone_newnet) != 0:
            raise OSError(ctypes.get_errno(), f"setns {CTL_NS}")
        try:
            return call()
        finally:
            libc.setns(home.fileno(), clone_newnet)


@dataclass
class Lab:
    hosts: list[Host]
    plane: ControlPlane

    @classmethod
    def start(cls, count: int, *serve_options: str, install: bool = True) -> Lab:
        """``count`` hosts, the control plane (with ``serve_options``), an onboarding and an admin
        service principal; the agent runtime installed on the hosts unless ``install`` is false."""
        run(TESTHOSTS, "up", str(count))
        try:
            init = controlplane("init", "--port", "8443")
            binary = {**os.environ, "ARC_CONTROLPLANE_BIN": str(TOP / ".venv/bin/arc-controlplane")}
            run(TESTHOSTS, "controlplane", "start", *serve_options, env=binary)
            scope = f"/subscriptions/{init['subscriptionId']}"
            onboarding = controlplane(
                "sp", "create", "--name", "lab-onboarding", "--role", ONBOARDING_ROLE, "--scope", scope
            )
            admin = controlplane(
                "sp", "create", "--name", "lab-admin", "--role", ADMIN_ROLE, "--scope", scope
            )
            inventory = run(TESTHOSTS, "inventory").strip()
            env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(TOP / "build/collections")}
            playbook = str(TOP / "playbooks/runtime.yml")
            if install:
                run(str(TOP / ".venv/bin/ansible-playbook"), "-i", inventory, playbook, env=env)
            hosts = [Host(spec) for spec in json.loads(run(TESTHOSTS, "hosts-json"))]
            ca = (DATA / "pki" / "ca.pem").read_text()
            for host in hosts:
                host.sh(f"cat > {CA_ON_HOSTS}", stdin=ca)
        except BaseException:
            cls.stop()
            raise
        return cls(hosts, ControlPlane(init, onboarding, admin))

    @staticmethod
    def stop() -> None:
        subprocess.run([TESTHOSTS, "controlplane", "stop"], check=False, capture_output=True)
        subprocess.run([TESTHOSTS, "down"], check=False, capture_output=True)

    def onboard_vars(self, **extra: Any) -> dict[str, Any]:
        """The `hybridops.arc.onboard` playbook's variables for this lab (a job template's
        extra variables): control plane, where the machines go, the onboarding principal."""
        init, onboarding = self.plane.init, self.plane.onboarding
        return {
            "arc_agent_control_plane_url": URL,
            "arc_agent_control_plane_ca": str(DATA / "pki" / "ca.pem"),
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

    def connect(self, host: Host, name: str, *extra: str) -> dict[str, Any]:
        """Connect ``host`` as ``name`` with the onboarding principal's secret (in a 0600 file)."""
        init, onboarding = self.plane.init, self.plane.onboarding
        host.put_secret("/root/onboarding.json", {"service-principal-secret": onboarding["clientSecret"]})
        shown: dict[str, Any] = host.json(
            "connect", "-s", init["subscriptionId"], "-g", init["resourceGroup"], "-l", init["location"],
            "-n", name, "-t", init["tenantId"], "-i", onboarding["clientId"],
            "--config", "/root/onboarding.json",
            "--control-plane-url", URL, "--control-plane-ca", CA_ON_HOSTS, *extra,
        )  # fmt: skip
        return shown
