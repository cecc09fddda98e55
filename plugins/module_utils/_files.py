# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: the files its modules write on the host (units, environment files,
# tmpfiles declarations, the control plane's CA certificate) are root's, mode 0644, and replaced
# atomically: a reader sees the old file or the new one, never a part.

import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes

MODE = 0o644


def read_text(path):
    """The file's text, or None when there is none."""
    try:
        with open(path, "rb") as stream:
            return stream.read().decode("utf-8")
    except OSError:
        return None


def differs(path, content):
    """Whether the file is missing or holds other bytes than ``content``, or is not root's with
    mode 0644."""
    try:
        with open(path, "rb") as stream:
            same = stream.read() == to_bytes(content)
        status = os.stat(path)
    except OSError:
        return True
    return not (same and (status.st_mode & 0o7777, status.st_uid, status.st_gid) == (MODE, 0, 0))


def replace(path, content):
    """The file as ``content`` (None: no file), root's, mode 0644, replaced atomically; its
    folder is created when missing."""
    if content is None:
        if os.path.lexists(path):
            os.remove(path)
        return
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o755)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(to_bytes(content))
        os.chmod(temporary, MODE)
        if os.geteuid() == 0:
            os.chown(temporary, 0, 0)
        os.rename(temporary, path)
    except BaseException:
        os.remove(temporary)
        raise


def readable(path):
    """Whether ``path`` can be opened for reading (by this process)."""
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False
