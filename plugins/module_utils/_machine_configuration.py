# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: guest configuration assignments (docs/machine-configuration.md) as
# the machine_configuration modules compare, request and show them.

TYPE = "Microsoft.GuestConfiguration/guestConfigurationAssignments"


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
    return navigation


def differences(current, params):
    """The properties of the assignment ``current`` (None: there is none) that differ from the options."""
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
    )
