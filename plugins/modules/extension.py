#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: extension
short_description: Install, change or remove an extension of the machine through the control plane
version_added: 0.1.0
description:
  - Runs on the managed host. Reads which machine resource the host is (C(azcmagent show -j)), then creates,
    changes or removes the extension O(name) of that machine through the control plane's management API
    (C(Microsoft.HybridCompute/machines/extensions), a long-running operation), and waits until the
    machine's extension service has run it.
  - Compares the extension resource with the options given and acts only on a difference; options not given
    are not compared.
  - Protected settings cannot be read back from the API. On the machine they can; the module decrypts the
    ones the machine's handler last got (its settings file, with the machine's extension key, as the handler
    does) and compares them. When they cannot be read there (not root, the handler not installed yet), given
    protected settings count as a change and are sent.
  - A handler that fails fails the task with the handler's own message.
  - A machine connected moments ago may not yet have registered its extension certificate (the control plane
    answers 409 C(MachineNotReadyForExtensions)); the module asks again every 2 seconds within O(timeout).
attributes:
  check_mode:
    support: full
    details:
      - Reads the agent, the extension resource and the machine's copy of the protected settings; changes
        nothing.
  diff_mode:
    support: full
    details:
      - Before and after of the extension's properties; protected settings are never shown, only that they are
        set.
  idempotent:
    support: full
    details:
      - With O(protected_settings), as long as the machine can read back the ones it got (the module runs as
        root on a machine whose handler is installed).
extends_documentation_fragment:
  - hybridops.arc._control_plane
  - hybridops.arc._attributes
  - hybridops.arc._attributes.ACTIONGROUP_ARC
