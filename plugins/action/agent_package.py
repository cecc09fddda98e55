# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller side of hybridops.arc.agent_package: the archive goes from the controller to a
temporary folder on the host, and the module installs it from there, in one task. A host whose
runtime was installed from this archive already (its package.json says so, read with one
command) gets no copy. Given a bundle, the archive for the host is chosen here, from its
targets.json and checked against its SHA256SUMS (module_utils/_bundle.py), before the host is
touched."""

import json
import os
import shlex

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible_collections.hybridops.arc.plugins.module_utils._bundle import choose
from ansible_collections.hybridops.arc.plugins.plugin_utils._transfer import run_with_file

MODULE = "hybridops.arc.agent_package"


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _requires_connection = True

    def installed_from(self, prefix):
        """The SHA-256 of the archive the runtime at prefix came from, or ""."""
        record = self._low_level_execute_command("cat %s" % shlex.quote(prefix.rstrip("/") + "/package.json"))
        try:
            return json.loads(record.get("stdout") or "{}").get("sha256", "") if record.get("rc") == 0 else ""
        except (ValueError, AttributeError):
            return ""

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        bundle, facts, version = args.pop("bundle", None), args.pop("facts", None), args.pop("version", None)
        if bundle:
            if args.get("src") or args.get("checksum") or args.get("remote_src"):
                result.update(
                    failed=True, msg="bundle and src, checksum or remote_src are mutually exclusive"
                )
                return result
            if not isinstance(facts, dict) or not facts:
                result.update(
                    failed=True,
                    msg="bundle needs facts: the host's Ansible facts, or the host that"
                    " hybridops.arc.agent_info returns (its Python and machine choose the archive)",
                )
                return result
            chosen = choose(
                os.path.expanduser(str(bundle)),
                facts,
                str(version) if version else None,
                name=(task_vars or {}).get("inventory_hostname", ""),
            )
            if chosen["refusal"]:
                result.update(failed=True, msg=chosen["refusal"], target=chosen["target"])
                return result
            args.update(src=chosen["archive"], checksum=chosen["sha256"])
            result["target"] = chosen["target"]
        elif facts is not None or version is not None:
            result.update(failed=True, msg="facts and version go with bundle")
            return result
        if args.pop("remote_src", False):
            result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
            return result
        try:
            source = self._find_needle("files", args.get("src") or "")
        except AnsibleError as error:
            result.update(failed=True, msg="the agent archive %s: %s" % (args.get("src"), error))
            return result
        wanted = (args.get("checksum") or "").strip().lower()
        if self._task.check_mode or self.installed_from(args.get("prefix") or "/opt/azcmagent") == wanted:
            # The module decides (and changes nothing in check mode) without reading the archive.
            result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
            return result
        result.update(run_with_file(self, MODULE, args, source, task_vars))
        return result
