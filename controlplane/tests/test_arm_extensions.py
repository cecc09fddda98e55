"""Machine extensions through the management API, as azure-mgmt-hybridcompute drives them, with an
agent on the other side (docs/extensions.md): PUT, PATCH and DELETE as long-running operations that
end with the agent's report; protected settings encrypted to the machine's extension certificate,
never answered and never stored in plain text; roles; bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from agent_client import AgentClient, ExtensionCertificate
from agentapi_env import DATABASES, AgentApiEnv, start_env
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.hybridcompute import HybridComputeManagementClient
from azure.mgmt.hybridcompute.models import (
    ExtensionTargetProperties,
    MachineExtension,
    MachineExtensionInstanceViewStatus,
    MachineExtensionProperties,
    MachineExtensionUpdate,
    MachineExtensionUpdateProperties,
    MachineExtensionUpgrade,
)
from conftest import run_cli
from cryptography.hazmat.primitives import hashes
from sqlalchemy import text

HC = "2026-09-01"
RESOURCE_GROUP = "arc-servers"
SECRET = "s3cr3t-value-never-stored"


@pytest.fixture(scope="module", params=DATABASES)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentApiEnv]:
    base = tmp_path_factory.mktemp(f"extensions-{request.param}")
    for started in start_env(request.param, base, request):
        for version in ("2.1.0", "2.2.0"):
            published = publish(
                started, handler_package(base / f"script-{version}.zip"), "CustomScript", version
            )
            assert published.returncode == 0, published.stderr
        yield started


def handler_package(path: Path, manifest: object = None) -> Path:
    """A VM extension handler package: HandlerManifest.json and its script."""
    commands = {
        f"{verb}Command": f"bin/handler.sh {verb}"
        for verb in ("install", "enable", "disable", "uninstall", "update")
    }
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "HandlerManifest.json",
            json.dumps(manifest if manifest is not None else [{"version": 1.0, "handlerManifest": commands}]),
        )
        archive.writestr("bin/handler.sh", '#!/bin/sh\necho "$1"\n')
    return path


def publish(
    env: AgentApiEnv, package: Path, type_: str, version: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "extension", "publish", str(package), "--publisher", "Microsoft.Azure.Extensions", "--type", type_,
        "--version", version, *store(env), *extra,
    )  # fmt: skip


def store(env: AgentApiEnv) -> list[str]:
    url = env.db.engine.url.render_as_string(hide_password=False)
    return ["--data-dir", str(env.server.data_dir), "--database-url", url]


class StaticToken:
    """A TokenCredential handing out a token made for the test (what a CI pipeline would pass)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3000)


