#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: extension_info
short_description: The machine's extensions and their status, from the control plane
version_added: 0.1.0
description:
  - Runs on the managed host. Reads which machine resource the host is (C(azcmagent show -j)) and lists its
    extensions through the control plane's management API, each with its instance view (what the machine
    reported, its status, message and handler version).
author:
  - hybridops.arc maintainers (@hybridops)
extends_documentation_fragment:
  - hybridops.arc._control_plane
  - hybridops.arc._attributes
  - hybridops.arc._attributes.INFO_MODULE
  - hybridops.arc._attributes.ACTIONGROUP_ARC
options:
  name:
    description: Only this extension (an empty list when the machine has none of that name).
    type: str
notes:
  - Reading extensions needs a role that may read machines, for example I(Azure Connected Machine Resource
    Administrator) or I(Reader).
  - A machine that is not connected has no extensions; the module then returns an empty list.
seealso:
  - module: hybridops.arc.extension
"""

EXAMPLES = r"""
- name: What runs on the machine
  hybridops.arc.extension_info:
    service_principal_id: "{{ arc_admin_client_id }}"
    service_principal_secret: "{{ arc_admin_secret }}"
  register: __extensions

- name: Fail on any extension that failed
  ansible.builtin.assert:
    that: __extensions.extensions | selectattr('properties.provisioningState', 'eq', 'Failed') | list == []
"""

RETURN = r"""
extensions:
  description: The machine's extensions as the management API returns them (never protected settings).
  returned: always
  type: list
  elements: dict
  sample:
    - name: CustomScript
      properties:
        publisher: Microsoft.Azure.Extensions
        type: CustomScript
        typeHandlerVersion: "2.1"
        provisioningState: Succeeded
        instanceView:
          status: {code: "0", level: Info, message: "Enable succeeded: ..."}
resource_id:
  description: The machine resource whose extensions these are; empty when the machine is not connected.
  returned: always
  type: str
code:
  description: The management API's error code of a failed request.
  returned: failure
  type: str
"""

from ansible_collections.hybridops.arc.plugins.module_utils._arm import machine_client
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent
from ansible_collections.hybridops.arc.plugins.module_utils._common import ArcModule
from ansible_collections.hybridops.arc.plugins.module_utils._errors import OperationError, error_message
from ansible_collections.hybridops.arc.plugins.module_utils._files import readable


def main():
    module = ArcModule(argument_spec=dict(name=dict(type="str")), supports_check_mode=True)
    machine = ""
    try:
        shown = Azcmagent(module).run_json("show", ["show"])
        machine = shown.get("resourceId") or ""
        if not machine:
            module.exit_json(changed=False, extensions=[], resource_id="")
        arm = machine_client(module.params, shown, readable)
        if module.params["name"]:
            found = arm.get_resource("GET extension", "%s/extensions/%s" % (machine, module.params["name"]))
            extensions = [found] if found else []
        else:
            extensions = arm.list_resources("list extensions", machine + "/extensions")
    except OperationError as error:
        module.fail_json(msg=error_message(error, machine or "this machine"), code=error.code, changed=False)
    module.exit_json(changed=False, extensions=extensions, resource_id=machine)


if __name__ == "__main__":
    main()
