"""The Azure CLI from PyPI, unmodified, against a running control plane: pointed at it by
configuration only (a registered custom cloud with endpoint discovery, a CA bundle), it signs in
with a service principal and does the everyday work (docs/azure-tools.md).

The CLI lives in its own virtual environment (``make azure-cli`` builds ``build/azure-cli``;
``ARC_AZURE_CLI`` may name another ``az``). Each test runs it as an operator would, in a fresh
configuration directory; the secret reaches it through a file (``-p @FILE``), never its argv.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, ca_context, run_cli, start_server

REPOSITORY = Path(__file__).resolve().parents[2]
AZ = Path(os.environ.get("ARC_AZURE_CLI", REPOSITORY / "build" / "azure-cli" / "bin" / "az"))
CLOUD = "HybridOpsArc"
MACHINES = "Microsoft.HybridCompute/machines"


@dataclass
class Cli:
    server: Server
    environment: dict[str, str]
    tenant_id: str
    subscription_id: str
    group: str
    location: str

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(AZ), *args], capture_output=True, text=True, env=self.environment, timeout=120, check=False
        )
        if check:
            assert done.returncode == 0, f"az {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--output", "json").stdout or "null")

    def machine_id(self, name: str) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.group}/providers/{MACHINES}/{name}"
        )


@pytest.fixture(scope="module")
def az(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    if not AZ.is_file():
        pytest.fail(f"the Azure CLI is not installed at {AZ}: run 'make azure-cli' (or set ARC_AZURE_CLI)")
    work = tmp_path_factory.mktemp("azure-cli")
    data = work / "data"
    init = run_cli("init", "--data-dir", str(data), "--json")
    assert init.returncode == 0, init.stderr
    ids = json.loads(init.stdout)
    owner = run_cli(
        "sp", "create", "--data-dir", str(data), "--name", "az-operator", "--role", "Owner",
        "--scope", f"/subscriptions/{ids['subscriptionId']}", "--json",
    )  # fmt: skip
    assert owner.returncode == 0, owner.stderr
    credentials = json.loads(owner.stdout)
    server = start_server(data)
    secret_file = work / "secret"
    secret_file.write_text(credentials["clientSecret"], encoding="utf-8")
    secret_file.chmod(0o600)
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(work),
        "AZURE_CONFIG_DIR": str(work / "azure"),
        "REQUESTS_CA_BUNDLE": str(server.ca_file),
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_NO_COLOR": "true",
        "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
    }
    cli = Cli(
        server, environment, ids["tenantId"], ids["subscriptionId"], ids["resourceGroup"], ids["location"]
    )
    try:
        # The client's own setting: no instance discovery against the public cloud.
        cli.run("config", "set", "core.instance_discovery=false")
        cli.run("cloud", "register", "--name", CLOUD, "--endpoint-resource-manager", server.url("/"))
        cli.run("cloud", "set", "--name", CLOUD)
        signed_in = cli.json(
            "login", "--service-principal", "--username", credentials["clientId"],
            "--password", f"@{secret_file}", "--tenant", ids["tenantId"],
        )  # fmt: skip
        assert [s["id"] for s in signed_in] == [ids["subscriptionId"]]
        yield cli
    finally:
        server.stop()


def test_the_registered_cloud_was_discovered_from_the_control_plane(az: Cli) -> None:
    cloud = az.json("cloud", "show", "--name", CLOUD)
    root = az.server.url("/")
    assert cloud["endpoints"]["resourceManager"] == root
    assert cloud["endpoints"]["activeDirectory"] == root
    assert cloud["endpoints"]["activeDirectoryResourceId"] == root
    account = az.json("account", "show")
    assert (account["id"], account["tenantId"], account["state"]) == (
        az.subscription_id,
        az.tenant_id,
        "Enabled",
    )
    assert account["user"]["type"] == "servicePrincipal"
    assert az.group in [group["name"] for group in az.json("group", "list")]


def test_machines_are_listed_shown_tagged_and_deleted_without_api_versions(az: Cli) -> None:
    for name, tags in (
        ("web-1", '{"tier":"front"}'),
        ("web-2", '{"tier":"front"}'),
        ("db-1", '{"tier":"back"}'),
    ):
        az.run(
            "rest", "--method", "put", "--url", f"{az.machine_id(name)}?api-version=2026-09-01",
            "--body", f'{{"location":"{az.location}","tags":{tags}}}',
        )  # fmt: skip

    listed = az.json("resource", "list", "--resource-type", MACHINES)
    assert sorted(r["name"] for r in listed) == ["db-1", "web-1", "web-2"]
    assert {r["type"] for r in listed} == {MACHINES}
    assert all(r["provisioningState"] == "Succeeded" and r["createdTime"] for r in listed)
    assert sorted(r["name"] for r in az.json("resource", "list", "--tag", "tier=front")) == ["web-1", "web-2"]
    assert [
        r["name"] for r in az.json("resource", "list", "--resource-group", az.group, "--name", "db-1")
    ] == ["db-1"]
    assert az.json("resource", "list", "--location", "southindia") == []

    shown = az.json("resource", "show", "--ids", az.machine_id("web-1"))
    assert (shown["name"], shown["properties"]["status"]) == ("web-1", "AwaitingConnection")
    by_name = az.json(
        "resource", "show", "--resource-group", az.group, "--name", "WEB-1", "--resource-type", MACHINES
    )
    assert by_name["id"] == shown["id"]

    tagged = az.json("resource", "tag", "--ids", az.machine_id("web-1"), "--tags", "tier=edge", "owner=ops")
    assert tagged["tags"] == {"tier": "edge", "owner": "ops"}
    merged = az.json(
        "resource", "tag", "--ids", az.machine_id("web-1"), "--tags", "cost=42", "--is-incremental"
    )
    assert merged["tags"] == {"tier": "edge", "owner": "ops", "cost": "42"}
    assert az.json("resource", "show", "--ids", az.machine_id("web-1"))["tags"] == merged["tags"]
    assert az.json("resource", "show", "--ids", az.machine_id("web-1"))["properties"]["status"] == (
        "AwaitingConnection"
    )

    group_id = f"/subscriptions/{az.subscription_id}/resourceGroups/{az.group}"
    assert az.json("resource", "tag", "--ids", group_id, "--tags", "team=ops")["tags"] == {"team": "ops"}
    assert az.json("group", "show", "--name", az.group)["tags"] == {"team": "ops"}

    az.run("resource", "delete", "--ids", az.machine_id("web-2"))
    gone = az.run("resource", "show", "--ids", az.machine_id("web-2"), check=False)
    assert gone.returncode == 3, gone.stderr  # the CLI's "not found"
    assert "ResourceNotFound" in gone.stderr
    assert sorted(r["name"] for r in az.json("resource", "list", "--resource-group", az.group)) == [
        "db-1",
        "web-1",
    ]


def test_a_token_from_the_cli_reads_an_async_operation(az: Cli) -> None:
    az.run(
        "rest", "--method", "put", "--url", f"{az.machine_id('temp-1')}?api-version=2026-09-01",
        "--body", f'{{"location":"{az.location}"}}',
    )  # fmt: skip
    token = az.json("account", "get-access-token")["accessToken"]
    request = urllib.request.Request(
        az.server.url(f"{az.machine_id('temp-1')}?api-version=2026-09-01"),
        method="DELETE",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, context=ca_context(az.server.ca_file), timeout=20) as reply:
        assert reply.status == 202
        operation_url = reply.headers["Azure-AsyncOperation"]
    operation = az.json("rest", "--url", operation_url)
    assert operation["status"] == "Succeeded"
    assert operation["name"] in operation_url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (
            "/subscriptions/{sub}/resources?api-version=2024-11-01&$filter=plan eq 'x'",
            "InvalidFilterInQueryString",
        ),
        ("/subscriptions/{sub}/providers/Microsoft.Nope?api-version=2021-04-01", "InvalidResourceNamespace"),
        (
            "/subscriptions/{sub}/providers/Microsoft.HybridCompute/machines?api-version=2015-01-01",
            "InvalidApiVersionParameter",
        ),
    ],
)
def test_bad_requests_get_azures_error_codes(az: Cli, url: str, code: str) -> None:
    failed = az.run("rest", "--url", url.format(sub=az.subscription_id), check=False)
    assert failed.returncode != 0
    assert code in failed.stderr
