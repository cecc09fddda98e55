"""azure.azcollection from PyPI, unmodified, against a running control plane: its generic modules
``azure_rm_resource`` and ``azure_rm_resource_info`` with ``cloud_environment`` set to the control
plane's URL (the collection discovers the rest from ``/metadata/endpoints``) and a CA bundle,
signed in as a service principal (docs/azure-tools.md).

``make azure-collection`` builds ``build/azure-collection``: the collection taken from the
``ansible`` package and its own Python requirements (``ARC_AZURE_COLLECTION`` may name another
such directory). The playbooks run with this repository's ``ansible-playbook``; the secret reaches
the modules through the environment (``AZURE_SECRET``), never a command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Server, ca_context, run_cli, start_server

REPOSITORY = Path(__file__).resolve().parents[2]
COLLECTION = Path(os.environ.get("ARC_AZURE_COLLECTION", REPOSITORY / "build" / "azure-collection"))
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
API_VERSION = "2024-07-10"


@dataclass
class Collection:
    server: Server
    work: Path
    ids: dict[str, str]
    owner: dict[str, str]
    reader: dict[str, str]

    def play(self, tasks: list[dict[str, Any]], principal: dict[str, str] | None = None) -> dict[str, Any]:
        """Run ``tasks`` on localhost as ``principal`` (the owner by default); each task registers
        its result under its ``register`` name; the results are returned with the output."""
        principal = principal or self.owner
        results = self.work / "results.json"
        results.unlink(missing_ok=True)
        names = [task["register"] for task in tasks if "register" in task]
        save = {
            "name": "Save the results",
            "ansible.builtin.copy": {
                "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}",
                "dest": str(results),
                "mode": "0600",
            },
        }
        playbook = self.work / "playbook.yml"
        play = {
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"ansible_python_interpreter": str(COLLECTION / "bin" / "python")},
            "tasks": [*tasks, save],
        }
        playbook.write_text(json.dumps([play]), encoding="utf-8")
        environment = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.work),
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTION / "collections"),
            "ANSIBLE_LOCAL_TEMP": str(self.work / "tmp"),
            "ANSIBLE_FORCE_COLOR": "false",
            "REQUESTS_CA_BUNDLE": str(self.server.ca_file),
            # Resource Manager's URL, with its "/": the modules ask for tokens for "<it>.default"
            "AZURE_CLOUD_ENVIRONMENT": self.server.url("/"),
            # where azure-identity signs in, at the AD FS authority (tenant "adfs": the client's own)
            "AZURE_AUTHORITY_HOST": self.server.url(""),
            "AZURE_TENANT": "adfs",
            "AZURE_SUBSCRIPTION_ID": self.ids["subscriptionId"],
            "AZURE_CLIENT_ID": principal["clientId"],
            "AZURE_SECRET": principal["clientSecret"],
        }
        done = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(playbook)],
            capture_output=True, text=True, env=environment, timeout=300, check=False,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert principal["clientSecret"] not in output
        assert done.returncode == 0, output
        answer: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
        return answer

    def machine(self, name: str, **arguments: Any) -> dict[str, Any]:
        return {
            "resource_group": self.ids["resourceGroup"],
            "provider": "HybridCompute",
            "resource_type": "machines",
            "resource_name": name,
            **arguments,
        }


def _sp(data: Path, name: str, role: str, scope: str) -> dict[str, str]:
    created = run_cli(
        "sp", "create", "--data-dir", str(data), "--name", name, "--role", role, "--scope", scope, "--json"
    )
    assert created.returncode == 0, created.stderr
    answer: dict[str, str] = json.loads(created.stdout)
    return answer


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collection]:
    if not (COLLECTION / "collections" / "ansible_collections" / "azure" / "azcollection").is_dir():
        pytest.fail(
            f"azure.azcollection is not installed in {COLLECTION}: run 'make azure-collection' "
            "(or set ARC_AZURE_COLLECTION)"
        )
    work = tmp_path_factory.mktemp("azure-collection")
    data = work / "data"
    init = run_cli("init", "--data-dir", str(data), "--json")
    assert init.returncode == 0, init.stderr
    ids = json.loads(init.stdout)
    scope = f"/subscriptions/{ids['subscriptionId']}"
    owner = _sp(data, "ansible-operator", "Owner", scope)
    reader = _sp(data, "ansible-reader", "Reader", scope)
    server = start_server(data)
    try:
        yield Collection(server, work, ids, owner, reader)
    finally:
        server.stop()


def test_machines_are_created_read_tagged_and_deleted_idempotently(collection: Collection) -> None:
    machine = collection.machine
    body = {"location": collection.ids["location"], "tags": {"tier": "front"}}
    present = {"api_version": API_VERSION, "body": body, "idempotency": True}
    absent = {"api_version": API_VERSION, "state": "absent", "idempotency": True}
    rm = "azure.azcollection.azure_rm_resource"
    info = "azure.azcollection.azure_rm_resource_info"
    results = collection.play(
        [
            {"name": "Create web-1", rm: machine("web-1", **present), "register": "created"},
            {"name": "Create web-1 again", rm: machine("web-1", **present), "register": "again"},
            {"name": "Create db-1", rm: machine("db-1", **present), "register": "second"},
            {
                "name": "Tag web-1",
                rm: machine(
                    "web-1", api_version=API_VERSION, method="PATCH", body={"tags": {"tier": "edge"}}
                ),
                "register": "tagged",
            },
            # without api_version: the module looks it up at the provider (api-version 2015-01-01)
            {"name": "Read web-1", info: machine("web-1"), "register": "shown"},
            {"name": "Delete db-1", rm: machine("db-1", **absent), "register": "deleted"},
            {"name": "Delete db-1 again", rm: machine("db-1", **absent), "register": "gone"},
            {
                "name": "List the group's machines",
                info: {k: v for k, v in machine("-").items() if k != "resource_name"},
                "register": "listed",
            },
        ]
    )
    assert (results["created"]["changed"], results["again"]["changed"]) == (True, False)
    assert results["created"]["response"]["properties"]["status"] == "AwaitingConnection"
    assert results["tagged"]["response"]["tags"] == {"tier": "edge"}
    (shown,) = results["shown"]["response"]
    assert (shown["name"], shown["tags"]) == ("web-1", {"tier": "edge"})
    assert shown["id"] == results["created"]["response"]["id"]
    assert (results["deleted"]["changed"], results["gone"]["changed"]) == (True, False)
    assert [m["name"] for m in results["listed"]["response"]] == ["web-1"]  # the module flattens pages


def test_rbac_and_bad_input_fail_with_azures_error_codes(collection: Collection) -> None:
    rm = "azure.azcollection.azure_rm_resource"
    body = {"location": collection.ids["location"]}
    results = collection.play(
        [
            {
                "name": "A reader creates a machine",
                rm: collection.machine("nope-1", api_version=API_VERSION, body=body),
                "register": "refused",
                "ignore_errors": True,
            },
            {
                "name": "An unknown api-version",
                rm: collection.machine("nope-2", api_version="2001-01-01", body=body),
                "register": "version",
                "ignore_errors": True,
            },
            {
                "name": "An unknown provider",
                "azure.azcollection.azure_rm_resource_info": {
                    **collection.machine("nope-3"),
                    "provider": "NoSuchProvider",
                    "api_version": "2021-04-01",
                },
                "register": "provider",
                "ignore_errors": True,
            },
        ],
        principal=collection.reader,
    )
    assert results["refused"]["failed"]
    assert "AuthorizationFailed" in results["refused"]["msg"]
    assert "InvalidApiVersionParameter" in results["version"]["msg"]
    assert "InvalidResourceNamespace" in results["provider"]["msg"]


ADAL_SIGN_IN = """
import json, os, sys
from azure.common.credentials import ServicePrincipalCredentials
from msrestazure import azure_cloud

