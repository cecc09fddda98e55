"""connect, show and disconnect through the real CLI against a real control plane (HTTPS).

The agent's files live under a temporary root (``AZCMAGENT_ROOT``); everything else is real:
the control plane process, its token service, TLS, the registration and the deletion.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_module
from controlplane_env import ControlPlane, Principal, start_control_plane

CLI = "arc_agent.cli.main"
ADMIN_ROLE = "Azure Connected Machine Resource Administrator"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    server = start_control_plane(tmp_path_factory.mktemp("controlplane"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(plane: ControlPlane) -> Principal:
    return plane.principal("agent-tests-admin", ADMIN_ROLE)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def azcmagent(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_module(CLI, *args, env={**os.environ, "AZCMAGENT_ROOT": str(root)}, timeout=60)


def secrets_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / f"secrets-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return path


def connect_args(plane: ControlPlane, name: str, *extra: str) -> list[str]:
    return [
        "connect",
        "--subscription-id",
        plane.subscription_id,
        "--resource-group",
        plane.resource_group,
        "--location",
        plane.location,
        "--tenant-id",
        plane.tenant_id,
        "--resource-name",
        name,
        "--control-plane-url",
        plane.url,
        "--control-plane-ca",
        str(plane.ca_file),
        *extra,
    ]


def connect_with_secret(plane: ControlPlane, root: Path, tmp_path: Path, name: str, *extra: str) -> Any:
    config = secrets_file(
        tmp_path,
        {
            "service-principal-id": plane.onboarding.client_id,
            "service-principal-secret": plane.onboarding.client_secret,
        },
    )
    result = azcmagent(root, *connect_args(plane, name, "--config", str(config), "--json", *extra))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def new_name() -> str:
    return f"agent-{uuid.uuid4().hex[:10]}"


def test_connect_with_a_secret_show_and_disconnect(
    plane: ControlPlane, admin: Principal, root: Path, tmp_path: Path
) -> None:
    name = new_name()
    shown = connect_with_secret(plane, root, tmp_path, name, "--tags", "env=test,'Cost Center'='IT, Ops'")
    assert shown["resourceId"].endswith(f"/providers/Microsoft.HybridCompute/machines/{name}")
    assert shown["status"] == "Connected"
    assert shown["tags"] == {"env": "test", "Cost Center": "IT, Ops"}
    machine = plane.machine(name, admin)
    assert machine is not None
    assert machine["properties"]["status"] == "Connected"
    assert machine["properties"]["vmId"] == shown["vmId"]
    assert machine["tags"] == {"env": "test", "Cost Center": "IT, Ops"}

    paths = root / "var" / "opt" / "azcmagent"
    key = paths / "certs" / "identity.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in key.read_text()
    assert not (paths / "certs" / "identity.key.pending").exists()
    state = json.loads((paths / "agentconfig.json").read_text())
    assert plane.onboarding.client_secret not in json.dumps(state)

    result = azcmagent(root, "show", "status", "resourceId", "-j")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"status": "Connected", "resourceId": shown["resourceId"]}
    text = azcmagent(root, "show")
    assert text.returncode == 0
    assert "Resource Id" in text.stdout and shown["resourceId"] in text.stdout

    again = azcmagent(root, *connect_args(plane, name, "--access-token", plane.token(plane.onboarding)))
    assert again.returncode == 67, again.stderr  # already connected
    assert "disconnect" in again.stderr

    config = secrets_file(
        tmp_path, {"service-principal-id": admin.client_id, "service-principal-secret": admin.client_secret}
    )
    result = azcmagent(root, "disconnect", "--tenant-id", plane.tenant_id, "--config", str(config), "-j")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "Disconnected"
    assert plane.machine(name, admin) is None
    assert not key.exists() and not (paths / "agentconfig.json").exists()
    status = azcmagent(root, "show", "status", "-j")
    assert json.loads(status.stdout) == {"status": "Disconnected"}


def test_connect_with_a_certificate(plane: ControlPlane, admin: Principal, root: Path) -> None:
    principal = plane.principal(
        f"cert-{uuid.uuid4().hex[:6]}", "Azure Connected Machine Onboarding", certificate=True
    )
    assert principal.certificate_file is not None
    name = new_name()
    result = azcmagent(
        root,
        *connect_args(
            plane,
            name,
            "--service-principal-id",
            principal.client_id,
            "--service-principal-cert",
            str(principal.certificate_file),
            "-j",
        ),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert plane.machine(name, admin) is not None


def test_connect_with_an_access_token_from_the_configured_control_plane(
    plane: ControlPlane, admin: Principal, root: Path, tmp_path: Path
) -> None:
    for key, value in (("controlplane.url", plane.url), ("controlplane.cafile", str(plane.ca_file))):
        assert azcmagent(root, "config", "set", key, value).returncode == 0
    name = new_name()
    config = secrets_file(tmp_path, {"access-token": plane.token(plane.onboarding)})
    result = azcmagent(
        root,
        "connect",
        "-s",
        plane.subscription_id,
        "-g",
        plane.resource_group,
        "-l",
        plane.location,
        "-n",
        name,
        "--config",
        str(config),
        "-j",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["tenantId"] == plane.tenant_id  # taken from the token
    assert plane.machine(name, admin) is not None
    forced = azcmagent(root, "disconnect", "--force-local-only")
    assert forced.returncode == 0, forced.stderr
    assert plane.machine(name, admin) is not None, "--force-local-only leaves the resource"
    assert json.loads(azcmagent(root, "show", "status", "-j").stdout)["status"] == "Disconnected"


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        (["--service-principal-secret", "wrong"], 41, "could not get a token"),
        (["--access-token", "not.a.jwt"], 12, "access token"),
        ([], 16, "authentication"),
    ],
)
def test_refused_connects_leave_the_machine_as_it_was(
    plane: ControlPlane, root: Path, extra: list[str], code: int, words: str
) -> None:
    principal = (
        ["--service-principal-id", plane.onboarding.client_id]
        if "--service-principal-secret" in extra
        else []
    )
    result = azcmagent(root, *connect_args(plane, new_name(), *principal, *extra))
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.startswith(f"AZCM{code:04d}: ")
    assert words in result.stderr
    state_dir = root / "var" / "opt" / "azcmagent"
    assert not (state_dir / "agentconfig.json").exists()
    assert not list(state_dir.glob("certs/*")) if state_dir.exists() else True


def test_an_unreachable_control_plane_is_azcm0026(plane: ControlPlane, root: Path, tmp_path: Path) -> None:
    config = secrets_file(
        tmp_path, {"service-principal-id": plane.onboarding.client_id, "service-principal-secret": "x"}
    )
    args = connect_args(plane, new_name(), "--config", str(config), "-j")
    args[args.index("--control-plane-url") + 1] = "https://127.0.0.1:9"
    result = azcmagent(root, *args)
    assert result.returncode == 26, result.stdout
    assert json.loads(result.stdout)["error"]["code"] == "AZCM0026"


def test_a_corrupted_state_names_the_way_out(root: Path) -> None:
    state = root / "var" / "opt" / "azcmagent" / "agentconfig.json"
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    result = azcmagent(root, "show")
    assert result.returncode == 6
    assert "disconnect --force-local-only" in result.stderr
    assert azcmagent(root, "disconnect", "--force-local-only").returncode == 0
    assert not state.exists()


def test_show_os_adds_the_operating_system(root: Path) -> None:
    result = azcmagent(root, "show", "--os", "status", "-j")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert list(shown) == ["status", "osName", "osVersion", "osType", "kernelVersion"]
    assert shown["osType"] == "linux" and shown["osName"] and shown["kernelVersion"] == os.uname().release


def test_an_unreadable_control_plane_ca_is_refused_before_anything_is_registered(
    plane: ControlPlane, admin: Principal, root: Path
) -> None:
    name = new_name()
    args = connect_args(plane, name, "--access-token", plane.token(plane.onboarding))
    args[args.index("--control-plane-ca") + 1] = str(root / "missing-ca.pem")
    result = azcmagent(root, *args)
    assert result.returncode == 23, result.stdout + result.stderr
    assert "missing-ca.pem" in result.stderr
    assert plane.machine(name, admin) is None


def test_microsofts_documented_forms_a_subscription_name_and_a_disconnect_without_tenant(
    plane: ControlPlane, admin: Principal, root: Path
) -> None:
    """As Microsoft's azcmagent pages write them: ``--subscription-id`` may be the subscription's
    name, secrets may be flags, and ``disconnect`` needs no ``--tenant-id`` (the machine knows it)."""
    name = new_name()
    args = connect_args(plane, name, "--service-principal-id", plane.onboarding.client_id)
    args[args.index(plane.subscription_id)] = (
        "HYBRIDOPS.ARC"  # `arc-controlplane init` names it hybridops.arc
    )
    connected = azcmagent(root, *args, "--service-principal-secret", plane.onboarding.client_secret, "-j")
    assert connected.returncode == 0, connected.stdout + connected.stderr
    shown = json.loads(connected.stdout)
    assert shown["subscriptionId"] == plane.subscription_id
    assert shown["resourceId"].startswith(f"/subscriptions/{plane.subscription_id}/")
    assert plane.machine(name, admin) is not None

    disconnected = azcmagent(
        root,
        "disconnect",
        "--service-principal-id",
        admin.client_id,
        "--service-principal-secret",
        admin.client_secret,
    )
    assert disconnected.returncode == 0, disconnected.stdout + disconnected.stderr
    assert plane.machine(name, admin) is None


def test_an_unknown_subscription_name_is_refused_with_azcm0068(plane: ControlPlane, root: Path) -> None:
    args = connect_args(plane, new_name(), "--service-principal-id", plane.onboarding.client_id)
    args[args.index(plane.subscription_id)] = "Production"
    refused = azcmagent(root, *args, "--service-principal-secret", plane.onboarding.client_secret)
    assert refused.returncode == 68, refused.stdout + refused.stderr
    assert refused.stderr.startswith("AZCM0068: ")
    assert "'Production'" in refused.stderr and "hybridops.arc" in refused.stderr  # what it can see
    assert not (root / "var" / "opt" / "azcmagent" / "agentconfig.json").exists()


def test_a_reconnect_keeps_the_connection_until_the_new_one_is_made(
    plane: ControlPlane, admin: Principal, root: Path, tmp_path: Path
) -> None:
    """docs/agent-cli.md, "Reconnect": ``connect --reconnect`` (the collection's reconnects) leaves
    the machine connected as it was when it fails, re-onboards the same resource with a new key,
    or moves the machine to another resource and deletes the old one."""
    name = new_name()
    first = connect_with_secret(plane, root, tmp_path, name)
    paths = root / "var" / "opt" / "azcmagent"
    key = paths / "certs" / "identity.key"

    def files() -> dict[str, str]:
        return {p.name: p.read_text() for p in (key, paths / "agentconfig.json")}

    before = files()
    # refused credentials: nothing changes, locally or in the control plane
    wrong = secrets_file(
        tmp_path, {"service-principal-id": plane.onboarding.client_id, "service-principal-secret": "wrong"}
    )
    failed = azcmagent(root, *connect_args(plane, name + "-moved", "--config", str(wrong), "--reconnect"))
    assert failed.returncode == 41, failed.stderr
    assert files() == before
    assert not (paths / "certs" / "identity.key.pending").exists()
    assert json.loads(azcmagent(root, "show", "status", "vmId", "-j").stdout) == {
        "status": "Connected", "vmId": first["vmId"]
    }  # fmt: skip
    assert plane.machine(name, admin) is not None
    # the same resource again: re-onboarded, same vmId, a new key
    same = connect_with_secret(plane, root, tmp_path, name, "--reconnect")
    assert same["vmId"] == first["vmId"] and same["status"] == "Connected"
    assert files()["identity.key"] != before["identity.key"]
    # another resource: connected to it, the old one deleted (the onboarding role may not delete:
    # the new connection stands and the result says so)
    moved = connect_with_secret(plane, root, tmp_path, name + "-moved", "--reconnect")
    assert moved["resourceId"].endswith(f"/machines/{name}-moved") and moved["vmId"] != first["vmId"]
    assert "could not be deleted" in moved["previousResource"]["note"], moved
    assert plane.machine(name + "-moved", admin) is not None
    config = secrets_file(
        tmp_path, {"service-principal-id": admin.client_id, "service-principal-secret": admin.client_secret}
    )
    back = azcmagent(root, *connect_args(plane, name, "--config", str(config), "--reconnect", "-j"))
    assert back.returncode == 0, back.stderr
    assert "was deleted" in json.loads(back.stdout)["previousResource"]["note"]
    assert plane.machine(name + "-moved", admin) is None
    assert json.loads(azcmagent(root, "show", "resourceName", "status", "-j").stdout) == {
        "resourceName": name, "status": "Connected"
    }  # fmt: skip
