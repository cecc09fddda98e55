"""Azure's own Python SDKs, unmodified, against the control plane: azure-identity gets a token
from its token service, and azure-mgmt-hybridcompute creates, lists, reads, tags and deletes
machines through its management API, over HTTPS, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ClientSecretCredential, DefaultAzureCredential, EnvironmentCredential
from azure.mgmt.hybridcompute import HybridComputeManagementClient
from azure.mgmt.hybridcompute.models import Machine, MachineUpdate
from conftest import Server, run_cli, start_server


@pytest.fixture
def sdk(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HybridComputeManagementClient, dict[str, str], Server]]:
    data = tmp_path / "data"
    db = ["--data-dir", str(data), "--database-url", database_url]
    init = run_cli("init", *db, "--json")
    assert init.returncode == 0, init.stderr
    ids = json.loads(init.stdout)
    admin = run_cli(
        "sp", "create", *db, "--name", "sdk-admin", "--role", "Resource Administrator",
        "--scope", f"/subscriptions/{ids['subscriptionId']}", "--json",
    )  # fmt: skip
    assert admin.returncode == 0, admin.stderr
    creds = json.loads(admin.stdout)
    ids["adminClientId"], ids["adminClientSecret"] = creds["clientId"], creds["clientSecret"]
    server = start_server(data, ["--database-url", database_url])
    # The SDKs verify TLS with requests' trust store: point it at the control plane's CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    credential = ClientSecretCredential(
        ids["tenantId"],
        creds["clientId"],
        creds["clientSecret"],
        authority=f"https://127.0.0.1:{server.port}",
        disable_instance_discovery=True,
    )
    client = HybridComputeManagementClient(
        credential,
        ids["subscriptionId"],
        base_url=f"https://127.0.0.1:{server.port}",
        credential_scopes=["https://management.azure.com/.default"],
    )
    try:
        yield client, ids, server
    finally:
        client.close()
        credential.close()
        server.stop()


def test_sdk_manages_machines(sdk: tuple[HybridComputeManagementClient, dict[str, str], Server]) -> None:
    client, ids, _ = sdk
    group, location = ids["resourceGroup"], ids["location"]
    for name in ("web-1", "web-2", "db-1"):
        created = client.machines.create_or_update(
            group, name, Machine(location=location, tags={"tier": "a"})
        )
        assert created.name == name
        assert created.status == "AwaitingConnection"

    listed = sorted(str(m.name) for m in client.machines.list_by_resource_group(group))
    assert listed == ["db-1", "web-1", "web-2"]
    assert sorted(str(m.name) for m in client.machines.list_by_subscription()) == listed

    machine = client.machines.get(group, "WEB-1")  # ids are case-insensitive
    assert machine.name == "web-1"
    assert machine.type == "Microsoft.HybridCompute/machines"
    assert (
        str(machine.id).lower()
        == (
            f"/subscriptions/{ids['subscriptionId']}/resourceGroups/{group}"
            "/providers/Microsoft.HybridCompute/machines/web-1"
        ).lower()
    )

    updated = client.machines.update(group, "web-1", MachineUpdate(tags={"tier": "b", "owner": "ops"}))
    assert updated.tags == {"tier": "b", "owner": "ops"}
    assert client.machines.get(group, "web-1").tags == {"tier": "b", "owner": "ops"}

    client.machines.begin_delete(group, "web-2").result()
    with pytest.raises(ResourceNotFoundError):
        client.machines.get(group, "web-2")
    assert sorted(str(m.name) for m in client.machines.list_by_resource_group(group)) == ["db-1", "web-1"]


@pytest.mark.parametrize("adfs", [False, True], ids=["tenant", "adfs"])
@pytest.mark.parametrize("credential_type", [EnvironmentCredential, DefaultAzureCredential])
def test_ci_pipelines_sign_in_from_the_environment(
    sdk: tuple[HybridComputeManagementClient, dict[str, str], Server],
    monkeypatch: pytest.MonkeyPatch,
    credential_type: type[EnvironmentCredential] | type[DefaultAzureCredential],
    adfs: bool,
) -> None:
    """What a pipeline sets (docs/azure-tools.md): the service principal and AZURE_AUTHORITY_HOST in
    the environment; with the tenant's id, instance discovery is switched off in code; with the
    tenant ``adfs`` (the AD FS authority) nothing is needed in code."""
    _, ids, server = sdk
    monkeypatch.setenv("AZURE_TENANT_ID", "adfs" if adfs else ids["tenantId"])
    monkeypatch.setenv("AZURE_CLIENT_ID", ids["adminClientId"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", ids["adminClientSecret"])
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", f"https://127.0.0.1:{server.port}")
    credential = credential_type() if adfs else credential_type(disable_instance_discovery=True)
    audience = f"https://127.0.0.1:{server.port}/"
    client = HybridComputeManagementClient(
        credential, ids["subscriptionId"], base_url=audience, credential_scopes=[audience + ".default"]
    )
    name = f"ci-{credential_type.__name__[:3].lower()}-{'adfs' if adfs else 'tenant'}"
    try:
        client.machines.create_or_update(ids["resourceGroup"], name, Machine(location=ids["location"]))
        assert name in [m.name for m in client.machines.list_by_resource_group(ids["resourceGroup"])]
    finally:
        client.close()
        credential.close()
