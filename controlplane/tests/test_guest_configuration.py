"""Machine configuration on the control plane (docs/machine-configuration.md): the package store
(``arc-controlplane configuration build/publish/list/remove``), assignments through Azure's own
``azure-mgmt-guestconfig`` (unmodified), the agent's side (goal state, package download checked
against its hash and signature, reports), compliance from reports, and what is refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from agent_client import AgentClient, ExtensionCertificate
from agentapi_env import RESOURCE_GROUP, AgentApiEnv, new_name, start_env
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.guestconfig import GuestConfigurationClient
from azure.mgmt.guestconfig.models import (
    ConfigurationParameter,
    GuestConfigurationAssignment,
    GuestConfigurationAssignmentProperties,
    GuestConfigurationNavigation,
)
from conftest import run_cli

TOP = Path(__file__).resolve().parents[2]
GC = "2024-04-05"
PHRASE = "PermitRootLogin yes is set; wanted: PermitRootLogin no"
CODES = {"Compliant": "DSC::RESOURCE::SUCCESS", "NonCompliant": "nxFileLine:Found"}
ADMIN = "Azure Connected Machine Resource Administrator"


class StaticToken:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3000)


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentApiEnv]:
    yield from start_env("sqlite", tmp_path_factory.mktemp("guest-configuration"), request)


@pytest.fixture(scope="module")
def sdk(env: AgentApiEnv) -> Iterator[GuestConfigurationClient]:
    mp = pytest.MonkeyPatch()
    mp.setenv("REQUESTS_CA_BUNDLE", str(env.server.ca_file))
    client = GuestConfigurationClient(
        StaticToken(env.principal_token(ADMIN)),
        env.subscription_id,
        base_url=env.public_url,
        credential_scopes=["https://management.azure.com/.default"],
    )
    try:
        yield client
    finally:
        client.close()
        mp.undo()


def store(env: AgentApiEnv) -> list[str]:
    url = env.db.engine.url.render_as_string(hide_password=False)
    return ["--data-dir", str(env.server.data_dir), "--database-url", url]


def cli(*args: str) -> tuple[int, str, str]:
    done = run_cli(*args)
    return done.returncode, done.stdout, done.stderr


def build(document: dict[str, Any] | Path, out: Path) -> Path:
    if isinstance(document, dict):
        source = out / f"{document['name']}.json"
        out.mkdir(parents=True, exist_ok=True)
        source.write_text(json.dumps(document))
    else:
        source = document
    rc, output, err = cli("configuration", "build", str(source), "--out", str(out), "--json")
    assert rc == 0, err
    return Path(json.loads(output)["package"])


def publish(env: AgentApiEnv, package: Path) -> dict[str, Any]:
    rc, out, err = cli("configuration", "publish", str(package), *store(env), "--json")
    assert rc == 0, err
    published: dict[str, Any] = json.loads(out)["packages"][0]
    return published


@pytest.fixture(scope="module")
def packages(env: AgentApiEnv, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("packages")
    ssh = publish(env, build(TOP / "configurations/SshHardening.json", out))
    audit_only = {
        "name": "AuditTmp",
        "version": "1.0.0",
        "type": "Audit",
        "resources": [
            {"type": "nxFile", "name": "tmp", "properties": {"DestinationPath": "/tmp", "Type": "directory"}}
        ],
    }
    audit = publish(env, build(audit_only, out))
    return {"ssh": ssh, "audit": audit}


def assignment(
    name: str, version: str | None, mode: str | None, **extra: Any
) -> GuestConfigurationAssignment:
    return GuestConfigurationAssignment(
        name=name,
        properties=GuestConfigurationAssignmentProperties(
            guest_configuration=GuestConfigurationNavigation(
                name=name, version=version, assignment_type=mode, **extra
            )
        ),
    )


def props(model: Any) -> Any:
    """The ``properties`` of an SDK model (typed loosely: the SDK types every member Optional)."""
    return model.properties


def manage(
    env: AgentApiEnv, method: str, path: str, body: object = None, role: str = ADMIN
) -> httpx.Response:
    token = env.principal_token(role)
    return env.http.request(
        method, f"{path}?api-version={GC}", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def assignments_path(env: AgentApiEnv, machine: str) -> str:
    return f"{env.machine_id(machine)}/providers/Microsoft.GuestConfiguration/guestConfigurationAssignments"


def goal(agent: AgentClient) -> dict[str, Any]:
    reply = agent.http.get(
        f"/agent/v1/machines/{agent.vm_id}/guestConfigurationAssignments", headers=agent.headers()
    )
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


def report(agent: AgentClient, name: str, digest: str, status: str, **fields: Any) -> httpx.Response:
    now = dt.datetime.now(dt.UTC)
    body = {
        "reportId": str(uuid.uuid4()),
        "assignmentHash": digest,
        "complianceStatus": status,
        "operationType": "Consistency",
        "jobId": str(uuid.uuid4()),
        "configurationVersion": "1.0.0",
        "startTime": (now - dt.timedelta(seconds=2)).isoformat(),
        "endTime": now.isoformat(),
        "resources": [
            {
                "complianceStatus": status,
                "resourceId": "[nxFileLine]PermitRootLogin",
                "reasons": [{"code": CODES[status], "phrase": PHRASE}],
                "properties": {"FilePath": "/etc/ssh/sshd_config"},
            }
        ],
        **fields,
    }  # fmt: skip
    return agent.http.post(
        f"/agent/v1/machines/{agent.vm_id}/guestConfigurationAssignments/{name}/reports",
        json=body,
        headers=agent.headers(),
    )


def test_packages_are_built_published_listed_and_removed(env: AgentApiEnv, tmp_path: Path) -> None:
    first = build(TOP / "configurations/SshHardening.json", tmp_path / "a")
    again = build(TOP / "configurations/SshHardening.json", tmp_path / "b")
    assert first.read_bytes() == again.read_bytes(), "a build is reproducible"
    with zipfile.ZipFile(first) as archive:
        assert sorted(archive.namelist()) == ["SshHardening.metaconfig.json", "SshHardening.mof"]
        assert json.loads(archive.read("SshHardening.metaconfig.json")) == {
            "Type": "AuditAndSet",
            "Version": "1.0.0",
        }
        assert 'ResourceID = "[nxFileLine]PermitRootLogin";' in archive.read("SshHardening.mof").decode()
    package = {"name": "Listed", "version": "2.0.1", "type": "Audit",
               "resources": [{"type": "nxService", "name": "cron",
                              "properties": {"Name": "cron"}}]}  # fmt: skip
    published = publish(env, build(package, tmp_path / "c"))
    assert published["resources"] == ["[nxService]cron"] and published["type"] == "Audit"
    kept = env.server.data_dir / "packages" / "configuration" / f"{published['sha256']}.zip"
    assert kept.is_file() and oct(kept.stat().st_mode & 0o777) == "0o600"
    rc, out, err = cli("configuration", "list", *store(env))
    assert rc == 0 and "Listed" in out and "2.0.1" in out, out
    rc, out, err = cli("configuration", "publish", str(tmp_path / "c" / "Listed.zip"), *store(env))
    assert rc != 0 and "is published already" in err and "configuration remove --name Listed" in err, err
    rc, out, err = cli("configuration", "remove", "--name", "Listed", "--version", "2.0.1", *store(env))
    assert rc == 0 and not kept.exists(), err
    rc, out, err = cli("configuration", "remove", "--name", "Listed", "--version", "2.0.1", *store(env))
    assert rc != 0 and "is not published" in err


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


GOOD_MOF = """instance of nxFile as $nxFile1ref
{
    ResourceID = "[nxFile]x";
    DestinationPath = "/tmp/x";
};
instance of OMI_ConfigurationDocument
{
    Name = "Broken";
};
"""
META = json.dumps({"Type": "Audit", "Version": "1.0.0"})


@pytest.mark.parametrize(
    "members, says",
    [
        ({"Broken.mof": GOOD_MOF.replace("};\ninstance", "}\ninstance", 1), "Broken.metaconfig.json": META},
         "Broken.mof is not a configuration document: line 6: expected ;, found 'instance'"),
        ({"Broken.mof": GOOD_MOF}, "has no Broken.metaconfig.json"),
        ({"Broken.mof": GOOD_MOF,
          "Broken.metaconfig.json": json.dumps({"Type": "Apply", "Version": "1.0.0"})},
         "the metaconfig's Type is 'Apply'"),
        ({"Broken.mof": GOOD_MOF.replace('"[nxFile]x"', '"x"'), "Broken.metaconfig.json": META},
         "its ResourceID must be [Class]Name"),
        ({"Broken.mof": GOOD_MOF, "Broken.metaconfig.json": META, "../escape": "x"},
         "would land outside the package's folder"),
        ({"Other.mof": GOOD_MOF, "Other.metaconfig.json": META}, "configures 'Broken', not 'Other'"),
        ({"Broken/Broken.mof": GOOD_MOF}, "has 0 .mof documents at its top"),
    ],
)  # fmt: skip
def test_a_broken_package_is_refused_naming_the_problem(
    env: AgentApiEnv, tmp_path: Path, members: dict[str, str], says: str
) -> None:
    rc, out, err = cli("configuration", "publish", str(_zip(tmp_path / "p.zip", members)), *store(env))
    assert rc != 0 and says in err, err
    rc, out, _ = cli("configuration", "list", *store(env), "--json")
    assert all(p["name"] != "Broken" for p in json.loads(out)["packages"])


def test_assignments_through_the_sdk_reach_the_agent_and_its_reports_set_compliance(
    env: AgentApiEnv, sdk: GuestConfigurationClient, packages: dict[str, dict[str, Any]]
) -> None:
    name = new_name()
    agent = env.connected_agent(name)
    generation = agent.read().json()["generation"]
    woken: list[httpx.Response] = []
    waiter = threading.Thread(
        target=lambda: woken.append(agent.notifications(generation, wait=30, timeout=40))
    )
    waiter.start()
    time.sleep(0.5)  # the long-poll is waiting when the assignment is made

    wanted = assignment(
        "SshHardening", "1.0.0", "ApplyAndAutoCorrect",
        configuration_parameter=[
            ConfigurationParameter(name="[nxFileLine]MaxAuthTries;ContainsLine", value="MaxAuthTries 3")
        ],
    )  # fmt: skip
    created = sdk.guest_configuration_hcrp_assignments.create_or_update(
        "SshHardening", RESOURCE_GROUP, name, wanted
    )
    navigation = props(created).guest_configuration
    assert created.id == f"{assignments_path(env, name)}/SshHardening" and created.name == "SshHardening"
    assert props(created).compliance_status == "Pending" and props(created).provisioning_state == "Succeeded"
    assert navigation.assignment_type == "ApplyAndAutoCorrect" and navigation.version == "1.0.0"
    assert navigation.content_hash == packages["ssh"]["sha256"].upper()
    assert navigation.content_uri.endswith(
        "/agent/v1/configurationPackages/SshHardening/1.0.0/SshHardening.zip"
    )
    assert props(created).target_resource_id == env.machine_id(name)

    waiter.join(10)
    assert not waiter.is_alive(), "the assignment did not wake the agent's long-poll"
    assert woken[0].status_code == 200 and woken[0].json()["generation"] > generation, woken[0].text
    (seen,) = goal(agent)["assignments"]
    assert seen["name"] == "SshHardening" and seen["assignmentHash"] == props(created).assignment_hash
    assert seen["configuration"]["configurationParameter"] == [
        {"name": "[nxFileLine]MaxAuthTries;ContainsLine", "value": "MaxAuthTries 3"}
    ]
    package = seen["package"]
    download = agent.http.get(package["uri"], headers=agent.headers())
    assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == package["sha256"]
    keys = agent.http.get("/agent/v1/packageSigningKey", headers=agent.headers()).json()["keys"]
    claims = jwt.decode(package["signature"], jwt.PyJWK(keys[0]).key, algorithms=["ES256"])
    assert claims == {
        "name": "SshHardening",
        "version": "1.0.0",
        "sha256": package["sha256"],
        "size": package["size"],
    }
    assert agent.http.get(package["uri"]).status_code == 401

    # the same PUT again changes nothing (200); the lists show it
    again = sdk.guest_configuration_hcrp_assignments.create_or_update(
        "SshHardening", RESOURCE_GROUP, name, wanted
    )
    assert props(again).assignment_hash == props(created).assignment_hash
    assert [a.name for a in sdk.guest_configuration_hcrp_assignments.list(RESOURCE_GROUP, name)] == [
        "SshHardening"
    ]
    assert f"{assignments_path(env, name)}/SshHardening" in [
        a.id for a in sdk.guest_configuration_assignments.rg_list(RESOURCE_GROUP)
    ]
    assert f"{assignments_path(env, name)}/SshHardening" in [
        a.id for a in sdk.guest_configuration_assignments.subscription_list()
    ]

    # reports set compliance; one sent twice is kept once
    digest = seen["assignmentHash"]
    first = report(agent, "SshHardening", digest, "NonCompliant")
    assert first.status_code == 200 and first.json() == {"recorded": True, "current": True}, first.text
    resent = agent.http.post(
        first.request.url, json=json.loads(first.request.content), headers=agent.headers()
    )
    assert resent.json() == {"recorded": False, "current": False}
    read = sdk.guest_configuration_hcrp_assignments.get(RESOURCE_GROUP, "SshHardening", name)
    assert props(read).compliance_status == "NonCompliant" and props(read).last_compliance_status_checked
    report_id = json.loads(first.request.content)["reportId"]
    assert props(read).latest_report_id.endswith(f"/reports/{report_id}")
    reports = sdk.guest_configuration_hcrp_assignment_reports.list(RESOURCE_GROUP, "SshHardening", name)
    listed: list[Any] = reports.value or []
    assert [r.name for r in listed] == [report_id]
    one = sdk.guest_configuration_hcrp_assignment_reports.get(RESOURCE_GROUP, "SshHardening", report_id, name)
    assert props(one).compliance_status == "NonCompliant" and props(one).vm.uuid == agent.vm_id
    (resource,) = props(one).details.resources
    assert resource.reasons[0].phrase.startswith("PermitRootLogin yes is set")
    assert report(agent, "SshHardening", digest, "Compliant").json()["current"] is True
    assert (
        props(
            sdk.guest_configuration_hcrp_assignments.get(RESOURCE_GROUP, "SshHardening", name)
        ).compliance_status
        == "Compliant"
    )

    # a change makes it Pending; a report of the old hash no longer sets compliance
    changed = sdk.guest_configuration_hcrp_assignments.create_or_update(
        "SshHardening", RESOURCE_GROUP, name, assignment("SshHardening", "1.0.0", "ApplyAndMonitor")
    )
    assert props(changed).compliance_status == "Pending"
    assert props(changed).assignment_hash != digest
    stale = report(agent, "SshHardening", digest, "NonCompliant")
    assert stale.json() == {"recorded": True, "current": False}
    assert (
        props(
            sdk.guest_configuration_hcrp_assignments.get(RESOURCE_GROUP, "SshHardening", name)
        ).compliance_status
        == "Pending"
    )

    sdk.guest_configuration_hcrp_assignments.delete(RESOURCE_GROUP, "SshHardening", name)
    assert goal(agent)["assignments"] == []
    with pytest.raises(ResourceNotFoundError):
        sdk.guest_configuration_hcrp_assignments.get(RESOURCE_GROUP, "SshHardening", name)
    gone = report(agent, "SshHardening", digest, "Compliant")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "GuestConfigurationAssignmentNotFound"
    assert manage(env, "DELETE", f"{assignments_path(env, name)}/SshHardening").status_code == 204


def _put(env: AgentApiEnv, machine: str, name: str, navigation: dict[str, Any]) -> httpx.Response:
    body = {"name": name, "properties": {"guestConfiguration": {"name": name, **navigation}}}
    return manage(env, "PUT", f"{assignments_path(env, machine)}/{name}", body)


@pytest.mark.parametrize(
    "name, navigation, code, says",
    [
        ("SshHardening", {"version": "1.0.0", "assignmentType": "applyandautocorrect"},
         "InvalidAssignmentType",
         "is not one of Audit, ApplyAndMonitor, ApplyAndAutoCorrect (the names are case-sensitive)"),
        ("NotThere", {"version": "1.0.0"}, "ConfigurationPackageNotFound",
         "'NotThere' version 1.0.0 is not published"),
        ("SshHardening", {"version": "9.0.0"}, "ConfigurationPackageNotFound", "published versions: 1.0.0"),
        ("SshHardening", {"contentHash": "AB" * 32}, "ContentHashMismatch",
         "is not the SHA-256 of SshHardening"),
        ("SshHardening", {"contentUri": "https://elsewhere.example/SshHardening.zip"}, "InvalidContentUri",
         "must be where this control plane serves the package"),
        ("SshHardening", {"configurationParameter": [{"name": "[nxFile]nothere;Mode", "value": "0600"}]},
         "InvalidConfigurationParameter", "which is not in SshHardening 1.0.0"),
        ("SshHardening", {"configurationParameter": [{"name": "[nxFile]sshd_config;Colour", "value": "red"}]},
         "InvalidConfigurationParameter", "[nxFile]sshd_config has no property Colour"),
        ("SshHardening", {"configurationParameter": [{"name": "Mode", "value": "0600"}]},
         "InvalidConfigurationParameter", "is not of the form '[Class]Name;Property'"),
        ("AuditTmp", {"assignmentType": "ApplyAndAutoCorrect"}, "InvalidAssignmentType",
         "is an Audit package"),
        ("SshHardening",
         {"configurationProtectedParameter": [{"name": "[nxFile]sshd_config;Colour", "value": "1"}]},
         "InvalidConfigurationParameter", "[nxFile]sshd_config has no property Colour"),
        ("SshHardening",
         {"configurationParameter": [{"name": "[nxFile]sshd_config;Mode", "value": "0600"}],
          "configurationProtectedParameter": [{"name": "[nxFile]sshd_config;Mode", "value": "0640"}]},
         "InvalidConfigurationParameter", "or in configurationProtectedParameter, once"),
    ],
)  # fmt: skip
def test_a_bad_assignment_is_refused_and_nothing_is_assigned(
    env: AgentApiEnv,
    packages: dict[str, dict[str, Any]],
    name: str,
    navigation: dict[str, Any],
    code: str,
    says: str,
) -> None:
    machine = new_name()
    agent = env.connected_agent(machine)
    refused = _put(env, machine, name, navigation)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == code and says in refused.json()["error"]["message"], (
        refused.text
    )
    assert goal(agent)["assignments"] == []
    assert manage(env, "GET", assignments_path(env, machine)).json() == {"value": []}


def test_the_sdk_sees_a_refusal_and_roles_decide_who_may_assign(
    env: AgentApiEnv, sdk: GuestConfigurationClient, packages: dict[str, dict[str, Any]]
) -> None:
    machine = new_name()
    env.connected_agent(machine)
    with pytest.raises(HttpResponseError) as refused:
        sdk.guest_configuration_hcrp_assignments.create_or_update(
            "SshHardening", RESOURCE_GROUP, machine, assignment("SshHardening", None, "Enforce")
        )
    assert refused.value.status_code == 400 and "InvalidAssignmentType" in str(refused.value)
    body = {"name": "AuditTmp", "properties": {"guestConfiguration": {"name": "AuditTmp"}}}
    path = f"{assignments_path(env, machine)}/AuditTmp"
    assert manage(env, "PUT", path, body, role="Reader").status_code == 403
    assert manage(env, "PUT", path, body, role="Azure Connected Machine Onboarding").status_code == 403
    created = manage(env, "PUT", path, body)
    assert (
        created.status_code == 201
        and created.json()["properties"]["guestConfiguration"]["assignmentType"] == "Audit"
    )
    assert manage(env, "GET", path, role="Reader").status_code == 200
    assert manage(env, "DELETE", path, role="Reader").status_code == 403
    assert manage(env, "GET", path.replace(machine, "nosuchmachine")).status_code == 404
    bad_version = env.http.get(
        path,
        params={"api-version": "2019-01-01"},
        headers={"Authorization": f"Bearer {env.principal_token(ADMIN)}"},
    )
    assert (
        bad_version.status_code == 400 and bad_version.json()["error"]["code"] == "InvalidApiVersionParameter"
    )
    assert manage(env, "DELETE", path).status_code == 200


def test_protected_parameters_are_sealed_to_the_machine_and_never_shown(
    env: AgentApiEnv, sdk: GuestConfigurationClient, packages: dict[str, dict[str, Any]]
) -> None:
    """``configurationProtectedParameter`` as Azure's SDK sends it: kept only encrypted to the
    machine's extension certificate, given to the agent so, never in a read (names only); the
    same values again are no change, new ones are; a machine without a certificate is refused."""
    machine = new_name()
    agent = env.connected_agent(machine)
    secret = "PermitRootLogin prohibit-password # s3cr3t-" + uuid.uuid4().hex
    protected = [ConfigurationParameter(name="[nxFileLine]PermitRootLogin;ContainsLine", value=secret)]
    wanted = assignment("SshHardening", "1.0.0", "Audit", configuration_protected_parameter=protected)

    with pytest.raises(HttpResponseError) as refused:
        sdk.guest_configuration_hcrp_assignments.create_or_update(
            "SshHardening", RESOURCE_GROUP, machine, wanted
        )
    assert refused.value.status_code == 409 and "MachineNotReadyForProtectedParameters" in str(refused.value)
    assert goal(agent)["assignments"] == []

    certificate = ExtensionCertificate()
    assert certificate.register(env.http, agent).status_code == 200
    created = sdk.guest_configuration_hcrp_assignments.create_or_update(
        "SshHardening", RESOURCE_GROUP, machine, wanted
    )
    navigation = props(created).guest_configuration
    assert [(p.name, p.value) for p in navigation.configuration_protected_parameter] == [
        ("[nxFileLine]PermitRootLogin;ContainsLine", None)
    ]
    path = f"{assignments_path(env, machine)}/SshHardening"
    for read in (manage(env, "GET", path), manage(env, "GET", assignments_path(env, machine))):
        assert read.status_code == 200 and "s3cr3t" not in read.text

    (seen,) = goal(agent)["assignments"]
    assert "s3cr3t" not in json.dumps(seen)
    assert seen["configuration"]["protectedParametersCertThumbprint"] == certificate.thumbprint
    assert certificate.decrypt(seen["configuration"]["protectedParameters"]) == {
        "configurationProtectedParameter": [
            {"name": "[nxFileLine]PermitRootLogin;ContainsLine", "value": secret}
        ]
    }
    with env.db.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT * FROM guest_configuration_assignments").fetchall()
    assert "s3cr3t" not in repr(stored), "never stored in plain text"

    again = sdk.guest_configuration_hcrp_assignments.create_or_update(
        "SshHardening", RESOURCE_GROUP, machine, wanted
    )
    assert props(again).assignment_hash == props(created).assignment_hash
    assert (
        goal(agent)["assignments"][0]["configuration"]["protectedParameters"]
        == (seen["configuration"]["protectedParameters"])
    ), "the same values: no change, not sealed again"
    protected[0].value = secret + "-new"
    changed = sdk.guest_configuration_hcrp_assignments.create_or_update(
        "SshHardening", RESOURCE_GROUP, machine, wanted
    )
    assert props(changed).assignment_hash != props(created).assignment_hash
    assert props(changed).compliance_status == "Pending"
    envelope = goal(agent)["assignments"][0]["configuration"]["protectedParameters"]
    assert certificate.decrypt(envelope)["configurationProtectedParameter"][0]["value"] == secret + "-new"

    without = sdk.guest_configuration_hcrp_assignments.create_or_update(
        "SshHardening", RESOURCE_GROUP, machine, assignment("SshHardening", "1.0.0", "Audit")
    )
    assert props(without).guest_configuration.configuration_protected_parameter in (None, [])
    assert "protectedParameters" not in goal(agent)["assignments"][0]["configuration"]