cloud = azure_cloud.get_cloud_from_metadata_endpoint(sys.argv[1])
credentials = ServicePrincipalCredentials(
    client_id=os.environ["AZURE_CLIENT_ID"], secret=os.environ["AZURE_SECRET"],
    tenant=os.environ["AZURE_TENANT"], cloud_environment=cloud, resource=cloud.endpoints.resource_manager,
)
print(json.dumps({"login": cloud.endpoints.active_directory, "token": credentials.token["access_token"]}))
"""


def test_msrestazure_and_adal_sign_in_from_the_legacy_metadata(collection: Collection) -> None:
    """What the collection's releases before 1.19 and its track 1 modules do: ``msrestazure`` reads
    the 2015-01-01 metadata and ADAL signs in at the AD FS authority it names (any other is checked
    with Microsoft's cloud), at the v1 token endpoint with ``resource=``."""
    environment = {
        "PATH": os.environ["PATH"],
        "REQUESTS_CA_BUNDLE": str(collection.server.ca_file),
        "AZURE_CLIENT_ID": collection.owner["clientId"],
        "AZURE_SECRET": collection.owner["clientSecret"],
        "AZURE_TENANT": collection.ids["tenantId"],
    }
    done = subprocess.run(
        [str(COLLECTION / "bin" / "python"), "-c", ADAL_SIGN_IN, collection.server.url("")],
        capture_output=True, text=True, env=environment, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["login"] == collection.server.url("/adfs/")
    request = urllib.request.Request(
        collection.server.url("/subscriptions?api-version=2022-12-01"),
        headers={"Authorization": f"Bearer {answer['token']}"},
    )
    with urllib.request.urlopen(request, context=ca_context(collection.server.ca_file), timeout=20) as reply:
        listed = json.load(reply)
    assert [s["subscriptionId"] for s in listed["value"]] == [collection.ids["subscriptionId"]]
