#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: connection
short_description: Connect a machine to the control plane, or disconnect it, with azcmagent
version_added: 0.1.0
description:
  - Connects the Connected Machine agent of the managed host to a machine resource (C(azcmagent connect)), or
    disconnects it (C(azcmagent disconnect)).
  - Reads the connection first (C(azcmagent show -j)), compares it with the requested resource and acts only
    on a difference. A machine connected to the requested resource is left as it is, unless
    O(force_reconnect=true).
  - Tags are brought to O(tags) through the control plane's management API (a PATCH of the machine resource),
    never by reconnecting.
  - The agent must be installed, for example with the P(hybridops.arc.arc_agent#role) role.
author:
  - hybridops.arc maintainers (@hybridops)
extends_documentation_fragment:
  - hybridops.arc._control_plane
  - hybridops.arc._attributes
  - hybridops.arc._attributes.ACTIONGROUP_ARC
attributes:
  check_mode:
    support: full
    details:
      - Reads the agent's state and, when O(tags) is given on a connected machine, the machine resource; runs
        no command that changes anything.
  diff_mode:
    support: full
    details:
      - Before and after of the connection (connected or not, resource id) and of the tags; never credentials.
  idempotent:
    support: full
    details:
      - Except with O(force_reconnect=true), which reconnects on every run by design.
options:
  state:
    description:
      - V(connected) connects the machine to the requested resource when it is not connected to it.
      - V(disconnected) deletes the machine resource with the given credentials and resets the machine's local
        state (C(azcmagent disconnect)); with O(force_local_only=true) resets this machine only.
    type: str
    choices: [connected, disconnected]
    default: connected
  subscription_id:
    description:
      - The subscription (a GUID) of the machine resource.
      - Required with O(state=connected).
    type: str
  resource_group:
    description:
      - The resource group of the machine resource. It must exist.
      - Required with O(state=connected).
    type: str
  location:
    description:
      - The location of the machine resource, for example V(westeurope).
      - Required with O(state=connected).
    type: str
  resource_name:
    description:
      - The name of the machine resource.
      - When omitted, a machine that is connected keeps the name it has (any name is accepted), and a new
        connection takes the host's short host name, as C(azcmagent connect) chooses it.
    type: str
  cloud:
    description:
      - The cloud, passed as C(--cloud).
    type: str
    choices: [AzureCloud, AzureUSGovernment, AzureChinaCloud]
    default: AzureCloud
  correlation_id:
    description:
      - A GUID written to the control plane's audit log with the connect.
    type: str
  tags:
    description:
      - Tags the machine resource must have (names to string values).
      - At connect time they are passed as C(--tags); on a connected machine they are compared with the
        machine resource's tags (read through the management API) and changed with a PATCH of the resource,
        without reconnecting.
      - Needs O(service_principal_secret) or O(access_token) (and the control plane URL, O(control_plane_url),
        else the one the machine is connected to); not supported with O(service_principal_cert).
      - When omitted, tags are not managed.
    type: dict
  purge_tags:
    description:
      - With O(tags), also remove the tags that O(tags) does not list.
    type: bool
    default: false
  on_mismatch:
    description:
      - What to do when the machine is connected to another resource than the requested one (another resource
        name, resource group, subscription, tenant or location).
      - V(fail) fails and names each difference.
      - V(reconnect) connects the machine to the requested resource, keeping the old connection until the new
        one is made (a failure leaves the machine connected as it was), then deletes the old resource with the
        given credentials (which needs the I(Azure Connected Machine Resource Administrator) role; without
        it the old resource stays and the module warns).
    type: str
    choices: [fail, reconnect]
    default: fail
  force_reconnect:
    description:
      - Re-create the machine's identity even when it is connected to the requested resource, for example
        after the credential expired or the machine was cloned.
      - The machine connects again, keeping its identity until the new one is accepted (a failure leaves it
        connected as it was); the control plane re-onboards it into the same resource (same VM ID) with a
        new key.
      - Reports a change on every run.
    type: bool
    default: false
  gateway_id:
    description:
      - The resource id of an Arc gateway (C(Microsoft.HybridCompute/gateways)) to connect and work through
        (C(azcmagent connect --gateway-id)). The machine is linked to it and every request of the agent goes
        through the Arc proxy (C(arcproxyd), U(http://localhost:40343)) to the gateway.
      - A machine connected to the requested resource but not through a gateway is reconnected to it
        (keeping its connection until the new one is made).
      - The Arc proxy must be installed (the P(hybridops.arc.arc_agent#role) role installs it).
    type: str
  force_local_only:
    description:
      - With O(state=disconnected), reset this machine only (C(azcmagent disconnect --force-local-only)); the
        resource stays in the control plane. Needs no credentials.
    type: bool
    default: false
notes:
  - Credentials are needed unless O(force_local_only=true), also when nothing turns out to change.
  - Connecting needs the I(Azure Connected Machine Onboarding) role (or more); disconnecting, which deletes
    the resource, needs I(Azure Connected Machine Resource Administrator).
seealso:
  - module: hybridops.arc.agent_info
  - module: hybridops.arc.agent_config
"""

EXAMPLES = r"""
- name: Connect the machine with a service principal
  hybridops.arc.connection:
    control_plane_url: https://controlplane:8443
    control_plane_ca: /root/controlplane-ca.pem
    tenant_id: "{{ arc_tenant_id }}"
    subscription_id: "{{ arc_subscription_id }}"
    resource_group: arc-servers
    location: westeurope
    service_principal_id: "{{ arc_onboarding_client_id }}"
    service_principal_secret: "{{ arc_onboarding_secret }}"
    tags:
      env: prod
      owner: ops

- name: Set the connection options once for a play
  module_defaults:
    group/hybridops.arc.arc:
      control_plane_url: https://controlplane:8443
      tenant_id: "{{ arc_tenant_id }}"
      service_principal_id: "{{ arc_admin_client_id }}"
      service_principal_secret: "{{ arc_admin_secret }}"
  block:
    - name: Move the machine to another resource group
      hybridops.arc.connection:
        subscription_id: "{{ arc_subscription_id }}"
        resource_group: arc-servers-eu
        location: westeurope
        on_mismatch: reconnect

    - name: Disconnect the machine and delete its resource
      hybridops.arc.connection:
        state: disconnected

- name: Renew the identity of a cloned machine (new key, same resource)
  hybridops.arc.connection:
    subscription_id: "{{ arc_subscription_id }}"
    resource_group: arc-servers
    location: westeurope
    tenant_id: "{{ arc_tenant_id }}"
    service_principal_id: "{{ arc_onboarding_client_id }}"
    service_principal_secret: "{{ arc_onboarding_secret }}"
    force_reconnect: true

- name: Forget the connection on this machine only
  hybridops.arc.connection:
    state: disconnected
    force_local_only: true
"""

RETURN = r"""
resource_id:
  description: The machine resource the host is connected to; empty when disconnected.
  returned: always
  type: str
  sample: "/subscriptions/5d3b1a52-0f6c-4c1e-9a8e-0d1f2b3c4d5e/resourceGroups/arc-servers/\
    providers/Microsoft.HybridCompute/machines/web-01"
vm_id:
  description:
    - The machine's VM ID (a GUID); empty when disconnected.
    - In check mode, the current one, or empty when a new connection would make a new one.
  returned: always
  type: str
  sample: b7a098cc-b0b8-46e8-a205-62f301a62a8f
status:
  description: The agent's status after the run, as C(azcmagent show) reports it.
  returned: always
  type: str
  sample: Connected
tags:
  description:
    - The machine resource's tags.
    - Read from the management API when O(tags) is given; otherwise as C(azcmagent show) reports them (the
      agent follows changes made through the management API once the control plane notifies it).
  returned: always
  type: dict
  sample: {"env": "prod", "owner": "ops"}
machine:
  description:
    - What C(azcmagent show -j) prints after the run (before it in check mode).
  returned: always
  type: dict
  sample:
    resourceName: web-01
    resourceGroup: arc-servers
    resourceId: "/subscriptions/5d3b1a52-0f6c-4c1e-9a8e-0d1f2b3c4d5e/resourceGroups/arc-servers/\
      providers/Microsoft.HybridCompute/machines/web-01"
    subscriptionId: 5d3b1a52-0f6c-4c1e-9a8e-0d1f2b3c4d5e
    tenantId: 0f6c1e1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a
    vmId: b7a098cc-b0b8-46e8-a205-62f301a62a8f
    location: westeurope
    cloud: AzureCloud
    status: Connected
    agentVersion: 1.64.3414.2961
    tags: {"env": "prod"}
mismatch:
  description: What differs between the connected resource and the requested one (field to current and
    requested).
  returned: when the machine is connected to another resource
  type: dict
  sample: {"resource_group": {"current": "arc-servers", "requested": "arc-servers-eu"}}
code:
  description: The agent's AZCM error code, or the management API's error code, of a failed operation.
  returned: failure
  type: str
  sample: AZCM0041
"""

import socket

from ansible_collections.hybridops.arc.plugins.module_utils._arm import check_credentials, machine_client
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent
from ansible_collections.hybridops.arc.plugins.module_utils._common import ArcModule
from ansible_collections.hybridops.arc.plugins.module_utils._desired import (
    CREDENTIALS,
    connection_mismatch,
    desired_tags,
    gateway_mode_missing,
)
from ansible_collections.hybridops.arc.plugins.module_utils._errors import (
    AzcmagentError,
    OperationError,
    error_message,
)
from ansible_collections.hybridops.arc.plugins.module_utils._files import readable

ALREADY_CONNECTED = "AZCM0067"
MACHINE_ID = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.HybridCompute/machines/%s"


def encode_tags(tags):
    """``--tags`` syntax: every name and value quoted, with ``\\`` and ``'`` escaped."""

    def quote(text):
        return "'%s'" % text.replace("\\", "\\\\").replace("'", "\\'")

    return ",".join("%s=%s" % (quote(name), quote(value)) for name, value in sorted(tags.items()))


class Connection:
    def __init__(self, module, agent):
        self.module = module
        self.agent = agent
        self.params = module.params
        self.check_mode = module.check_mode
        self.acted = False

    def show(self):
        return self.agent.run_json("show", ["show"])

    def requested(self):
        params = self.params
        return dict(
            resource_name=params["resource_name"] or socket.gethostname().split(".", 1)[0],
            resource_group=params["resource_group"],
            subscription_id=params["subscription_id"],
            tenant_id=params["tenant_id"],
            location=params["location"],
        )

    def mismatch(self, shown):
        """Each requested field that differs from the connected resource: {field: {current, requested}}.
        An omitted resource name accepts the name the machine has."""
        return connection_mismatch(shown, self.params)

    def target(self):
        if self.params["state"] == "disconnected":
            return "this machine"
        requested = self.requested()
        return "resource %s in resource group %s" % (requested["resource_name"], requested["resource_group"])

    def connect(self, reconnect=False):
        """``azcmagent connect``; with ``reconnect`` the connection in place is kept until the new
        one is made (the agent's ``--reconnect``), so that a failure leaves the machine as it was."""
        params = self.params
        flags, secrets = self.module.credential_flags()
        args = [
            "connect",
            "--subscription-id",
            params["subscription_id"],
            "--resource-group",
            params["resource_group"],
            "--location",
            params["location"],
            "--cloud",
            params["cloud"],
        ]
        if params["resource_name"]:
            args += ["--resource-name", params["resource_name"]]
        if params["correlation_id"]:
            args += ["--correlation-id", params["correlation_id"]]
        if params["tags"]:
            args += ["--tags", encode_tags(params["tags"])]
        if params["gateway_id"]:
            args += ["--gateway-id", params["gateway_id"]]
        if reconnect:
            args.append("--reconnect")
        args += flags + self.module.control_plane_flags()
        return self.agent.run_json("connect", args, secrets=secrets)

    def disconnect(self, local_only):
        if local_only:
            self.agent.run_json("disconnect", ["disconnect", "--force-local-only"])
            return
        flags, secrets = self.module.credential_flags()
        args = ["disconnect"] + flags + self.module.control_plane_flags()
        self.agent.run_json("disconnect", args, secrets=secrets)

    def arm(self, shown):
        return machine_client(self.params, shown, readable)

    def run(self):
        before = self.show()
        if self.params["state"] == "disconnected":
            return self.run_disconnected(before)
        return self.run_connected(before)

    def run_disconnected(self, before):
        connected = bool(before.get("resourceId"))
        after = before
        if connected and not self.check_mode:
            self.disconnect(self.params["force_local_only"])
            self.acted = True
            after = self.show()
        elif connected:
            after = dict(before, resourceId="", vmId="", status="Disconnected", tags={})
        return self.result(connected, before, after, before.get("tags") or {}, after.get("tags") or {})

    def run_connected(self, before):
        params = self.params
        result = {}
        connected = bool(before.get("resourceId"))
        action = None
        if not connected:
            action = "connect"
        else:
            differs = self.mismatch(before)
            if differs:
                result["mismatch"] = differs
                if params["on_mismatch"] == "fail":
                    described = ", ".join(
                        "%s is '%s', requested '%s'" % (field.replace("_", " "), d["current"], d["requested"])
                        for field, d in sorted(differs.items())
                    )
                    self.module.fail_json(
                        msg="this machine is connected to %s, another resource than the requested one: %s; "
                        "set on_mismatch=reconnect to move it, or disconnect it first"
                        % (before.get("resourceId"), described),
                        **result,
                    )
                action = "reconnect"
            elif params["force_reconnect"]:
                action = "force_reconnect"
            elif gateway_mode_missing(before, params):
                action = "reconnect"  # to the same resource, through the gateway
        if params["tags"] is not None:
            check_credentials(certificate=params["service_principal_cert"])  # before anything changes
        after = before
        if action and self.check_mode:
            requested = self.requested()
            resource_id = MACHINE_ID % (
                requested["subscription_id"],
                requested["resource_group"],
                requested["resource_name"],
            )
            vm_id = before.get("vmId", "") if action == "force_reconnect" else ""
            after = dict(
                before, resourceId=resource_id, vmId=vm_id, status="Connected", tags=params["tags"] or {}
            )
        elif action:
            try:
                after = self.connect(reconnect=action in ("reconnect", "force_reconnect"))
                self.acted = True
                note = (after.get("previousResource") or {}).get("note", "")
                if "delete it" in note:  # the old resource stays: the user must act
                    self.module.warn(note)
            except AzcmagentError as error:
                # Another run (a second job on the same host) connected it meanwhile: if that is
                # the requested resource, there is nothing left to do.
                after = self.show() if error.code == ALREADY_CONNECTED else {}
                if not after.get("resourceId") or self.mismatch(after):
                    raise
                action = None
        tags_before = before.get("tags") or {}
        tags_after = after.get("tags") or {}
        tags_changed = False
        if params["tags"] is not None:
            tags_before, tags_after, tags_changed = self.converge_tags(before, after, bool(action))
        return self.result(bool(action) or tags_changed, before, after, tags_before, tags_after, **result)

    def converge_tags(self, before, after, acted):
        """Bring the resource's tags to the requested ones: (before, after, changed)."""
        wanted = self.params["tags"]
        tags_before = {}
        arm = None
        if before.get("resourceId"):
            arm = self.arm(before)
            machine = arm.get_machine(before["resourceId"])
            tags_before = (machine or {}).get("tags") or {}
        if acted and self.check_mode:
            current = {} if before.get("resourceId") != after.get("resourceId") else tags_before
        elif acted:
            arm = self.arm(after)
            machine = arm.get_machine(after["resourceId"]) or {}
            current = machine.get("tags") or {}
        else:
            current = tags_before
        desired = desired_tags(current, wanted, self.params["purge_tags"])
        if desired == current:
            return tags_before, current, False
        if not self.check_mode:
            machine = arm.update_tags(after["resourceId"], desired)
            self.acted = True
            desired = machine.get("tags") or {}
        return tags_before, desired, True

    def result(self, changed, before, after, tags_before, tags_after, **extra):
        result = dict(
            changed=changed,
            resource_id=after.get("resourceId") or "",
            vm_id=after.get("vmId") or "",
            status=after.get("status") or "",
            tags=tags_after,
            machine=after,
            **extra,
        )
        if self.module._diff:
            result["diff"] = dict(
                before=dict(
                    connected=bool(before.get("resourceId")),
                    resource_id=before.get("resourceId") or "",
                    tags=tags_before,
                ),
                after=dict(
                    connected=bool(after.get("resourceId")),
                    resource_id=after.get("resourceId") or "",
                    tags=tags_after,
                ),
            )
        return result


def main():
    module = ArcModule(
        argument_spec=dict(
            state=dict(type="str", choices=["connected", "disconnected"], default="connected"),
            subscription_id=dict(type="str"),
            resource_group=dict(type="str"),
            location=dict(type="str"),
            resource_name=dict(type="str"),
            cloud=dict(
                type="str",
                choices=["AzureCloud", "AzureUSGovernment", "AzureChinaCloud"],
                default="AzureCloud",
            ),
            correlation_id=dict(type="str"),
            tags=dict(type="dict"),
            purge_tags=dict(type="bool", default=False),
            on_mismatch=dict(type="str", choices=["fail", "reconnect"], default="fail"),
            force_reconnect=dict(type="bool", default=False),
            force_local_only=dict(type="bool", default=False),
            gateway_id=dict(type="str"),
        ),
        required_if=[
            ("state", "connected", ("subscription_id", "resource_group", "location")),
            (
                "force_local_only",
                False,
                CREDENTIALS,
                True,
            ),
        ],
        supports_check_mode=True,
    )
    if module.params["tags"] is not None:
        module.params["tags"] = dict((str(k), str(v)) for k, v in module.params["tags"].items())
    connection = Connection(module, Azcmagent(module))
    try:
        result = connection.run()
    except OperationError as error:
        module.fail_json(
            msg=error_message(error, connection.target()), code=error.code, changed=connection.acted
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
