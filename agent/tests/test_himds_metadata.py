"""Instance metadata: the documents, the state watcher, and the endpoints in a running himds."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from himds_helpers import RESOURCE_ID, VM_ID, get, make_state, make_system, serving, wait_for

from arc_agent import ipc
from arc_agent.config.connection import ConnectionState, save_state
from arc_agent.errors import AzcmError
from arc_agent.himds.api import HimdsApi, Request
from arc_agent.himds.instance import InstanceMetadata, render
from arc_agent.himds.statewatch import StateFileWatcher
from arc_agent.metadata.sysinfo import SystemInfo
from arc_agent.paths import AgentPaths

# The compute keys of docs/reference/himds.md.
COMPUTE_KEYS = {
    "azEnvironment",
    "isHostCompatibilityLayerVm",
    "location",
    "name",
    "offer",
    "osType",
    "placementGroupId",
    "plan",
    "platformFaultDomain",
    "platformUpdateDomain",
    "provider",
    "publicKeys",
    "publisher",
    "resourceGroupName",
    "customData",
    "resourceId",
    "securityProfile",
    "sku",
    "storageProfile",
    "subscriptionId",
    "tags",
    "tagsList",
    "version",
    "vmId",
    "vmScaleSetName",
    "vmSize",
    "zone",
}
INSTANCE = "/metadata/instance?api-version=2020-06-01"


def test_compute_document() -> None:
    compute = json.loads(render(make_state(), make_system()).compute)
    assert set(compute) == COMPUTE_KEYS
    assert compute["azEnvironment"] == "AzurePublicCloud"
    assert compute["provider"] == "Microsoft.HybridCompute"
    assert compute["resourceId"] == RESOURCE_ID and compute["vmId"] == VM_ID
    assert (compute["name"], compute["resourceGroupName"], compute["location"]) == (
        "web-01",
        "Arc-Servers",
        "westeurope",
    )
    assert compute["subscriptionId"] == "7e94351d-5040-4466-a7b7-200bf848462c"
    assert compute["tags"] == "env:prod;team:web"
    assert compute["tagsList"] == [{"name": "env", "value": "prod"}, {"name": "team", "value": "web"}]
    assert compute["osType"] == "Linux"
    assert compute["sku"] == "Debian GNU/Linux 12 (bookworm)" and compute["version"] == "12"
    assert compute["plan"] == {"name": "", "product": "", "publisher": ""}
    assert compute["securityProfile"] == {"secureBootEnabled": "true", "virtualTpmEnabled": "false"}
    assert compute["publicKeys"] == [] and compute["vmSize"] == ""


@pytest.mark.parametrize(
    ("cloud", "environment"),
    [
        ("AzureUSGovernment", "AzureUSGovernmentCloud"),
        ("AzureChinaCloud", "AzureChinaCloud"),
        ("Other", "Other"),
    ],
)
def test_az_environment(cloud: str, environment: str) -> None:
    compute = json.loads(render(make_state(cloud=cloud), make_system()).compute)
    assert compute["azEnvironment"] == environment


def test_no_tags() -> None:
    compute = json.loads(render(make_state(tags={}), make_system()).compute)
    assert (compute["tags"], compute["tagsList"]) == ("", [])


def test_network_document() -> None:
    network = json.loads(render(make_state(), make_system()).network)
    assert network == {
        "interface": [
            {
                "ipv4": {
                    "ipAddress": [
                        {"privateIpAddress": "10.0.0.4", "publicIpAddress": ""},
                        {"privateIpAddress": "10.0.0.5", "publicIpAddress": ""},
                    ],
                    "subnet": [{"address": "10.0.0.0", "prefix": "24"}],
                },
                "ipv6": {
                    "ipAddress": [{"privateIpAddress": "fd00::4", "publicIpAddress": ""}],
                    "subnet": [{"address": "fd00::", "prefix": "64"}],
                },
                "macAddress": "525400123456",
            }
        ]
    }


def test_instance_document_holds_both() -> None:
    documents = render(make_state(), make_system())
    instance = json.loads(documents.instance)
    assert instance == {"compute": json.loads(documents.compute), "network": json.loads(documents.network)}


def test_documents_are_rendered_once_per_change() -> None:
    system: list[SystemInfo] = [make_system()]
    metadata = InstanceMetadata(lambda: system[0])
    state = make_state()
    first = metadata.documents(state)
    assert metadata.documents(state) is first
    assert metadata.documents(make_state()) is not first  # a new state object: rendered again
    renamed = make_state(resource_name="web-02")
    assert json.loads(metadata.documents(renamed).compute)["name"] == "web-02"
    before = metadata.documents(renamed)
    system[0] = make_system(os_pretty_name="Debian GNU/Linux 13 (trixie)")
    after = metadata.documents(renamed)
    assert after is not before
    assert json.loads(after.compute)["sku"] == "Debian GNU/Linux 13 (trixie)"


# --- the state watcher --------------------------------------------------------------------------


def test_state_watcher(tmp_path: Path) -> None:
    path = tmp_path / "agentconfig.json"
    watcher = StateFileWatcher(path)
    assert watcher() is None
    save_state(path, make_state())
    state = watcher()
    assert state == make_state()
    assert watcher() is state  # unchanged file: the same object
    save_state(path, make_state(location="northeurope"))
    changed = watcher()
    assert changed is not None and changed.location == "northeurope"
    path.unlink()
    assert watcher() is None


def test_state_watcher_reports_a_broken_file_until_it_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "agentconfig.json"
    path.write_text("{not json")
    watcher = StateFileWatcher(path)
    for _ in range(2):
        with pytest.raises(AzcmError) as raised:
            watcher()
        assert "disconnect --force-local-only" in raised.value.message
    save_state(path, make_state())
    assert watcher() == make_state()


# --- the endpoints ------------------------------------------------------------------------------


def api_for(state: ConnectionState | None) -> HimdsApi:
    system = make_system()
    return HimdsApi("9.9", state=lambda: state, metadata=InstanceMetadata(lambda: system))


def call(api: HimdsApi, target: str) -> tuple[int, Any]:
    response = api.handle(Request("GET", target, {"metadata": "true"}))
    body = response.body
    return response.status, json.loads(body) if isinstance(body, bytes) else dict(body)


@pytest.mark.parametrize("version", ["2019-06-01", "2019-08-15", "2019-11-01", "2020-06-01", "2021-02-01"])
def test_instance_api_versions(version: str) -> None:
    status, body = call(api_for(make_state()), f"/metadata/instance?api-version={version}")
    assert status == HTTPStatus.OK
    assert set(body) == {"compute", "network"}


def test_instance_unsupported_api_version() -> None:
    status, body = call(api_for(make_state()), "/metadata/instance?api-version=2017-08-01")
    assert status == HTTPStatus.BAD_REQUEST
    assert body["error_description"].endswith(
        "Supported are 2019-06-01 2019-08-15 2019-11-01 2020-06-01 2021-02-01"
    )


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/metadata/instance/compute", "vmId"),
        ("/metadata/instance/compute/", "vmId"),
        ("/metadata/instance/network", "interface"),
    ],
)
def test_compute_and_network_paths(path: str, key: str) -> None:
    status, body = call(api_for(make_state()), f"{path}?api-version=2020-06-01&format=json")
    assert status == HTTPStatus.OK
    assert key in body


def test_only_json_format() -> None:
    status, body = call(
        api_for(make_state()), "/metadata/instance/compute?api-version=2020-06-01&format=text"
    )
    assert status == HTTPStatus.BAD_REQUEST
    assert "format=json" in body["error_description"]


def test_not_connected_has_no_metadata() -> None:
    status, body = call(api_for(None), INSTANCE)
    assert status == HTTPStatus.NOT_FOUND
    assert body["error"] == "not_connected"
    assert "azcmagent connect" in body["error_description"]


def test_broken_state_file_is_a_server_error_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "agentconfig.json"
    path.write_text("[]")
    api = HimdsApi("9.9", state=StateFileWatcher(path))
    status, body = call(api, INSTANCE)
    assert status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert "disconnect --force-local-only" in body["error_description"]


def test_metadata_over_http() -> None:
    with serving(api_for(make_state())) as port:
        reply = get(port, INSTANCE)
        assert reply.status == 200
        assert reply.headers["content-type"] == "application/json; charset=utf-8"
        assert reply.json()["compute"]["resourceId"] == RESOURCE_ID
        assert get(port, INSTANCE, {}).status == 400  # Metadata: true is still required
        assert get(port, INSTANCE, {"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}).status == 400


# --- a real himds process -----------------------------------------------------------------------


@pytest.fixture
def himds_root(tmp_path: Path) -> Iterator[tuple[int, AgentPaths]]:
    """``himds`` as its entry point starts it, with the agent's files under a temporary root."""
    root = tmp_path / "root"
    paths = AgentPaths.under(root)
    paths.state_dir.mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "arc_agent.himds.main", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AZCMAGENT_ROOT": str(root), "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"himds did not start: {process.communicate()[1]}") from None
                time.sleep(0.05)
        yield port, paths
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_running_himds_follows_the_state_it_is_told_of(himds_root: tuple[int, AgentPaths]) -> None:
    """connect and disconnect write the state, then tell himds over its socket (ipc.py)."""
    port, paths = himds_root
    assert get(port, INSTANCE).status == 404
    assert get(port, "/agentstatus?api-version=2019-08-15").json()["status"] == "Disconnected"
    save_state(paths.agent_config, make_state())
    assert ipc.ask(paths.himds_socket, {"op": "reload"}) == {"ok": True, "connected": True}
    reply = get(port, INSTANCE)
    assert reply.status == 200
    compute = reply.json()["compute"]
    assert compute["vmId"] == VM_ID and compute["name"] == "web-01"
    assert compute["sku"]  # this machine's os-release
    # This made-up state has no machine key: himds cannot heartbeat, and says why (as soon as its
    # heartbeat thread has tried: on a busy machine not before the reload's answer).
    wait_for(
        lambda: get(port, "/agentstatus?api-version=2019-08-15").json()["status"] == "Disconnected",
        30,
        "himds reports Disconnected without a machine key",
    )
    assert "machine key" in json.loads(paths.himds_status.read_text())["agentErrorDetails"]
    token = get(
        port, "/metadata/identity/oauth2/token?api-version=2020-06-01&resource=https://vault.azure.net"
    )
    assert token.status == 401  # the challenge: tokens come from the control plane
    paths.agent_config.unlink()
    assert ipc.ask(paths.himds_socket, {"op": "reload"}) == {"ok": True, "connected": False}
    assert get(port, INSTANCE).status == 404
