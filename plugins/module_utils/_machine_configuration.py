# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: guest configuration assignments (docs/machine-configuration.md) as
# the machine_configuration modules compare, request and show them, and the one place that can read
# protected parameters back: the machine, whose gcad keeps its assignments (the protected ones
# encrypted to the machine's extension certificate).

import json

from ansible_collections.hybridops.arc.plugins.module_utils._extension import LIB_DIR, decrypt_envelope
from ansible_collections.hybridops.arc.plugins.module_utils._files import read_text

TYPE = "Microsoft.GuestConfiguration/guestConfigurationAssignments"
GC_ASSIGNMENTS = "/var/lib/GuestConfig/gc_state/assignments.json"
HIDDEN = "(hidden: protected parameters are write-only)"


def assignment_id(machine_id, name):
    return "%s/providers/%s/%s" % (machine_id, TYPE, name)


def _parameters(entries):
    return dict((str(p.get("name", "")).lower(), str(p.get("value", ""))) for p in entries or [])


def wanted_navigation(params):
    """The ``guestConfiguration`` a PUT sends for the module's options."""
    navigation = dict(
        name=params["configuration"] or params["name"],
        assignmentType=params["assignment_type"],
        configurationParameter=[
            dict(name=name, value=str(value)) for name, value in sorted((params["parameters"] or {}).items())
        ],
    )
    if params["version"]:
        navigation["version"] = params["version"]
    if params.get("protected_parameters"):
        navigation["configurationProtectedParameter"] = [
            dict(name=name, value=str(value))
            for name, value in sorted(params["protected_parameters"].items())
        ]
    return navigation


def machine_protected_parameters(
    run_command, name, assignment_hash, state_file=GC_ASSIGNMENTS, lib_dir=LIB_DIR
):
    """The protected parameters of assignment ``name`` as this machine's gcad got them
    ({lower-case name: value}; {} when it has none), decrypted with the machine's key; None when
    they cannot be read, or gcad's copy is not of ``assignment_hash`` (not read since the change)."""
    try:
        cached = json.loads(read_text(state_file)).get("assignments") or []
    except (OSError, TypeError, ValueError, AttributeError):
        return None
    for assignment in cached:
        if not isinstance(assignment, dict) or str(assignment.get("name", "")).lower() != name.lower():
            continue
        if str(assignment.get("assignmentHash", "")).upper() != str(assignment_hash or "").upper():
            return None
        configuration = assignment.get("configuration") or {}
        sealed = decrypt_envelope(
            run_command,
            configuration.get("protectedParameters"),
            configuration.get("protectedParametersCertThumbprint"),
            lib_dir,
        )
        if sealed is None:
            return None
        return _parameters(sealed.get("configurationProtectedParameter"))
    return None


def differences(current, params, machine_protected=None):
    """The properties of the assignment ``current`` (None: there is none) that differ from the options.
    Protected parameters, which the API shows by name only, are compared by name, and by value with
    ``machine_protected`` (the machine's copy, None when it cannot be read: then they differ)."""
    if current is None:
        return ["(new)"]
    navigation = (current.get("properties") or {}).get("guestConfiguration") or {}
    wanted = wanted_navigation(params)
    changes = []
    if str(navigation.get("name", "")).lower() != wanted["name"].lower():
        changes.append("name")
    if params["version"] and not str(navigation.get("version", "")).startswith(params["version"]):
        changes.append("version")
    if navigation.get("assignmentType") != wanted["assignmentType"]:
        changes.append("assignmentType")
    if _parameters(navigation.get("configurationParameter")) != _parameters(wanted["configurationParameter"]):
        changes.append("configurationParameter")
    have = sorted(_parameters(navigation.get("configurationProtectedParameter")))
    given = _parameters(wanted.get("configurationProtectedParameter"))
    if have != sorted(given) or (given and machine_protected != given):
        changes.append("configurationProtectedParameter")
    return changes


def reasons(assignment):
    """What its latest report found wrong: each NonCompliant resource with its reasons."""
    report = ((assignment or {}).get("properties") or {}).get("latestAssignmentReport") or {}
    found = []
    for resource in report.get("resources") or []:
        if resource.get("complianceStatus") == "Compliant":
            continue
        for reason in resource.get("reasons") or []:
            found.append(
                dict(
                    resource=resource.get("resourceId", ""),
                    code=reason.get("code", ""),
                    phrase=reason.get("phrase", ""),
                )
            )
    return found


def view(assignment):
    """What diff mode shows of an assignment: what is asked of the machine."""
    if not assignment:
        return {}
    navigation = (assignment.get("properties") or {}).get("guestConfiguration") or {}
    return dict(
        name=assignment.get("name", ""),
        configuration=navigation.get("name", ""),
        version=navigation.get("version", ""),
        assignmentType=navigation.get("assignmentType", ""),
        configurationParameter=sorted(
            (p.get("name", ""), p.get("value", "")) for p in navigation.get("configurationParameter") or []
        ),
        configurationProtectedParameter=sorted(
            (p.get("name", ""), HIDDEN) for p in navigation.get("configurationProtectedParameter") or []
        ),
    )
