# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The management API client against a real HTTPS server (tests/unit/plugins/conftest.py).

import json
import socket

import pytest
from ansible_collections.hybridops.arc.plugins.module_utils._arm import (
    API_VERSION,
    ArmClient,
    ArmError,
    check_credentials,
)
from ansible_collections.hybridops.arc.plugins.module_utils._errors import AzcmagentError, OperationError
from ansible_collections.hybridops.arc.tests.unit.plugins.control_plane_standin import (
    ACCESS_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUED_TOKEN,
    MACHINE,
    TENANT,
    make_pki,
)


def secret_client(plane, secret=CLIENT_SECRET, ca=None):
    return ArmClient(
        plane.url, ca_file=ca or plane.ca, tenant_id=TENANT, client_id=CLIENT_ID, client_secret=secret
    )


def test_secret_gets_a_token_then_reads_and_patches_the_machine(control_plane):
    control_plane.add_machine(tags={"env": "test"})
    client = secret_client(control_plane)
    machine = client.get_machine(MACHINE)
    assert machine["tags"] == {"env": "test"}
    after = client.update_tags(MACHINE, {"env": "prod", "owner": "ops"})
    assert after["tags"] == {"env": "prod", "owner": "ops"}
    assert control_plane.machines[MACHINE.lower()]["tags"] == {"env": "prod", "owner": "ops"}

    token, get, patch = control_plane.requests
    assert token["method"] == "POST"
    assert token["path"] == "/%s/oauth2/v2.0/token" % TENANT
    assert token["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert get["method"] == "GET" and get["path"] == MACHINE
    assert get["query"] == {"api-version": [API_VERSION]}
    assert get["headers"]["authorization"] == "Bearer " + ISSUED_TOKEN
    assert patch["method"] == "PATCH" and patch["path"] == MACHINE
    assert patch["headers"]["content-type"] == "application/json"
    assert json.loads(patch["body"]) == {"tags": {"env": "prod", "owner": "ops"}}
    # One token for both calls; the secret only ever travels in the token request's body.
    assert [r["method"] for r in control_plane.requests].count("POST") == 1
    for request in (get, patch):
        assert CLIENT_SECRET not in json.dumps(request)


def test_access_token_is_used_as_it_is(control_plane):
    control_plane.add_machine()
    client = ArmClient(control_plane.url, ca_file=control_plane.ca, access_token=ACCESS_TOKEN)
    assert client.get_machine(MACHINE)["name"] == "h1"
    assert [r["method"] for r in control_plane.requests] == ["GET"]
    assert control_plane.requests[0]["headers"]["authorization"] == "Bearer " + ACCESS_TOKEN


def test_missing_machine_is_none(control_plane):
    assert secret_client(control_plane).get_machine(MACHINE) is None


def test_refused_secret_is_an_error_with_the_oauth_code(control_plane):
    with pytest.raises(ArmError) as caught:
        secret_client(control_plane, secret="wrong-secret").get_machine(MACHINE)
    error = caught.value
    assert isinstance(error, OperationError), "the modules catch one base type"
    assert not isinstance(error, AzcmagentError), "one error type per boundary"
    assert error.code == "invalid_client"
    assert error.status == 401
    assert error.message == "AADSTS7000215: Invalid client secret provided."
    assert "wrong-secret" not in str(error)
    assert (
        str(error)
        == "management API get a token failed: invalid_client: AADSTS7000215: Invalid client secret provided."
    )


def test_arm_error_body_gives_code_and_message(control_plane):
    control_plane.add_machine()
    client = ArmClient(control_plane.url, ca_file=control_plane.ca, access_token="not-a-valid-token")
    with pytest.raises(ArmError) as caught:
        client.update_tags(MACHINE, {"a": "b"})
    assert caught.value.code == "InvalidAuthenticationToken"
    assert caught.value.status == 401
    assert caught.value.operation == "PATCH machine tags"


def test_server_certificate_is_verified_against_the_given_ca(control_plane, tmp_path):
    other = make_pki(tmp_path, name="another")
    with pytest.raises(ArmError) as caught:
        secret_client(control_plane, ca=other["ca"]).get_machine(MACHINE)
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert control_plane.requests == []


def test_unreachable_control_plane(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pki = make_pki(tmp_path)
    client = ArmClient("https://127.0.0.1:%d" % port, ca_file=pki["ca"], access_token=ACCESS_TOKEN, timeout=5)
    with pytest.raises(ArmError) as caught:
        client.get_machine(MACHINE)
    assert caught.value.message.startswith("cannot reach https://127.0.0.1:%d" % port)
    assert caught.value.code is None


def test_certificate_credentials_are_refused_with_the_way_out():
    with pytest.raises(ArmError) as caught:
        check_credentials(certificate="/root/sp.pem")
    assert "service_principal_secret or access_token" in caught.value.message
    with pytest.raises(ArmError):
        ArmClient("https://cp:8443", tenant_id=TENANT, client_id=CLIENT_ID, certificate="/root/sp.pem")
    check_credentials(certificate=None)


def test_credentials_and_url_are_required():
    with pytest.raises(ArmError) as caught:
        ArmClient("https://cp:8443", tenant_id=TENANT, client_id=CLIENT_ID)
    assert "service_principal_secret" in caught.value.message
    with pytest.raises(ArmError) as caught:
        ArmClient(None, access_token=ACCESS_TOKEN)
    assert "control_plane_url" in caught.value.message


def test_unreadable_ca_file(tmp_path):
    with pytest.raises(ArmError) as caught:
        ArmClient("https://cp:8443", ca_file=str(tmp_path / "missing.pem"), access_token=ACCESS_TOKEN)
    assert "missing.pem" in caught.value.message


EXTENSION = MACHINE + "/extensions/CustomScript"


def test_a_put_is_followed_through_its_async_operation(control_plane, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    operation = (
        "/subscriptions/x/providers/Microsoft.HybridCompute/locations/westeurope/operationStatuses/op1"
    )
    control_plane.answer(
        "PUT", EXTENSION, 201, {"name": "CustomScript"},
        {"Azure-AsyncOperation": "{url}" + operation + "?api-version=2024-07-10", "Retry-After": "1"},
    )  # fmt: skip
    control_plane.answer("GET", operation, 200, {"status": "InProgress"}, {"Retry-After": "1"})
    control_plane.answer(
        "GET", operation, 200, {"status": "Failed", "error": {"code": "X", "message": "handler"}}
    )
    status, error = secret_client(control_plane).change("PUT extension", "PUT", EXTENSION, {"properties": {}})
    assert (status, error) == ("Failed", {"code": "X", "message": "handler"})
    methods = [(r["method"], r["path"]) for r in control_plane.requests[1:]]
    assert methods == [("PUT", EXTENSION), ("GET", operation), ("GET", operation)]
    assert json.loads(control_plane.requests[1]["body"]) == {"properties": {}}


def test_a_delete_is_followed_through_its_location_until_it_is_done(control_plane, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    location = "/subscriptions/x/providers/Microsoft.HybridCompute/locations/westeurope/operationResults/op2"
    control_plane.answer("DELETE", EXTENSION, 202, None, {"Location": "{url}" + location})
    control_plane.answer("GET", location, 202, None)
    control_plane.answer("GET", location, 204, None)
    assert secret_client(control_plane).change("DELETE extension", "DELETE", EXTENSION) == ("Succeeded", None)


def test_a_link_to_another_server_is_not_followed(control_plane):
    control_plane.answer("PUT", EXTENSION, 201, {}, {"Azure-AsyncOperation": "https://elsewhere.example/op"})
    with pytest.raises(ArmError, match="a link to another server"):
        secret_client(control_plane).change("PUT extension", "PUT", EXTENSION, {})


def test_an_operation_that_does_not_end_in_time_names_the_timeout(control_plane):
    operation = "/operations/slow"
    control_plane.answer("PUT", EXTENSION, 201, {}, {"Azure-AsyncOperation": "{url}" + operation})
    control_plane.answer("GET", operation, 200, {"status": "InProgress"})
    with pytest.raises(ArmError, match="did not end within 0 s") as raised:
        secret_client(control_plane).change("PUT extension", "PUT", EXTENSION, {}, timeout=0)
    assert raised.value.code == "OperationTimeout"


def test_a_list_follows_next_links(control_plane):
    listing = MACHINE + "/extensions"
    control_plane.answer("GET", listing, 200, {"value": [{"name": "a"}], "nextLink": "{url}/page2"})
    control_plane.answer("GET", "/page2", 200, {"value": [{"name": "b"}]})
    assert secret_client(control_plane).list_resources("list", listing) == [{"name": "a"}, {"name": "b"}]
