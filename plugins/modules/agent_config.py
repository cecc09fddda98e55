#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: agent_config
short_description: Manage the local settings of the Connected Machine agent
version_added: 0.1.0
description:
  - Sets or clears the agent's local settings (C(azcmagent config set) and C(azcmagent config clear)), such as
    C(incomingconnections.ports), C(extensions.allowlist), C(proxy.url) or C(controlplane.url).
  - Reads every setting first (C(azcmagent config list -j)), compares, and changes only the settings that
    differ.
  - The agent must be installed, for example with the P(hybridops.arc.arc_agent#role) role.
author:
  - hybridops.arc maintainers (@hybridops)
extends_documentation_fragment:
  - hybridops.arc._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the settings (and, with O(state=absent), their defaults with C(azcmagent config info -j)); runs
        no command that changes anything.
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
      - With O(state=absent), the values are ignored (write for example V(null)) and the named settings are
        cleared.
    type: dict
    required: true
  state:
    description:
      - V(present) gives each setting in O(settings) its value.
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
code:
  description: The agent's AZCM error code of a failed command.
  returned: failure
  type: str
  sample: AZCM0023
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent, AzcmagentError
from ansible_collections.hybridops.arc.plugins.module_utils._common import error_message

CASE_INSENSITIVE_VALUES = ("config.mode", "connection.type")
CASE_INSENSITIVE_ITEMS = ("extensions.allowlist", "extensions.blocklist", "proxy.bypass")
LIST_CHANGE_KEYS = ("add", "remove")


class SettingError(Exception):
    """A setting the module cannot apply as given (before any change)."""


def text(value):
    """The value as ``azcmagent config set`` takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(text(item) for item in value)
    return str(value).strip()


def fold(key, item):
    item = text(item)
    return item.lower() if key in CASE_INSENSITIVE_ITEMS else item


def same_list(key, left, right):
    return set(fold(key, i) for i in left) == set(fold(key, i) for i in right)


def same_scalar(key, current, wanted):
    if isinstance(current, bool):
        return text(wanted).lower() == text(current)
    if isinstance(current, int):
        try:
            return int(text(wanted)) == current
        except ValueError:
            return False
    if key in CASE_INSENSITIVE_VALUES:
        return text(wanted).lower() == text(current).lower()
    return text(wanted) == text(current)


def same(key, current, wanted):
    if isinstance(current, list):
        return isinstance(wanted, list) and same_list(key, current, wanted)
    return same_scalar(key, current, wanted)


def desired_list(key, current, spec):
    """The list a list setting must hold: ``spec`` is a list (or comma-separated string), or
    ``{add: [...], remove: [...]}`` applied to ``current``."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(LIST_CHANGE_KEYS))
        if unknown:
            raise SettingError(
                "%s: a change of a list takes the keys add and remove, not %s" % (key, ", ".join(unknown))
            )
        remove = set(fold(key, i) for i in as_list(key, spec.get("remove")))
        result = [i for i in current if fold(key, i) not in remove]
        present = set(fold(key, i) for i in result)
        for item in as_list(key, spec.get("add")):
            if fold(key, item) not in present:
                result.append(text(item))
                present.add(fold(key, item))
        return result
    return dedupe(key, as_list(key, spec))


def as_list(key, value):
    if value is None:
        return []
    if isinstance(value, list):
        return [text(i) for i in value]
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [i.strip() for i in text(value).split(",")] if text(value) else []
    raise SettingError("%s is a list: give a list, or a dictionary with add and remove" % key)


def dedupe(key, items):
    seen = set()
    result = []
    for item in items:
        if fold(key, item) not in seen:
            seen.add(fold(key, item))
            result.append(item)
    return result


class AgentConfig(object):
    def __init__(self, module, agent):
        self.module = module
        self.agent = agent
        self.changes = {}
        self.applied = []
        self.restored = []

    def run(self):
        params = self.module.params
        current = self.agent.config_list()
        wanted = dict((key.strip().lower(), value) for key, value in params["settings"].items())
        unknown = sorted(key for key in wanted if key not in current)
        if unknown:
            raise SettingError(
                "unknown setting %s; the agent's settings are: %s"
                % (", ".join(unknown), ", ".join(sorted(current)))
            )
        if params["state"] == "absent":
            plan = self.plan_absent(current, wanted)
        else:
            plan = self.plan_present(current, wanted)
        after = dict(current)
        for key, _args, predicted in plan:
            self.changes[key] = {"before": current[key], "after": predicted}
            after[key] = predicted
        if plan and not self.module.check_mode:
            try:
                for key, args, predicted in plan:
                    answer = self.agent.run_json(" ".join(args[:3]), args)
                    self.applied.append(key)
                    self.changes[key]["after"] = answer.get("value", predicted)
            except AzcmagentError:
                if self.applied:
                    self.restore(current)
                raise
            after = self.agent.config_list()
        result = dict(changed=bool(plan), changes=self.changes, config=after)
        if self.module._diff:
            result["diff"] = dict(
                before=dict((key, current[key]) for key in sorted(wanted)),
                after=dict((key, after[key]) for key in sorted(wanted)),
            )
        return result

    def plan_present(self, current, wanted):
        plan = []
        for key in sorted(wanted):
            spec = wanted[key]
            before = current[key]
            if isinstance(before, list):
                value = desired_list(key, before, spec)
            elif isinstance(spec, (list, dict)):
                raise SettingError("%s is not a list: give a string, number or boolean" % key)
            elif spec is None:
                raise SettingError("%s: no value given; use state=absent to clear a setting" % key)
            else:
                value = spec
            if not same(key, before, value):
                predicted = value if isinstance(value, list) else self.predict(before, value)
                plan.append((key, ["config", "set", key, text(value)], predicted))
        return plan

    def plan_absent(self, current, wanted):
        document = self.agent.run_json("config info", ["config", "info"])
        defaults = dict((item["key"], item.get("default")) for item in document.get("properties", []))
        plan = []
        for key in sorted(wanted):
            if key in defaults and not same(key, current[key], defaults[key]):
                plan.append((key, ["config", "clear", key], defaults[key]))
        return plan

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

    @staticmethod
    def predict(before, value):
        """The value as the agent would store it, typed like the current one."""
        if isinstance(before, bool):
            return text(value).lower() == "true"
        if isinstance(before, int):
            try:
                return int(text(value))
            except ValueError:
                return text(value)
        return text(value)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            settings=dict(type="dict", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    config = AgentConfig(module, Azcmagent(module))
    try:
        result = config.run()
    except SettingError as error:
        module.fail_json(msg=str(error), changes={})
    except AzcmagentError as error:
        msg = error_message(error, "the local settings of this machine")
        if config.restored:
            msg += "; set back what had changed before it: %s" % ", ".join(config.restored)
        if config.applied:
            msg += "; could not set back, still changed: %s" % ", ".join(config.applied)
        module.fail_json(
            msg=msg,
            code=error.code,
            changed=bool(config.applied),
            changes=dict((key, config.changes[key]) for key in config.applied),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