options:
  state:
    description:
      - V(present) creates the extension or brings it to the options given; a Failed extension with the same
        options is sent again.
      - V(absent) removes it (the handler's disable and uninstall run on the machine).
    type: str
    choices: [present, absent]
    default: present
  name:
    description: The extension resource's name, for example V(CustomScript).
    type: str
    required: true
  publisher:
    description:
      - The extension's publisher, for example V(Microsoft.Azure.Extensions).
      - Required with O(state=present).
    type: str
  type:
    description:
      - The extension's type, for example V(CustomScript).
      - Required with O(state=present).
    type: str
    aliases: [extension_type]
  type_handler_version:
    description:
      - The handler version, V(MAJOR.MINOR), for example V(2.1). When omitted, the newest published version.
    type: str
  auto_upgrade_minor_version:
    description:
      - Whether the machine takes newer minor versions of O(type_handler_version) as they are published.
    type: bool
  enable_automatic_upgrade:
    description: Whether the control plane upgrades the extension automatically.
    type: bool
  settings:
    description: The public settings (the handler reads them; the API returns them).
    type: dict
  protected_settings:
    description:
      - The protected settings. Sent encrypted to the machine's key; never returned, logged or shown.
    type: dict
  force_update_tag:
    description: Change it to run the handler again with the same settings.
    type: str
  wait:
    description:
      - Wait until the machine has run the change (or removal) and fail when it failed.
      - With V(false), the module returns once the control plane has accepted the request.
    type: bool
    default: true
  timeout:
    description: Seconds to wait with O(wait=true).
    type: int
    default: 900
notes:
  - Changing or removing extensions needs the I(Azure Connected Machine Resource Administrator) role (or
    more); the I(Onboarding) role cannot. Credentials are needed also when nothing turns out to change.
  - The machine must be connected, for example with M(hybridops.arc.connection), and run the extension
    service (the P(hybridops.arc.arc_agent#role) role installs it).
seealso:
  - module: hybridops.arc.extension_info
  - module: hybridops.arc.connection
author:
  - hybridops.arc maintainers (@hybridops)
"""

EXAMPLES = r"""
- name: Run a command with CustomScript, the command itself kept secret
  hybridops.arc.extension:
    name: CustomScript
    publisher: Microsoft.Azure.Extensions
    type: CustomScript
    type_handler_version: "2.1"
    protected_settings:
      commandToExecute: "/usr/local/bin/enroll --token {{ enroll_token }}"
    service_principal_id: "{{ arc_admin_client_id }}"
    service_principal_secret: "{{ arc_admin_secret }}"

- name: Set the connection options once, then manage extensions
  module_defaults:
    group/hybridops.arc.arc:
      service_principal_id: "{{ arc_admin_client_id }}"
      service_principal_secret: "{{ arc_admin_secret }}"
  block:
    - name: A script, run again whenever its timestamp changes
      hybridops.arc.extension:
        name: CustomScript
        publisher: Microsoft.Azure.Extensions
        type: CustomScript
        settings:
          script: "{{ lookup('ansible.builtin.file', 'bootstrap.sh') | b64encode }}"
          timestamp: 2

    - name: Remove it
      hybridops.arc.extension:
        name: CustomScript
        state: absent
"""

RETURN = r"""
extension:
  description:
    - The extension resource after the run (before it in check mode; empty when there is none), as the
      management API returns it; never protected settings.
  returned: always
  type: dict
  sample:
    name: CustomScript
    type: Microsoft.HybridCompute/machines/extensions
    properties:
      publisher: Microsoft.Azure.Extensions
      type: CustomScript
      typeHandlerVersion: "2.1"
      provisioningState: Succeeded
instance_view:
  description: What the machine reported of the extension (its status code, level, message and time).
  returned: always
  type: dict
  sample:
    name: CustomScript
    type: CustomScript
    typeHandlerVersion: 2.1.0
    status:
      code: "0"
      level: Info
      displayStatus: Provisioning succeeded
      message: "Enable succeeded: ..."
changes:
  description: The properties that differed (and were changed, outside check mode).
  returned: always
  type: list
  elements: str
  sample: [settings, protectedSettings]
code:
  description:
    - The management API's error code of a failed request, or the operation's (V(ExtensionOperationFailed)
      when the handler failed); V(MachineNotConnected) when the machine is not connected.
  returned: failure
  type: str
  sample: ExtensionOperationFailed
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
from ansible_collections.hybridops.arc.plugins.module_utils._extension import (
    differences,
    machine_protected_settings,
    requested_properties,
    view,
)
from ansible_collections.hybridops.arc.plugins.module_utils._files import readable

NOT_READY = "MachineNotReadyForExtensions"
NOT_CONNECTED = (
    "this machine is not connected (azcmagent show has no resource id); connect it first, for example with "
    "hybridops.arc.connection"
)


class Extension:
    def __init__(self, module, agent):
        self.module = module
        self.params = module.params
        self.agent = agent
        self.acted = False
        self.machine = None
        self.resource_id = None

    def target(self):
        return "extension %s of %s" % (self.params["name"], self.machine or "this machine")

    def run_openssl(self, argv, data):
        rc, out, _err = self.module.run_command(argv, data=data, binary_data=True, encoding=None)
        return rc, out

    def run(self):
        shown = self.agent.run_json("show", ["show"])
        machine = shown.get("resourceId")
        if not machine:
            self.module.fail_json(msg=NOT_CONNECTED, code="MachineNotConnected", changed=False)
        self.machine = machine
        self.resource_id = "%s/extensions/%s" % (machine, self.params["name"])
        arm = machine_client(self.params, shown, readable)
        current = arm.get_resource("GET extension", self.resource_id)
        if self.params["state"] == "absent":
            return self.remove(arm, current)
        return self.ensure(arm, current, shown)

    def ensure(self, arm, current, shown):
        params = self.params
        protected = None
        if params["protected_settings"] is not None and current is not None:
            protected = machine_protected_settings(self.run_openssl, params["publisher"], params["type"])
        changes = differences(current, params, protected)
        state = ((current or {}).get("properties") or {}).get("provisioningState")
        if not changes and state == "Failed":
            changes = ["(failed before: sent again)"]
        after = current
        if changes and not self.module.check_mode:
            body = {"location": shown.get("location") or "", "properties": requested_properties(params)}
            status, error = self.put(arm, body)
            self.acted = True
            after = arm.get_resource("GET extension", self.resource_id) or {}
            self.fail_if_failed(status, error, after)
        elif params["wait"] and state in ("Creating", "Updating"):
            # Another run's change of the same is still running: its outcome is this run's.
            after = arm.wait_for_state("GET extension", self.resource_id, params["timeout"]) or {}
            self.fail_if_failed(None, None, after)
        return self.result(bool(changes), current, after, changes)

    def put(self, arm, body):
        """The PUT, followed through; a machine just connected whose extension service has not yet
        registered its certificate (409 MachineNotReadyForExtensions: extd does so within seconds)
        is asked again every 2 seconds, within ``timeout``."""
        deadline = time.monotonic() + self.params["timeout"]
        while True:
            try:
                return arm.change(
                    "PUT extension", "PUT", self.resource_id, body, wait=self.params["wait"],
                    timeout=max(1, deadline - time.monotonic()),
                )  # fmt: skip
            except ArmError as error:
                if error.code != NOT_READY or time.monotonic() + 2 > deadline:
                    raise
            time.sleep(2)

    def fail_if_failed(self, status, error, after):
        properties = after.get("properties") or {}
        if status == "Failed" or properties.get("provisioningState") == "Failed":
            message = ((properties.get("instanceView") or {}).get("status") or {}).get("message")
            if not message and error:
                message = error.get("message")
            self.module.fail_json(
                msg="the extension %s failed on the machine: %s"
                % (self.params["name"], message or "no message from the handler"),
                code=(error or {}).get("code") or "ExtensionOperationFailed",
                changed=True,
                extension=after,
                instance_view=properties.get("instanceView") or {},
            )

    def remove(self, arm, current):
        if current is None:
            return self.result(False, None, None, [])
        if not self.module.check_mode:
            status, error = arm.change(
                "DELETE extension", "DELETE", self.resource_id, wait=self.params["wait"],
                timeout=self.params["timeout"],
            )  # fmt: skip
            self.acted = True
            if status == "Failed":
                self.module.fail_json(
                    msg="the removal of extension %s failed: %s"
                    % (self.params["name"], (error or {}).get("message") or "no message"),
                    code=(error or {}).get("code") or "ExtensionOperationFailed",
                    changed=True,
                )
        return self.result(True, current, None, ["(removed)"])

    def result(self, changed, before, after, changes):
        protected = self.params.get("protected_settings") is not None
        result = dict(
            changed=changed,
            extension=after or {},
            instance_view=((after or {}).get("properties") or {}).get("instanceView") or {},
            changes=changes,
        )
        if self.module._diff:
            if self.params["state"] == "absent":
                planned = None
            elif self.module.check_mode:
                planned = dict(before or {}, name=self.params["name"])
                planned["properties"] = dict((before or {}).get("properties") or {})
                planned["properties"].update(requested_properties(self.params))
            else:
                planned = after
            result["diff"] = dict(
                before=view(before, protected) if before else {},
                after=view(planned, protected) if planned else {},
            )
        return result


def main():
    module = ArcModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            name=dict(type="str", required=True),
            publisher=dict(type="str"),
            type=dict(type="str", aliases=["extension_type"]),
            type_handler_version=dict(type="str"),
            auto_upgrade_minor_version=dict(type="bool"),
            enable_automatic_upgrade=dict(type="bool"),
            settings=dict(type="dict"),
            protected_settings=dict(type="dict", no_log=True),
            force_update_tag=dict(type="str", no_log=False),
            wait=dict(type="bool", default=True),
            timeout=dict(type="int", default=900),
        ),
        required_if=[("state", "present", ("publisher", "type"))],
        supports_check_mode=True,
    )
    extension = Extension(module, Azcmagent(module))
    try:
        result = extension.run()
    except OperationError as error:
        module.fail_json(
            msg=error_message(error, extension.target()), code=error.code, changed=extension.acted
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
