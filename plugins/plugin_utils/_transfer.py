# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: what the action plugins that hand a file from the controller to
their module share."""

import os


def run_with_file(action, module, args, source, task_vars):
    """Copy ``source`` (a controller path) to a temporary folder on the host, run ``module`` with
    ``args`` and ``src`` set to the copy, remove the folder; the module's result."""
    tmpdir = action._make_tmp_path()
    try:
        remote = action._connection._shell.join_path(tmpdir, os.path.basename(source))
        action._transfer_file(source, remote)
        action._fixup_perms2((tmpdir, remote))
        return action._execute_module(module, module_args=dict(args, src=remote), task_vars=task_vars)
    finally:
        action._remove_tmp_path(tmpdir)
