#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: machine_configuration_info
short_description: The machine's configuration assignments, their compliance and latest reports
version_added: 0.1.0
description:
  - Runs on the managed host. Reads which machine resource the host is (C(azcmagent show -j)) and lists its
    guest configuration assignments through the control plane's management API, each with its compliance
    and latest report, and the reasons of what is not compliant.
options:
  name:
    description: Only this assignment (an empty list when the machine has none of that name).
    type: str
  reports:
    description: Also return each assignment's reports (newest first, the newest 100 the control plane keeps).
    type: bool
    default: false
notes:
  - Reading needs a role that may read machines, for example I(Reader).
  - A machine that is not connected has no assignments; the module then returns an empty list.
extends_documentation_fragment:
  - hybridops.arc._control_plane
  - hybridops.arc._attributes
  - hybridops.arc._attributes.INFO_MODULE
  - hybridops.arc._attributes.ACTIONGROUP_ARC
seealso:
  - module: hybridops.arc.machine_configuration
author:
  - hybridops.arc maintainers (@hybridops)
"""

EXAMPLES = r"""
- name: Compliance of the machine
  hybridops.arc.machine_configuration_info:
    service_principal_id: "{{ arc_reader_client_id }}"
    service_principal_secret: "{{ arc_reader_secret }}"
  register: __configuration

- name: Fail on any assignment that is not compliant
  ansible.builtin.assert:
    that: __configuration.compliance.values() | reject('eq', 'Compliant') | list == []
"""

RETURN = r"""
assignments:
  description: The machine's assignments as the management API returns them (with C(latestAssignmentReport)).
  returned: always
  type: list
  elements: dict
compliance:
  description: Each assignment's compliance, by name.
  returned: always
  type: dict
  sample: {SshHardening: NonCompliant}
reasons:
  description: What each assignment's latest report found wrong, by name.
  returned: always
  type: dict
  sample:
    SshHardening:
      - {resource: "[nxFile]sshd_config", code: "nxFile:Mode", phrase: "the mode is 0644; wanted: 0600"}
reports:
  description: With O(reports=true), each assignment's reports, by name.
  returned: always
  type: dict
resource_id:
  description: The machine resource whose assignments these are (empty when it is not connected).
  returned: always
  type: str
code:
  description: The management API's error code when a request failed, for example V(AuthorizationFailed).
  returned: failure
  type: str
  sample: AuthorizationFailed
"""

from ansible_collections.hybridops.arc.plugins.module_utils._arm import machine_client
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent
from ansible_collections.hybridops.arc.plugins.module_utils._common import ArcModule
from ansible_collections.hybridops.arc.plugins.module_utils._errors import OperationError, error_message
from ansible_collections.hybridops.arc.plugins.module_utils._files import readable
from ansible_collections.hybridops.arc.plugins.module_utils._machine_configuration import (
    assignment_id,
    reasons,
)


def main():
    module = ArcModule(
        argument_spec=dict(name=dict(type="str"), reports=dict(type="bool", default=False)),
        supports_check_mode=True,
    )
    machine = ""
    found = dict(assignments=[], compliance={}, reasons={}, reports={})
    try:
        shown = Azcmagent(module).run_json("show", ["show"])
        machine = shown.get("resourceId") or ""
        if machine:
            arm = machine_client(module.params, shown, readable)
            if module.params["name"]:
                one = arm.get_resource("GET assignment", assignment_id(machine, module.params["name"]))
                found["assignments"] = [one] if one else []
            else:
                found["assignments"] = arm.list_resources("list assignments", assignment_id(machine, "")[:-1])
            for assignment in found["assignments"]:
                name = assignment.get("name", "")
                found["compliance"][name] = (assignment.get("properties") or {}).get("complianceStatus", "")
                found["reasons"][name] = reasons(assignment)
                if module.params["reports"]:
                    found["reports"][name] = arm.list_resources(
                        "list reports", assignment_id(machine, name) + "/reports"
                    )
    except OperationError as error:
        module.fail_json(msg=error_message(error, machine or "this machine"), code=error.code, changed=False)
    module.exit_json(changed=False, resource_id=machine, **found)


if __name__ == "__main__":
    main()
