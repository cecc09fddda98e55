#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: agent_service
short_description: Set up and run a service of the Connected Machine agent
version_added: 0.1.0
description:
  - Brings a service of the agent (C(himdsd.service) by default) to running, in one run, in this order, each
    only where the host differs - the service's system user and group; the files given in O(files) (its
    systemd unit, environment and C(systemd-tmpfiles) declarations, owned by root, mode C(0644), written
    atomically); the directories the O(tmpfiles) declaration names, with their owners and modes
    (C(systemd-tmpfiles --create), only when one of them differs); C(systemctl daemon-reload) when a file
    changed; enabled at boot; started, or restarted when it was running and a file changed or O(restart) is
    set.
  - Replaces a series of M(ansible.builtin.group), M(ansible.builtin.user), M(ansible.builtin.template),
    M(ansible.builtin.command) and M(ansible.builtin.systemd_service) tasks, so that a fleet pays for one
    module run per host.
extends_documentation_fragment:
  - hybridops.arc._attributes
  - hybridops.arc._attributes.HOST_ACTION
options:
  name:
    description:
      - The systemd units of the service (one, or several that share the user and the files, such as
        C(himdsd.service) and C(extd.path)); each is enabled and started, or restarted when it runs and
        a file changed.
      - A path unit (C(extd.path)) stands for a service started on demand - when it is restarted, so is its
        service (C(extd.service)) if that one runs.
    type: list
    elements: str
    default: [himdsd.service]
  user:
    description:
      - The system user the service runs as, and its group of the same name; created when missing (a system
        account without a login shell).
    type: str
    default: himds
  home:
    description: The user's home directory (not created by this module; declare it in O(tmpfiles)).
    type: path
    default: /var/opt/azcmagent
  files:
    description: Files to write, each owned by root with mode C(0644); their parent directories are created.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Where the file goes.
        type: path
        required: true
      content:
        description: What it holds.
        type: str
        required: true
  tmpfiles:
    description:
      - A C(systemd-tmpfiles) declaration (usually one of O(files)) whose directories (lines of type C(d)) are
        created, or given their owner and mode, before the service starts.
    type: path
  restart:
    description: Restart the service if it is running, also when no file changed (for example a new runtime).
    type: bool
    default: false
seealso:
  - module: hybridops.arc.agent_package
author:
  - hybridops.arc maintainers (@hybridops)
"""

EXAMPLES = r"""
- name: Set up and run himds and extd
  hybridops.arc.agent_service:
    name: [himdsd.service, extd.service]
    tmpfiles: /usr/lib/tmpfiles.d/azcmagent.conf
    files:
      - path: /usr/lib/tmpfiles.d/azcmagent.conf
        content: "d /var/opt/azcmagent 0755 root himds -\n"
      - path: /etc/systemd/system/himdsd.service
        content: "{{ lookup('ansible.builtin.template', 'himdsd.service.j2') }}"
      - path: /etc/systemd/system/extd.service
        content: "{{ lookup('ansible.builtin.template', 'extd.service.j2') }}"
