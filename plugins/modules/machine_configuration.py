#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: machine_configuration
short_description: Assign, change or remove a machine configuration (guest configuration) of the machine
version_added: 0.1.0
description:
  - Runs on the managed host. Reads which machine resource the host is (C(azcmagent show -j)), then creates,
    changes or removes the guest configuration assignment O(name) of that machine through the control
    plane's management API (C(Microsoft.GuestConfiguration/guestConfigurationAssignments)), and waits for the
    machine's first report of it.
  - Compares the assignment with the options given (package, version when given, mode, parameters) and acts
    only on a difference.
  - The package must be published on the control plane (C(arc-controlplane configuration publish)); the
    control plane refuses an unknown package, mode or parameter, naming it.
  - A NonCompliant report does not fail the task; the result says so, with the reasons. Use
    O(fail_on_noncompliant) to fail it.
attributes:
  check_mode:
    support: full
    details:
      - Reads the agent and the assignment; changes nothing.
  diff_mode:
    support: full
    details:
      - Before and after of what is asked of the machine (package, version, mode, parameters).
  idempotent:
    support: full
options:
  state:
    description:
      - V(present) assigns the configuration or brings the assignment to the options given.
      - V(absent) removes the assignment; the machine no longer evaluates it.
    type: str
    choices: [present, absent]
    default: present
  name:
    description: The assignment's name, for example V(SshHardening).
    type: str
    required: true
  configuration:
    description: The published configuration package's name. Default O(name).
    type: str
  version:
    description:
      - The package's version, or its beginning (V(1.0) is the newest 1.0.x). Default the newest published.
    type: str
  assignment_type:
    description:
      - V(Audit) reports; V(ApplyAndMonitor) applies once, then reports drift; V(ApplyAndAutoCorrect) corrects
        drift at every evaluation.
    type: str
    choices: [Audit, ApplyAndMonitor, ApplyAndAutoCorrect]
    default: Audit
  parameters:
    description:
      - Values for the document's properties, by C([Class]Name;Property), for example
        C([nxFileLine]MaxAuthTries;ContainsLine).
    type: dict
    default: {}
  protected_parameters:
    description:
      - Secret values for the document's properties, by C([Class]Name;Property)
        (C(configurationProtectedParameter)). The control plane keeps them only encrypted to the machine's
        extension certificate and never shows them; the machine's gcad decrypts them and keeps them out of
        its reports.
      - Compared with the machine's own copy (the module runs as root on the machine and decrypts it with
        C(openssl)); when that cannot be read they count as changed and are sent again.
      - The machine needs its extension certificate (the extension service registers it when it starts).
    type: dict
    default: {}
  wait:
    description:
      - Wait for the machine's first report of the assignment (as it is after this run) and return its
        compliance.
    type: bool
    default: true
  timeout:
    description: Seconds to wait with O(wait=true).
    type: int
    default: 300
  fail_on_noncompliant:
    description: Fail the task when the report it waited for is NonCompliant.
    type: bool
    default: false
