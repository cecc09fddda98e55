# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller side of hybridops.arc.agent_upgrade with source=controller: the archive for the
host is chosen from the bundle's targets.json and checked against its SHA256SUMS here
(module_utils/_bundle.py), copied to a temporary folder on the host (not in check mode), and the
module upgrades from it. Other sources go to the module as they are."""

import os

from ansible.plugins.action import ActionBase
from ansible_collections.hybridops.arc.plugins.module_utils._bundle import choose
from ansible_collections.hybridops.arc.plugins.plugin_utils._transfer import run_with_file

MODULE = "hybridops.arc.agent_upgrade"


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        bundle, facts = args.pop("bundle", None), args.pop("facts", None)
        if (args.get("source") or "control_plane") != "controller":
            if bundle or facts:
                result.update(failed=True, msg="bundle and facts go with source=controller")
                return result
            result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
            return result
        if not bundle or not isinstance(facts, dict) or not facts:
            result.update(
                failed=True,
                msg="source=controller needs bundle (the agent bundle's folder on the controller) and facts"
                " (the host's facts, or the host that hybridops.arc.agent_info returns)",
            )
            return result
        name = (task_vars or {}).get("inventory_hostname", "")
        chosen = choose(os.path.expanduser(str(bundle)), facts, None, name=name)
        if chosen["refusal"]:
            result.update(failed=True, msg=chosen["refusal"], target=chosen["target"])
            return result
        args.update(src=chosen["archive"], checksum=chosen["sha256"], package_version=chosen["version"])
        if self._task.check_mode:
            result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
            return result
        result.update(run_with_file(self, MODULE, args, chosen["archive"], task_vars))
        return result