@pytest.fixture(scope="module")
def sdk(env: AgentApiEnv, monkeypatch_module: pytest.MonkeyPatch) -> Iterator[HybridComputeManagementClient]:
    monkeypatch_module.setenv("REQUESTS_CA_BUNDLE", str(env.server.ca_file))
    client = HybridComputeManagementClient(
        StaticToken(env.principal_token("Azure Connected Machine Resource Administrator")),
        env.subscription_id,
        base_url=env.public_url,
        credential_scopes=["https://management.azure.com/.default"],
        polling_interval=0.2,
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


class ExtensionAgent:
    """The extension service's side of the protocol, with its own certificate."""

    def __init__(self, env: AgentApiEnv, agent: AgentClient) -> None:
        self.env, self.agent = env, agent
        self.own = ExtensionCertificate()
        self.key, self.certificate = self.own.key, self.own.certificate

    def register_certificate(self) -> httpx.Response:
        return self.own.register(self.env.http, self.agent)

    def goal_state(self) -> dict[str, Any]:
        reply = self.env.http.get(
            f"/agent/v1/machines/{self.agent.vm_id}/extensions", headers=self.agent.headers()
        )
        assert reply.status_code == 200, reply.text
        document: dict[str, Any] = reply.json()
        return document

    def decrypt(self, protected: str) -> dict[str, Any]:
        return self.own.decrypt(protected)

    def report(
        self, name: str, sequence: int, status: str, message: str = "", code: int = 0
    ) -> httpx.Response:
        return self.env.http.put(
            f"/agent/v1/machines/{self.agent.vm_id}/extensions/{name}/status",
            json={"sequenceNumber": sequence, "status": status, "code": code, "message": message},
            headers=self.agent.headers(),
        )

    def answer(self, name: str, status: str, message: str, known: int) -> threading.Thread:
        """In the background, as extd will: wait for new work, read the goal state, report."""

        def work() -> None:
            woke = self.agent.notifications(generation=known, wait=30)
            assert woke.status_code == 200, woke.text
            goal = {entry["name"]: entry for entry in self.goal_state()["extensions"]}[name]
            self.seen.append(goal)
            reply = self.report(name, goal["sequenceNumber"], status, message)
            assert reply.status_code == 204, reply.text

        self.seen: list[dict[str, Any]] = []
        thread = threading.Thread(target=work)
        thread.start()
        return thread


def properties(extension: MachineExtension) -> MachineExtensionProperties:
    assert extension.properties is not None
    return extension.properties


def status_of(extension: MachineExtension) -> MachineExtensionInstanceViewStatus:
    view = properties(extension).instance_view
    assert view is not None and view.status is not None
    return view.status


def machine_generation(env: AgentApiEnv, agent: AgentClient) -> int:
    machine = env.machine(agent.vm_id)
    assert machine is not None
    return machine.generation


def manage(env: AgentApiEnv, method: str, path: str, role: str, body: object = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {env.principal_token(role)}"}
    return env.http.request(method, path, params={"api-version": HC}, headers=headers, json=body)


def script(command: str, secret: str | None = None) -> MachineExtension:
    return MachineExtension(
        location="westeurope",
        properties=MachineExtensionProperties(
            publisher="Microsoft.Azure.Extensions",
            type="CustomScript",
            type_handler_version="2.1",
            settings={"commandToExecute": command},
            protected_settings={"commandToExecute": f"echo {secret}"} if secret else None,
        ),
    )


def test_an_extension_is_created_when_the_agent_reports_success(
    env: AgentApiEnv, sdk: HybridComputeManagementClient
) -> None:
    agent = env.connected_agent()
    ext = ExtensionAgent(env, agent)
    assert ext.register_certificate().status_code == 200
    name = env.machine(agent.vm_id).name  # type: ignore[union-attr]
    worker = ext.answer("script", "success", "Finished executing command", machine_generation(env, agent))
    poller = sdk.machine_extensions.begin_create_or_update(
        RESOURCE_GROUP, name, "script", script("date", SECRET)
    )
    created = poller.result(timeout=30)
    worker.join(10)
    assert properties(created).provisioning_state == "Succeeded"
    assert status_of(created).message == "Finished executing command"
    assert status_of(created).level == "Info"
    assert properties(created).protected_settings is None
    # what the agent got: the settings, and the protected ones only it can read
    goal = ext.seen[0]
    assert goal["settings"] == {"commandToExecute": "date"} and goal["state"] == "enabled"
    assert goal["protectedSettingsCertThumbprint"] == ext.certificate.fingerprint(hashes.SHA1()).hex().upper()
    assert ext.decrypt(goal["protectedSettings"]) == {"commandToExecute": f"echo {SECRET}"}
    # never answered, never stored in plain text
    listed = list(sdk.machine_extensions.list(RESOURCE_GROUP, name))
    assert [e.name for e in listed] == ["script"]
    raw = manage(env, "GET", env.machine_id(name) + "/extensions/script", "Reader")
    assert raw.status_code == 200 and SECRET not in raw.text and "protectedSettings" not in raw.text
    with env.db.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM machine_extensions")).all()
    assert rows and not any(SECRET in str(value) for row in rows for value in row)

    # the same request again is no change: 200 at once, no new sequence number
    generation = machine_generation(env, agent)
    again = manage(
        env,
        "PUT",
        env.machine_id(name) + "/extensions/script",
        "Azure Connected Machine Resource Administrator",
        {
            "location": "westeurope",
            "properties": {
                "publisher": "Microsoft.Azure.Extensions",
                "type": "CustomScript",
                "typeHandlerVersion": "2.1",
                "settings": {"commandToExecute": "date"},
                "protectedSettings": {"commandToExecute": f"echo {SECRET}"},
            },
        },
    )
    assert again.status_code == 200, again.text
    assert machine_generation(env, agent) == generation


def test_a_failing_handler_fails_the_operation_with_its_message(
    env: AgentApiEnv, sdk: HybridComputeManagementClient
) -> None:
    agent = env.connected_agent()
    ext = ExtensionAgent(env, agent)
    name = env.machine(agent.vm_id).name  # type: ignore[union-attr]
    worker = ext.answer("script", "error", "exit code 3: no such file", machine_generation(env, agent))
    poller = sdk.machine_extensions.begin_create_or_update(RESOURCE_GROUP, name, "script", script("false"))
    with pytest.raises(HttpResponseError) as failure:
        poller.result(timeout=30)
    worker.join(10)
    assert "exit code 3: no such file" in str(failure.value)
    extension = sdk.machine_extensions.get(RESOURCE_GROUP, name, "script")
    assert properties(extension).provisioning_state == "Failed"
    assert status_of(extension).level == "Error"

    # PATCH with new settings runs it again; a stale report does not end the new operation
    worker = ext.answer("script", "success", "done", machine_generation(env, agent))
    poller = sdk.machine_extensions.begin_update(
        RESOURCE_GROUP,
        name,
        "script",
        MachineExtensionUpdate(
            properties=MachineExtensionUpdateProperties(settings={"commandToExecute": "true"})
        ),
    )
    assert properties(poller.result(timeout=30)).provisioning_state == "Succeeded"
    worker.join(10)
    sequence = ext.seen[0]["sequenceNumber"]
    assert sequence == 2
    assert ext.report("script", sequence - 1, "error", "old news").status_code == 204
    assert (
        properties(sdk.machine_extensions.get(RESOURCE_GROUP, name, "script")).provisioning_state
        == "Succeeded"
    )


def test_deleting_waits_for_the_agent_to_remove_it(
    env: AgentApiEnv, sdk: HybridComputeManagementClient
) -> None:
    agent = env.connected_agent()
    ext = ExtensionAgent(env, agent)
    name = env.machine(agent.vm_id).name  # type: ignore[union-attr]
    worker = ext.answer("script", "success", "ok", machine_generation(env, agent))
    sdk.machine_extensions.begin_create_or_update(RESOURCE_GROUP, name, "script", script("true")).result(
        timeout=30
    )
    worker.join(10)
    worker = ext.answer("script", "success", "removed", machine_generation(env, agent))
    poller = sdk.machine_extensions.begin_delete(RESOURCE_GROUP, name, "script")
    poller.result(timeout=30)
    worker.join(10)
    assert ext.seen[0]["state"] == "deleted"
    with pytest.raises(ResourceNotFoundError):
        sdk.machine_extensions.get(RESOURCE_GROUP, name, "script")
    reply = manage(env, "DELETE", env.machine_id(name) + "/extensions/script", "Owner")
    assert reply.status_code == 204


def test_roles_and_bad_input_are_refused_before_anything_changes(env: AgentApiEnv) -> None:
    agent = env.connected_agent()
    name = env.machine(agent.vm_id).name  # type: ignore[union-attr]
    path = env.machine_id(name) + "/extensions/script"
    body: dict[str, Any] = {
        "location": "westeurope",
        "properties": {
            "publisher": "Microsoft.Azure.Extensions",
            "type": "CustomScript",
            "typeHandlerVersion": "2.1",
        },
    }
    generation = machine_generation(env, agent)
    denied = manage(env, "PUT", path, "Azure Connected Machine Onboarding", body)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "AuthorizationFailed"
    # protected settings with nothing to encrypt them to
    body["properties"]["protectedSettings"] = {"token": SECRET}
    refused = manage(env, "PUT", path, "Owner", body)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "MachineNotReadyForExtensions"
    assert SECRET not in refused.text
    for broken, says in (
        (
            {"publisher": "Microsoft.Azure.Extensions"},
            "properties.publisher and properties.type are required",
        ),
        ({"publisher": "x", "type": "y", "typeHandlerVersion": "latest"}, "a version such as '2.1'"),
        ({"publisher": "x y", "type": "y"}, "letters, digits"),
        ({"publisher": "x", "type": "y", "settings": "not an object"}, "settings"),
    ):
        reply = manage(env, "PUT", path, "Owner", {"location": "westeurope", "properties": broken})
        assert reply.status_code == 400, reply.text
        assert says in reply.text, reply.text
    bad_name = manage(env, "PUT", env.machine_id(name) + "/extensions/a%20b", "Owner", body)
    assert bad_name.status_code == 400
    assert manage(env, "GET", path, "Reader").status_code == 404
    assert machine_generation(env, agent) == generation
    # an agent's certificate must be one protected settings can be encrypted to
    ec_key_certificate = "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n"
    reply = env.http.put(
        f"/agent/v1/machines/{agent.vm_id}/extensionCertificate",
        json={"certificate": ec_key_certificate},
        headers=agent.headers(),
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "InvalidCertificate"


def test_the_goal_state_names_the_package_and_agents_verify_it(
    env: AgentApiEnv, sdk: HybridComputeManagementClient
) -> None:
    agent = env.connected_agent()
    ext = ExtensionAgent(env, agent)
    name = env.machine(agent.vm_id).name  # type: ignore[union-attr]
    body = script("date")
    properties(body).auto_upgrade_minor_version = True
    worker = ext.answer("script", "success", "ok", machine_generation(env, agent))
    sdk.machine_extensions.begin_create_or_update(RESOURCE_GROUP, name, "script", body).result(timeout=30)
    worker.join(30)  # under load (make test runs suites side by side) the worker may still be reporting
    assert not worker.is_alive() and ext.seen, "the agent's worker saw no goal state"
    package = ext.seen[0]["package"]
    assert package["version"] == "2.2.0"  # 2.1 with minor auto-upgrade: the newest 2.x
    assert package["uri"].endswith(
        "/agent/v1/extensionPackages/Microsoft.Azure.Extensions/CustomScript/2.2.0"
    )
    download = env.http.get(package["uri"], headers=agent.headers())
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    assert (
        hashlib.sha256(download.content).hexdigest() == package["sha256"]
        and len(download.content) == package["size"]
    )
    signed = env.http.get(package["signatureUri"], headers=agent.headers()).text
    keys = env.http.get("/agent/v1/packageSigningKey", headers=agent.headers()).json()["keys"]
    public = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(signed, public, algorithms=["ES256"])
    assert claims == {
        "publisher": "Microsoft.Azure.Extensions", "type": "CustomScript", "version": "2.2.0",
        "sha256": package["sha256"], "size": package["size"],
    }  # fmt: skip
    assert jwt.get_unverified_header(signed)["typ"] == "hybridops-arc-extension-package+jws"
    # packages are for machines only
    assert env.http.get(package["uri"]).status_code == 401
    assert env.http.get(package["uri"] + "x", headers=agent.headers()).status_code == 404


def test_unknown_extensions_and_versions_are_refused_naming_what_is_published(env: AgentApiEnv) -> None:
    agent = env.connected_agent()
    name = env.machine(agent.vm_id).name  # type: ignore[union-attr]
    path = env.machine_id(name) + "/extensions/script"
    for properties_, says in (
        ({"publisher": "Contoso", "type": "Nothing"}, "No extension Contoso.Nothing is published"),
        (
            {"publisher": "Microsoft.Azure.Extensions", "type": "CustomScript", "typeHandlerVersion": "3.0"},
            "has no version 3.0: the published versions are 2.1.0, 2.2.0",
        ),
    ):
        reply = manage(env, "PUT", path, "Owner", {"location": "westeurope", "properties": properties_})
        assert reply.status_code == 400, reply.text
        assert says in reply.json()["error"]["message"]
    assert manage(env, "GET", path, "Reader").status_code == 404


def test_the_catalogue_refuses_what_is_not_a_handler_package(env: AgentApiEnv, tmp_path: Path) -> None:
    not_zip = tmp_path / "plain.zip"
    not_zip.write_text("hello")
    no_manifest = tmp_path / "empty.zip"
    with zipfile.ZipFile(no_manifest, "w") as archive:
        archive.writestr("readme.txt", "x")
    escaping = handler_package(tmp_path / "escape.zip")
    with zipfile.ZipFile(escaping, "a") as archive:
        archive.writestr("../../etc/cron.d/evil", "x")
    for package, version, says in (
        (not_zip, "1.0.0", "is not a zip file"),
        (no_manifest, "1.0.0", "has no HandlerManifest.json at its top"),
        (
            handler_package(tmp_path / "bad.zip", [{"handlerManifest": {"installCommand": "x"}}]),
            "1.0.0",
            "lacks enableCommand",
        ),
        (escaping, "1.0.0", "would land outside the handler's folder"),
        (handler_package(tmp_path / "ok.zip"), "latest", "is not valid: give it as 2.1.0"),
        (handler_package(tmp_path / "again.zip"), "2.1.0", "is published already: remove it first"),
    ):
        refused = publish(env, package, "CustomScript", version)
        assert refused.returncode != 0, refused.stdout
        assert says in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    listed = run_cli("extension", "list", *store(env), "--json")
    versions = [(p["type"], p["version"]) for p in json.loads(listed.stdout)["packages"]]
    assert versions == [("CustomScript", "2.1.0"), ("CustomScript", "2.2.0")]
    # publish, then remove, one more version
    extra = publish(env, handler_package(tmp_path / "x.zip"), "CustomScript", "2.3.0", "--json")
    assert extra.returncode == 0, extra.stderr
    kept = env.server.data_dir / "packages" / f"{json.loads(extra.stdout)['sha256']}.zip"
    assert kept.is_file() and oct(kept.stat().st_mode & 0o777) == "0o600"
    removed = run_cli(
        "extension", "remove", "--publisher", "Microsoft.Azure.Extensions", "--type", "CustomScript",
        "--version", "2.3.0", *store(env),
    )  # fmt: skip
    assert removed.returncode == 0, removed.stderr
    assert not kept.exists()


def test_the_catalogue_is_read_through_the_extension_metadata_routes(
    env: AgentApiEnv, sdk: HybridComputeManagementClient
) -> None:
    listed = list(sdk.extension_metadata.list("westeurope", "Microsoft.Azure.Extensions", "CustomScript"))
    assert [v.name for v in listed] == ["2.1.0", "2.2.0"]
    one = sdk.extension_metadata.get("westeurope", "Microsoft.Azure.Extensions", "customscript", "2.2.0")
    assert one.properties is not None and one.properties.extension_type == "CustomScript"
    assert one.type == "Microsoft.HybridCompute/locations/publishers/extensionTypes/versions"
    v2 = list(sdk.extension_metadata_v2.list("westeurope", "Microsoft.Azure.Extensions", "CustomScript"))
    assert v2[-1].properties is not None
    uris = v2[-1].properties.extension_uris or []
    assert uris[0].endswith("/agent/v1/extensionPackages/Microsoft.Azure.Extensions/CustomScript/2.2.0")
    assert v2[-1].properties.extension_signature_uri == uris[0] + "/signature"
    with pytest.raises(ResourceNotFoundError):
        sdk.extension_metadata.get("westeurope", "Microsoft.Azure.Extensions", "CustomScript", "9.9")


def test_upgrade_extensions_moves_an_extension_to_a_newer_version(
    env: AgentApiEnv, sdk: HybridComputeManagementClient
) -> None:
    agent = env.connected_agent()
    ext = ExtensionAgent(env, agent)
    name = env.machine(agent.vm_id).name  # type: ignore[union-attr]
    worker = ext.answer("script", "success", "ok", machine_generation(env, agent))
    sdk.machine_extensions.begin_create_or_update(RESOURCE_GROUP, name, "script", script("date")).result(
        timeout=30
    )
    worker.join(10)
    assert ext.seen[0]["package"]["version"] == "2.1.0"
    path = env.machine_id(name) + "/upgradeExtensions"
    target = {"extensionTargets": {"Microsoft.Azure.Extensions.CustomScript": {"targetVersion": "2.2"}}}
    denied = manage(env, "POST", path, "Azure Connected Machine Onboarding", target)
    assert denied.status_code == 403
    unknown = manage(
        env, "POST", path, "Owner", {"extensionTargets": {"Contoso.Nothing": {"targetVersion": "1.0"}}}
    )
    assert unknown.status_code == 400 and "has no extension Contoso.Nothing" in unknown.text
    worker = ext.answer("script", "success", "updated", machine_generation(env, agent))
    upgrade = MachineExtensionUpgrade(
        extension_targets={
            "Microsoft.Azure.Extensions.CustomScript": ExtensionTargetProperties(target_version="2.2")
        }
    )
    sdk.begin_upgrade_extensions(RESOURCE_GROUP, name, upgrade).result(timeout=30)
    worker.join(10)
    assert ext.seen[0]["package"]["version"] == "2.2.0" and ext.seen[0]["typeHandlerVersion"] == "2.2"
    extension = sdk.machine_extensions.get(RESOURCE_GROUP, name, "script")
    assert properties(extension).type_handler_version == "2.2"
    assert properties(extension).provisioning_state == "Succeeded"
    # the same again is no change
    assert manage(env, "POST", path, "Owner", target).status_code == 200