notes:
  - Assigning needs the I(Azure Connected Machine Resource Administrator) role (or more); reading needs any
    role on the machine.
  - The machine must be connected and run the machine configuration service (the
    P(hybridops.arc.arc_agent#role) role installs it).
extends_documentation_fragment:
  - hybridops.arc._control_plane
  - hybridops.arc._attributes
  - hybridops.arc._attributes.ACTIONGROUP_ARC
seealso:
  - module: hybridops.arc.machine_configuration_info
  - module: hybridops.arc.connection
author:
  - hybridops.arc maintainers (@hybridops)
"""

EXAMPLES = r"""
- name: Enforce the SSH baseline, with three authentication tries instead of four
  hybridops.arc.machine_configuration:
    name: SshHardening
    assignment_type: ApplyAndAutoCorrect
    parameters:
      "[nxFileLine]MaxAuthTries;ContainsLine": MaxAuthTries 3
    service_principal_id: "{{ arc_admin_client_id }}"
    service_principal_secret: "{{ arc_admin_secret }}"
  register: ssh

- name: A value that must not be shown (a package of your own whose nxFile resource "token" writes it)
  hybridops.arc.machine_configuration:
    name: AppToken
    assignment_type: ApplyAndAutoCorrect
    protected_parameters:
      "[nxFile]token;Contents": "{{ vault_service_token }}"
    service_principal_id: "{{ arc_admin_client_id }}"
    service_principal_secret: "{{ arc_admin_secret }}"

- name: Show what is not compliant
  ansible.builtin.debug:
    msg: "{{ ssh.reasons }}"
  when: ssh.compliance_status == 'NonCompliant'

- name: Stop evaluating it
  hybridops.arc.machine_configuration:
    name: SshHardening
    state: absent
    service_principal_id: "{{ arc_admin_client_id }}"
    service_principal_secret: "{{ arc_admin_secret }}"
"""

RETURN = r"""
assignment:
  description:
    - The assignment after the run (before it in check mode; empty when there is none), as the management
      API returns it.
  returned: always
  type: dict
  sample:
    name: SshHardening
    type: Microsoft.GuestConfiguration/guestConfigurationAssignments
    properties:
      complianceStatus: Compliant
      guestConfiguration: {name: SshHardening, version: 1.0.0, assignmentType: ApplyAndAutoCorrect}
compliance_status:
  description:
    - V(Compliant), V(NonCompliant) or V(Pending) (not evaluated yet, or not waited for); empty when absent.
  returned: always
  type: str
  sample: NonCompliant
reasons:
  description: What the latest report found wrong, per resource.
  returned: always
  type: list
  elements: dict
  sample: [{resource: "[nxFileLine]PermitRootLogin", code: "nxFileLine:DoesNotContainPattern",
            phrase: "/etc/ssh/sshd_config contains 'PermitRootLogin yes'"}]
changes:
  description: The properties that differed (and were changed, outside check mode).
  returned: always
  type: list
  elements: str
  sample: [assignmentType]
code:
  description:
    - The management API's error code of a failed request (V(InvalidAssignmentType),
      V(ConfigurationPackageNotFound), V(InvalidConfigurationParameter)...), V(NonCompliant) with
      O(fail_on_noncompliant), V(MachineNotConnected) when the machine is not connected.
  returned: failure
  type: str
  sample: ConfigurationPackageNotFound
"""

import time

from ansible_collections.hybridops.arc.plugins.module_utils._arm import machine_client
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent
from ansible_collections.hybridops.arc.plugins.module_utils._common import ArcModule
from ansible_collections.hybridops.arc.plugins.module_utils._errors import (
    ArmError,
    OperationError,
    error_message,
)
from ansible_collections.hybridops.arc.plugins.module_utils._files import readable
from ansible_collections.hybridops.arc.plugins.module_utils._machine_configuration import (
    assignment_id,
    differences,
    machine_protected_parameters,
    reasons,
    view,
    wanted_navigation,
)

NOT_CONNECTED = (
    "this machine is not connected (azcmagent show has no resource id); connect it first, for example with "
    "hybridops.arc.connection"
)


class MachineConfiguration:
    def __init__(self, module, agent):
        self.module = module
        self.params = module.params
        self.agent = agent
        self.acted = False
        self.machine = None

    def run_openssl(self, argv, data):
        rc, out, _err = self.module.run_command(argv, data=data, binary_data=True, encoding=None)
        return rc, out

    def target(self):
        return "machine configuration %s of %s" % (self.params["name"], self.machine or "this machine")

    def run(self):
        shown = self.agent.run_json("show", ["show"])
        self.machine = shown.get("resourceId")
        if not self.machine:
            self.module.fail_json(msg=NOT_CONNECTED, code="MachineNotConnected", changed=False)
        arm = machine_client(self.params, shown, readable)
        resource_id = assignment_id(self.machine, self.params["name"])
        current = arm.get_resource("GET assignment", resource_id)
        if self.params["state"] == "absent":
            if current is not None and not self.module.check_mode:
                arm.delete_resource("DELETE assignment", resource_id)
                self.acted = True
            return self.result(current is not None, current, None, ["(removed)"] if current else [])
        protected = None
        if self.params["protected_parameters"] and current is not None:
            digest = (current.get("properties") or {}).get("assignmentHash")
            protected = machine_protected_parameters(self.run_openssl, self.params["name"], digest)
        changes = differences(current, self.params, protected)
        after = current
        if changes and not self.module.check_mode:
            body = {"properties": {"guestConfiguration": wanted_navigation(self.params)}}
            after = arm.put_resource("PUT assignment", resource_id, body)
            self.acted = True
        if self.params["wait"] and not self.module.check_mode:
            after = self.wait(arm, resource_id, after)
        return self.result(bool(changes), current, after, changes)

    def wait(self, arm, resource_id, after):
        """The assignment once the machine has reported on it as it is now (no longer Pending)."""
        deadline = time.monotonic() + self.params["timeout"]
        while ((after or {}).get("properties") or {}).get("complianceStatus") == "Pending":
            if time.monotonic() >= deadline:
                raise ArmError(
                    "wait for the first report",
                    "the machine sent no report within %d s (is it connected, with its machine configuration "
                    "service running and turned on?); raise timeout, or set wait=false"
                    % self.params["timeout"],
                    code="OperationTimeout",
                )
            time.sleep(1)
            after = arm.get_resource("GET assignment", resource_id)
        return after

    def result(self, changed, before, after, changes):
        properties = (after or {}).get("properties") or {}
        result = dict(
            changed=changed,
            assignment=after or {},
            compliance_status=properties.get("complianceStatus", ""),
            reasons=reasons(after),
            changes=changes,
        )
        if self.module._diff:
            planned = after
            if self.module.check_mode and self.params["state"] == "present":
                planned = {
                    "name": self.params["name"],
                    "properties": {"guestConfiguration": wanted_navigation(self.params)},
                }
            result["diff"] = dict(
                before=view(before), after=view(planned if self.params["state"] == "present" else None)
            )
        if self.params["fail_on_noncompliant"] and result["compliance_status"] == "NonCompliant":
            self.module.fail_json(
                msg="%s is NonCompliant: %s"
                % (
                    self.target(),
                    "; ".join("%s: %s" % (r["resource"], r["phrase"]) for r in result["reasons"]),
                ),
                code="NonCompliant",
                **result,
            )
        return result


def main():
    module = ArcModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            name=dict(type="str", required=True),
            configuration=dict(type="str"),
            version=dict(type="str"),
            assignment_type=dict(
                type="str", choices=["Audit", "ApplyAndMonitor", "ApplyAndAutoCorrect"], default="Audit"
            ),
            parameters=dict(type="dict", default={}),
            protected_parameters=dict(type="dict", default={}, no_log=True),
            wait=dict(type="bool", default=True),
            timeout=dict(type="int", default=300),
            fail_on_noncompliant=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    configuration = MachineConfiguration(module, Azcmagent(module))
    try:
        result = configuration.run()
    except OperationError as error:
        module.fail_json(
            msg=error_message(error, configuration.target()), code=error.code, changed=configuration.acted
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