"""

RETURN = r"""
changes:
  description: What the run changed (or would change, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["group himds", "user himds", "/etc/systemd/system/himdsd.service", "directories", "daemon-reload",
           "himdsd.service enabled", "himdsd.service started"]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hybridops.arc.plugins.module_utils._files import differs, read_text, replace

NOLOGIN = "/usr/sbin/nologin"


class Host:
    """The host's tools (getent, groupadd, useradd, usermod, systemd-tmpfiles, systemctl), each run
    with an argv list; a failure stops the module naming the command."""

    def __init__(self, module):
        self.module = module

    def run(self, argv, check=True):
        rc, out, err = self.module.run_command(argv, environ_update=dict(LC_ALL="C"))
        if check and rc != 0:
            self.module.fail_json(msg="%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()))
        return rc, out.strip()

    def entry(self, database, name):
        """The fields of NAME in the passwd or group database, or None."""
        rc, out = self.run(["getent", database, name], check=False)
        return out.splitlines()[0].split(":") if rc == 0 and out else None

    def ids(self, user, group):
        """uid and gid of names as a tmpfiles line gives them ("-": not declared, None: unknown)."""
        uid = "-" if user == "-" else (self.entry("passwd", user) or [None, None, None])[2]
        gid = "-" if group == "-" else (self.entry("group", group) or [None, None, None])[2]
        return uid, gid


def account(module, host, user, home, changes):
    group = host.entry("group", user)
    if group is None:
        changes.append("group " + user)
        if not module.check_mode:
            host.run(["groupadd", "--system", user])
    entry = host.entry("passwd", user)
    if entry is None:
        changes.append("user " + user)
        if not module.check_mode:
            host.run(["useradd", "--system", "--gid", user, "--home-dir", home, "--no-create-home",
                      "--shell", NOLOGIN, "--comment", "Azure Connected Machine Agent", user])  # fmt: skip
    elif group is None or (entry[3], entry[5], entry[6]) != (group[2], home, NOLOGIN):
        changes.append("user " + user)
        if not module.check_mode:
            host.run(["usermod", "--gid", user, "--home", home, "--shell", NOLOGIN, user])


def write(module, path, content):
    """True when the file differed (and, outside check mode, was written)."""
    if not differs(path, content):
        return False
    if not module.check_mode:
        replace(path, content)
    return True


def declared_directories(text, declaration):
    """(path, mode or None, user, group) of each directory (type d) of a systemd-tmpfiles
    declaration; ValueError naming the line whose mode is not octal."""
    directories = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#") or fields[0] != "d" or len(fields) < 2:
            continue
        fields += ["-"] * (5 - len(fields))
        mode = fields[2]
        try:
            wanted = None if mode == "-" else int(mode.lstrip("~"), 8)
        except ValueError:
            raise ValueError(
                "the systemd-tmpfiles declaration %s gives %s the mode %r, which is not an octal number"
                " (such as 0750). Fix the line '%s'. Nothing was changed."
                % (declaration, fields[1], mode, line.strip())
            ) from None
        directories.append((fields[1], wanted, fields[3], fields[4]))
    return directories


def directories_differ(host, directories):
    """Whether a declared directory is missing or has another mode or owner than declared."""
    for path, mode, user, group in directories:
        uid, gid = host.ids(user, group)
        try:
            status = os.stat(path)
        except OSError:
            return True
        if mode is not None and status.st_mode & 0o7777 != mode:
            return True
        if (uid, gid) != (
            "-" if uid == "-" else str(status.st_uid),
            "-" if gid == "-" else str(status.st_gid),
        ):
            return True
    return False


def service(module, host, name, files_changed, changes):
    enabled = host.run(["systemctl", "is-enabled", name], check=False)[1]
    if enabled != "enabled":
        changes.append(name + " enabled")
        if not module.check_mode:
            host.run(["systemctl", "enable", name])
    active = host.run(["systemctl", "is-active", name], check=False)[1]
    if active != "active":
        changes.append(name + " started")
        if not module.check_mode:
            host.run(["systemctl", "start", name])
    elif files_changed or module.params["restart"]:
        changes.append(name + " restarted")
        if not module.check_mode:
            host.run(["systemctl", "restart", name])
            if name.endswith(".path"):  # and the service it starts, when that one runs
                host.run(["systemctl", "try-restart", name[: -len(".path")] + ".service"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="list", elements="str", default=["himdsd.service"]),
            user=dict(type="str", default="himds"),
            home=dict(type="path", default="/var/opt/azcmagent"),
            files=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(path=dict(type="path", required=True), content=dict(type="str", required=True)),
            ),
            tmpfiles=dict(type="path"),
            restart=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    declaration = params["tmpfiles"]
    if declaration:
        given = [entry["content"] for entry in params["files"] if entry["path"] == declaration]
        try:
            directories = declared_directories(
                given[0] if given else read_text(declaration) or "", declaration
            )
        except ValueError as error:
            module.fail_json(msg=str(error), changes=[])
    host = Host(module)
    changes = []
    account(module, host, params["user"], params["home"], changes)
    written = [entry["path"] for entry in params["files"] if write(module, entry["path"], entry["content"])]
    changes += written
    if declaration and (not os.path.isfile(declaration) or directories_differ(host, directories)):
        changes.append("directories")
        if not module.check_mode:
            host.run(["systemd-tmpfiles", "--create", declaration])
    if written:
        changes.append("daemon-reload")
        if not module.check_mode:
            host.run(["systemctl", "daemon-reload"])
    for name in params["name"]:
        service(module, host, name, bool(written), changes)
    module.exit_json(changed=bool(changes), changes=changes)


if __name__ == "__main__":
    main()
