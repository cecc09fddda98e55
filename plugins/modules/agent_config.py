#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: agent_config
short_description: Manage the local settings of the Connected Machine agent
version_added: 0.1.0
description:
  - Sets or clears the agent's local settings (C(azcmagent config set) and C(azcmagent config clear)), such as
    C(incomingconnections.ports), C(extensions.allowlist), C(proxy.url) or C(controlplane.url).
  - Reads every setting first (C(azcmagent config list -j)), compares, and changes only the settings that
    differ.
  - Writes the control plane's CA certificate too (O(control_plane_ca)), the file the C(controlplane.cafile)
    setting names, so that the settings and their certificate change in one run and are set back together.
  - The agent must be installed, for example with the P(hybridops.arc.arc_agent#role) role.
author:
  - hybridops.arc maintainers (@hybridops)
extends_documentation_fragment:
  - hybridops.arc._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the settings (and, for settings to clear, their defaults with C(azcmagent config info -j)) and
        the certificate file; runs no command and writes nothing.
  diff_mode:
    support: full
    details:
      - Before and after of each setting named in O(settings).
  idempotent:
    support: full
options:
  settings:
    description:
      - Setting name to value. Names are the agent's property names (any letter case), for example
        V(incomingconnections.ports); an unknown name fails before anything changes, naming the valid ones.
      - For a scalar setting, a string, integer or boolean.
      - For a list setting, either a list (it replaces the whole list) or a dictionary with the keys C(add)
        and/or C(remove), each a list of entries to add (when not there yet) or to remove (when there); other
        entries stay.
      - A setting whose value is V(null) is put back to its default (C(azcmagent config clear)) when it is not
        at its default.
      - With O(state=absent), the values are ignored (write for example V(null)) and the named settings are
        cleared.
    type: dict
  control_plane_ca:
    description:
      - The control plane's CA certificate on the host, the file the C(controlplane.cafile) setting names.
        It is written before the settings change (atomically, owned by root, mode 0644) when its content
        differs, and set back with them when a setting is refused.
      - One of O(settings) and O(control_plane_ca) is required.
    type: dict
    suboptions:
      path:
        description: The file on the host.
        type: path
        required: true
      content:
        description:
          - The certificate (PEM text) the file must hold, byte for byte; V(null) or V("") for no file (it is
            removed).
        type: str
  state:
    description:
      - V(present) gives each setting in O(settings) its value (V(null) its default).
      - V(absent) puts each setting named in O(settings) back to its default (C(azcmagent config clear)) when
        it is not at its default.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Values are compared as the agent stores them. Booleans compare without regard to case (V(true), V(True)),
    integers by value, the enumerations C(config.mode) and C(connection.type) without regard to case, other
    strings exactly.
  - Lists compare as sets, without regard to order or duplicates; extension entries and C(proxy.bypass)
    entries without regard to case, as the agent does.
  - Switching C(config.mode) to V(monitor) makes the agent also set C(guestconfiguration.enabled) to V(false);
    the agent refuses changes of the extension lists in monitor mode (AZCM0027).
  - A value the agent refuses fails with its AZCM code (AZCM0023 for a bad value) and loses nothing. Settings
    are changed one by one in the order of their names; when one is refused, every setting that differs from
    what it was before the run (including what the agent changed along, such as C(guestconfiguration.enabled)
    in monitor mode) is set back, and the failure reports V(changed=false). Only when setting back fails too
    does the failure report V(changed=true) and, in RV(changes), what stays changed.
seealso:
  - module: hybridops.arc.agent_info
  - module: hybridops.arc.connection
"""

EXAMPLES = r"""
- name: Point the agent at the control plane and open SSH to Arc connectivity
  hybridops.arc.agent_config:
    settings:
      controlplane.url: https://controlplane:8443
      controlplane.cafile: /var/opt/azcmagent/controlplane-ca.pem
      incomingconnections.ports: [22]

- name: Allow one more extension, block another, keep the rest of both lists
  hybridops.arc.agent_config:
    settings:
      extensions.allowlist:
        add: [Microsoft.Azure.Monitor/AzureMonitorLinuxAgent]
      extensions.blocklist:
        remove: [Microsoft.CPlat.Core/RunCommandLinux]

- name: Turn off guest configuration and switch to monitor mode
  hybridops.arc.agent_config:
    settings:
      guestconfiguration.enabled: false
      config.mode: monitor

- name: Put the proxy settings back to their defaults
  hybridops.arc.agent_config:
    state: absent
    settings:
      proxy.url:
      proxy.bypass:

- name: Set the control plane and its CA certificate, and put the proxy back to its default, in one run
  hybridops.arc.agent_config:
    settings:
      controlplane.url: https://controlplane:8443
      controlplane.cafile: /var/opt/azcmagent/controlplane-ca.pem
      proxy.url: null
    control_plane_ca:
      path: /var/opt/azcmagent/controlplane-ca.pem
      content: "{{ lookup('ansible.builtin.file', 'files/controlplane-ca.pem', rstrip=false) }}"
"""

RETURN = r"""
changes:
  description: Each setting that changed (or would change, in check mode), with its value before and after.
  returned: always
  type: dict
  sample: {"incomingconnections.ports": {"before": [], "after": ["22"]}}
config:
  description:
    - Every setting of the agent with its value after the run (predicted in check mode), as C(azcmagent config
      list -j) gives them.
  returned: success
  type: dict
  sample:
    config.mode: full
    connection.type: direct
    controlplane.cafile: ""
    controlplane.url: https://controlplane:8443
    extensions.agent.cpulimit: 5
    extensions.allowlist: []
    extensions.blocklist: []
    extensions.enabled: true
    guestconfiguration.agent.cpulimit: 5
    guestconfiguration.enabled: true
    incomingconnections.enabled: true
    incomingconnections.ports: ["22"]
    proxy.bypass: []
    proxy.url: ""
control_plane_ca:
  description:
    - With O(control_plane_ca), its file, whether the run changed (or would change) it, and what it held
      before the run (V(null) when there was no file), to set it back with.
  returned: when O(control_plane_ca) is given
  type: dict
  sample: {"path": "/var/opt/azcmagent/controlplane-ca.pem", "changed": true, "before": null}
code:
  description: The agent's AZCM error code of a failed command.
  returned: failure
  type: str
  sample: AZCM0023
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent
from ansible_collections.hybridops.arc.plugins.module_utils._desired import (
    SettingError,
    clears_plan,
    normalise_settings,
    same,
    settings_plan,
    text,
    unknown_settings,
)
from ansible_collections.hybridops.arc.plugins.module_utils._errors import AzcmagentError, error_message
from ansible_collections.hybridops.arc.plugins.module_utils._files import differs, read_text, replace


class AgentConfig:
    def __init__(self, module, agent):
        self.module = module
        self.agent = agent
        self.changes = {}
        self.applied = []
        self.restored = []
        self.ca = None

    def run(self):
        params = self.module.params
        current = self.agent.config_list()
        wanted = normalise_settings(params["settings"] or {})
        error = unknown_settings(current, wanted)
        if error:
            raise error
        if params["state"] == "absent":
            plan = self.plan_absent(current, sorted(wanted))
        else:
            plan = self.plan_present(current, dict((k, v) for k, v in wanted.items() if v is not None))
            plan += self.plan_absent(current, sorted(k for k, v in wanted.items() if v is None))
            plan.sort(key=lambda step: step[0])
        ca = params["control_plane_ca"]
        if ca:
            before = read_text(ca["path"])
            wanted_ca = ca["content"] or None
            changed = before is not None if wanted_ca is None else differs(ca["path"], wanted_ca)
            self.ca = dict(path=ca["path"], before=before, changed=changed)
        after = dict(current)
        for key, _args, predicted in plan:
            self.changes[key] = {"before": current[key], "after": predicted}
            after[key] = predicted
        if (plan or (self.ca and self.ca["changed"])) and not self.module.check_mode:
            try:
                if self.ca and self.ca["changed"]:
                    replace(ca["path"], ca["content"] or None)
                for key, args, predicted in plan:
                    answer = self.agent.run_json(" ".join(args[:3]), args)
                    self.applied.append(key)
                    self.changes[key]["after"] = answer.get("value", predicted)
            except AzcmagentError:
                if self.applied:
                    self.restore(current)
                if self.ca and self.ca["changed"]:
                    replace(ca["path"], self.ca["before"])
                raise
            if plan:
                after = self.agent.config_list()
        result = dict(
            changed=bool(plan) or bool(self.ca and self.ca["changed"]), changes=self.changes, config=after
        )
        if self.ca:
            result["control_plane_ca"] = self.ca
        if self.module._diff:
            result["diff"] = dict(
                before=dict((key, current[key]) for key in sorted(wanted)),
                after=dict((key, after[key]) for key in sorted(wanted)),
            )
        return result

    @staticmethod
    def plan_present(current, wanted):
        return [
            (key, ["config", "set", key, text(value)], predicted)
            for key, value, predicted in settings_plan(current, wanted)
        ]

    def plan_absent(self, current, names):
        if not names:
            return []
        defaults = self.agent.config_defaults()
        return [
            (key, ["config", "clear", key], defaults[key]) for key in clears_plan(current, defaults, names)
        ]

    def restore(self, before):
        """After a refused setting: set back every setting that differs from ``before``.
        ``config.mode`` goes first, as monitor mode refuses changes of the extension lists.
        What cannot be set back stays in ``self.applied`` (and so in the failure's changes)."""
        now = self.agent.config_list()
        self.applied = []
        order = sorted(before, key=lambda key: (key != "config.mode", key))
        for key in [key for key in order if not same(key, before[key], now.get(key))]:
            try:
                self.agent.run_json("config set " + key, ["config", "set", key, text(before[key])])
            except AzcmagentError:
                self.applied.append(key)
                self.changes[key] = {"before": before[key], "after": now.get(key)}
            else:
                self.restored.append(key)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            settings=dict(type="dict"),
            control_plane_ca=dict(
                type="dict",
                options=dict(path=dict(type="path", required=True), content=dict(type="str")),
            ),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_one_of=[["settings", "control_plane_ca"]],
        supports_check_mode=True,
    )
    config = AgentConfig(module, Azcmagent(module))
    try:
        result = config.run()
    except SettingError as error:
        module.fail_json(msg=str(error), changes={})
    except OSError as error:
        # Only the certificate file is written by the module itself, before any setting changes.
        module.fail_json(
            msg="writing the control plane CA certificate %s failed: %s. Nothing was changed."
            % (module.params["control_plane_ca"]["path"], error),
            changes={},
        )
    except AzcmagentError as error:
        msg = error_message(error, "the local settings of this machine")
        if config.restored:
            msg += "; set back what had changed before it: %s" % ", ".join(config.restored)
        if config.applied:
            msg += "; could not set back, still changed: %s" % ", ".join(config.applied)
        if config.ca and config.ca["changed"]:
            msg += "; the control plane CA certificate was set back"
        module.fail_json(
            msg=msg,
            code=error.code,
            changed=bool(config.applied),
            changes=dict((key, config.changes[key]) for key in config.applied),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
