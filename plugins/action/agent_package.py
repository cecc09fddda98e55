# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller side of hybridops.arc.agent_package: the archive goes from the controller to a
temporary folder on the host, and the module installs it from there, in one task. A host whose
runtime was installed from this archive already (its package.json says so, read with one
command) gets no copy."""

import json
import os
import shlex

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

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
        tmpdir = self._make_tmp_path()
        try:
            remote = self._connection._shell.join_path(tmpdir, os.path.basename(source))
            self._transfer_file(source, remote)
            self._fixup_perms2((tmpdir, remote))
            args["src"] = remote
            result.update(self._execute_module(MODULE, module_args=args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(tmpdir)
        return result
