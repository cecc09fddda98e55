# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The machine_configuration modules' decisions (what differs, what is sent, what is shown) and the
# management API client's guest configuration calls against the scripted control plane.

import base64
import json
import subprocess

from ansible_collections.hybridops.arc.plugins.module_utils._machine_configuration import (
    HIDDEN,
    assignment_id,
    differences,
    machine_protected_parameters,
    reasons,
    view,
    wanted_navigation,
)
from ansible_collections.hybridops.arc.tests.unit.plugins.module_utils.test_arm import MACHINE, secret_client
from ansible_collections.hybridops.arc.tests.unit.plugins.module_utils.test_extension import (
    machine_certificate,
    openssl,
)

PARAMS = dict(
    name="SshHardening",
    configuration=None,
    version=None,
    assignment_type="ApplyAndAutoCorrect",
    parameters={"[nxFileLine]MaxAuthTries;ContainsLine": "MaxAuthTries 3"},
)
CURRENT = {
    "name": "SshHardening",
    "properties": {
        "complianceStatus": "NonCompliant",
        "guestConfiguration": {
            "name": "SshHardening",
            "version": "1.0.0",
            "assignmentType": "ApplyAndAutoCorrect",
            "configurationParameter": [
                {"name": "[nxfileline]maxauthtries;containsline", "value": "MaxAuthTries 3"}
            ],
        },
        "latestAssignmentReport": {
            "resources": [
                {"complianceStatus": "Compliant", "resourceId": "[nxFile]sshd_config", "reasons": []},
                {
                    "complianceStatus": "NonCompliant",
                    "resourceId": "[nxFileLine]X11Forwarding",
                    "reasons": [{"code": "nxFileLine:ContainsLine", "phrase": "no X11Forwarding no"}],
                },
            ]
        },
    },
}


def test_what_is_sent_and_what_differs():
    assert wanted_navigation(PARAMS) == {
        "name": "SshHardening",
        "assignmentType": "ApplyAndAutoCorrect",
        "configurationParameter": [
            {"name": "[nxFileLine]MaxAuthTries;ContainsLine", "value": "MaxAuthTries 3"}
        ],
    }
    assert differences(CURRENT, PARAMS) == [], "parameter names compare without case"
    assert differences(None, PARAMS) == ["(new)"]
    assert differences(CURRENT, dict(PARAMS, assignment_type="Audit", version="1.1")) == [
        "version",
        "assignmentType",
    ]
    assert differences(CURRENT, dict(PARAMS, version="1.0")) == [], "a version prefix matches"
    assert differences(CURRENT, dict(PARAMS, parameters={})) == ["configurationParameter"]
    assert differences(CURRENT, dict(PARAMS, configuration="Other")) == ["name"]


def test_reasons_and_the_view_of_an_assignment():
    assert reasons(CURRENT) == [
        {
            "resource": "[nxFileLine]X11Forwarding",
            "code": "nxFileLine:ContainsLine",
            "phrase": "no X11Forwarding no",
        }
    ]
    assert reasons(None) == [] and view(None) == {}
    assert view(CURRENT)["configurationParameter"] == [
        ("[nxfileline]maxauthtries;containsline", "MaxAuthTries 3")
    ]


def test_assignments_are_read_put_and_deleted_with_the_guest_configuration_api_version(control_plane):
    resource = assignment_id(MACHINE, "SshHardening")
    control_plane.answer("PUT", resource, 201, {"name": "SshHardening"})
    control_plane.answer("DELETE", resource, 200, None)
    control_plane.answer("DELETE", resource, 204, None)
    client = secret_client(control_plane)
    assert client.put_resource("PUT assignment", resource, {"properties": {}}) == {"name": "SshHardening"}
    assert client.delete_resource("DELETE assignment", resource) is True
    assert client.delete_resource("DELETE assignment", resource) is False
    sent = [r for r in control_plane.requests if r["path"] == resource]
    assert [r["query"]["api-version"] for r in sent] == [["2024-04-05"]] * 3
    assert json.loads(sent[0]["body"]) == {"properties": {}}


TOKEN = "[nxFile]token;Contents"


def gcad_copy(tmp_path, protected, thumbprint, assignment_hash="ABC"):
    """gcad's assignments.json with the protected parameters encrypted as the control plane does."""
    crt = tmp_path / ("%s.crt" % thumbprint)
    sealed = {"configurationProtectedParameter": [{"name": n, "value": v} for n, v in protected.items()]}
    encrypted = subprocess.run(
        ["openssl", "smime", "-encrypt", "-outform", "DER", "-aes256", str(crt)],
        input=json.dumps(sealed).encode(), capture_output=True, check=True,
    ).stdout  # fmt: skip
    configuration = {
        "name": "AppToken",
        "protectedParameters": base64.b64encode(encrypted).decode(),
        "protectedParametersCertThumbprint": thumbprint,
    }
    state = tmp_path / "assignments.json"
    assignment = {"name": "AppToken", "assignmentHash": assignment_hash, "configuration": configuration}
    state.write_text(json.dumps({"assignments": [assignment]}))
    return str(state)


def test_protected_parameters_are_sent_compared_with_the_machines_copy_and_never_shown(tmp_path):
    params = dict(PARAMS, name="AppToken", parameters={}, protected_parameters={TOKEN: "s3cret"})
    assert wanted_navigation(params)["configurationProtectedParameter"] == [
        {"name": TOKEN, "value": "s3cret"}
    ]
    current = {
        "name": "AppToken",
        "properties": {
            "assignmentHash": "ABC",
            "guestConfiguration": {
                "name": "AppToken",
                "assignmentType": "ApplyAndAutoCorrect",
                "configurationProtectedParameter": [{"name": TOKEN.lower()}],
            },
        },
    }
    thumbprint = machine_certificate(tmp_path)
    state = gcad_copy(tmp_path, {TOKEN: "s3cret"}, thumbprint)
    lib = str(tmp_path)
    copy = machine_protected_parameters(openssl, "apptoken", "abc", state, lib)
    assert copy == {TOKEN.lower(): "s3cret"}
    assert differences(current, params, copy) == []
    assert differences(current, dict(params, protected_parameters={TOKEN: "new"}), copy) == [
        "configurationProtectedParameter"
    ]
    assert differences(current, params, None) == ["configurationProtectedParameter"], "unknown: sent again"
    assert differences(current, dict(params, protected_parameters={}), copy) == [
        "configurationProtectedParameter"
    ], "the assignment has some, none are wanted: they are removed"
    shown = view(
        dict(current, properties=dict(current["properties"], guestConfiguration=wanted_navigation(params)))
    )
    assert shown["configurationProtectedParameter"] == [(TOKEN, HIDDEN)] and "s3cret" not in json.dumps(shown)


def test_a_machine_copy_that_cannot_be_read_is_unknown(tmp_path):
    thumbprint = machine_certificate(tmp_path)
    state = gcad_copy(tmp_path, {TOKEN: "s3cret"}, thumbprint)
    lib = str(tmp_path)
    assert machine_protected_parameters(openssl, "AppToken", "OTHER", state, lib) is None, "an older copy"
    assert machine_protected_parameters(openssl, "Nothing", "ABC", state, lib) is None
    assert machine_protected_parameters(openssl, "AppToken", "ABC", str(tmp_path / "none.json"), lib) is None
    (tmp_path / ("%s.prv" % thumbprint)).write_text("not a key")
    assert machine_protected_parameters(openssl, "AppToken", "ABC", state, lib) is None
