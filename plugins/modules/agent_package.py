#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: agent_package
short_description: Install the Connected Machine agent's runtime from an archive of the agent bundle
version_added: 0.1.0
description:
  - Installs the agent's runtime (the agent and its locked dependencies, installed for the host's Python, as
    a virtual environment of C(/usr/bin/python3)) from one archive of the agent bundle (built by C(make
    wheelhouse), see C(docs/agent-packages.md)), which the task copies from the controller to the host.
  - In one run, under a lock that keeps concurrent runs apart, it verifies the archive's SHA-256, unpacks it
    into its own folder C(versions/<version>-<sha>) under O(prefix), next to the version in use,
    byte-compiles it with the host's Python, checks that the new runtime answers C(azcmagent version), then
    makes it current (the link C(current), switched in one rename; C(bin), C(lib), C(pyvenv.cfg) and
    C(package.json) of O(prefix) lead through it) and links O(link) to its C(azcmagent). The version it
    replaces stays as C(previous) (for a rollback); older ones are removed. A runtime of the former layout
    (O(prefix) itself a runtime) becomes the previous version. The task's temporary copy of the archive is
    removed with Ansible's temporary folder; an archive given with O(remote_src=true) is left where it is.
  - Any failure before the switch leaves the host as it was (the runtime in use is not touched); what an
    interrupted run left next to O(prefix) or in its C(versions) is removed by the next run.
  - Does nothing when the runtime at O(prefix) was installed from an archive with this SHA-256 (and the link
    is right). It does not start or restart the agent's services.
extends_documentation_fragment:
  - hybridops.arc._attributes
  - hybridops.arc._attributes.HOST_ACTION
author:
  - hybridops.arc maintainers (@hybridops)
options:
  bundle:
    description:
      - An agent bundle's folder on the controller (C(targets.json), C(SHA256SUMS) and an archive per
        target). The task picks the archive for the host's Python and machine (from O(facts)) and checks
        C(targets.json) and that archive against C(SHA256SUMS) on the controller, before the host is touched.
        A bundle that does not serve the host, or does not match its checksums, fails naming the host, its
        distribution, Python and machine, and the fix.
      - Mutually exclusive with O(src), O(checksum) and O(remote_src).
    type: path
  facts:
    description:
      - With O(bundle), the host as Ansible's facts give it (at least C(python.version), C(architecture),
        C(distribution), C(distribution_version)), or the RV(hybridops.arc.agent_info#module:host) that
        M(hybridops.arc.agent_info) returns under the same names.
    type: dict
  version:
    description: With O(bundle), the agent version the bundle must hold.
    type: str
  src:
    description:
      - The archive (C(arc-agent-VERSION-TARGET.tar.gz), the one for the host's Python and machine) on the
        controller; the task copies it to a temporary folder on the host, unless the runtime was installed
        from it already. With O(remote_src=true), the archive on the managed host.
      - Needs O(checksum). One of O(src) and O(bundle) is required.
    type: path
  remote_src:
    description: Whether O(src) is on the managed host rather than on the controller.
    type: bool
    default: false
  checksum:
    description:
      - The archive's SHA-256, as the bundle's C(targets.json) and C(SHA256SUMS) give it. An archive that does
        not match is refused and nothing is changed.
    type: str
  prefix:
    description:
      - Where the runtime goes (the real agent's directory). Its parent directory must exist.
    type: path
    default: /opt/azcmagent
  link:
    description:
      - The link to the runtime's C(azcmagent) command, on the C(PATH).
    type: path
    default: /usr/bin/azcmagent
notes:
  - The P(hybridops.arc.arc_agent#role) role runs this module in its install step; use it directly to install
    the runtime without the role.
seealso:
  - module: hybridops.arc.agent_info
"""

EXAMPLES = r"""
- name: Install the agent for the host's Python from the bundle on the controller
  hybridops.arc.agent_package:
    bundle: build/wheelhouse
    facts: "{{ ansible_facts }}"
    version: 1.64.3414.2961

- name: Install one archive of the bundle
  hybridops.arc.agent_package:
    src: build/wheelhouse/arc-agent-1.64.3414.2961-cp311-x86_64.tar.gz
    checksum: "{{ bundle.targets['cp311-x86_64'].sha256 }}"
  vars:
    bundle: "{{ lookup('ansible.builtin.file', 'build/wheelhouse/targets.json') | from_json }}"

- name: Install it from an archive already on the host
  hybridops.arc.agent_package:
    src: /var/tmp/arc-agent-1.64.3414.2961-cp311-x86_64.tar.gz
    remote_src: true
    checksum: 6c36ae7da8695be67e3cd9f7d87919667ced53f57ce2ede75d89b5912ed2bc4c
"""

RETURN = r"""
target:
  description:
    - With O(bundle), the bundle's target the host was given (or refused), C(cp<major><minor>-<machine>).
  returned: when O(bundle) is given
  type: str
  sample: cp311-x86_64
version:
  description: The agent's version in the runtime at O(prefix) after the run (what C(azcmagent version) says).
  returned: success, not in check mode
  type: str
  sample: 1.64.3414.2961
checksum:
  description: The SHA-256 of the archive the runtime at O(prefix) was installed from before the run (V("")
    when there was none, or it was installed otherwise).
  returned: always
  type: str
  sample: 6c36ae7da8695be67e3cd9f7d87919667ced53f57ce2ede75d89b5912ed2bc4c
"""

import fcntl
import glob
import json
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

LOCK = "/run/lock/hybridops-arc-agent-install.lock"
# Written into the runtime: which archive it was installed from.
RECORD = "package.json"
STAGING = ".azcmagent-"


VERSIONS = "versions"
RECOVER_SOURCE = ("arc_agent", "upgrade", "recover.sh")
CURRENT = "current"
PREVIOUS = "previous"


def installed_from(prefix):
    try:
        with open(os.path.join(prefix, RECORD)) as stream:
            return json.load(stream).get("sha256", "")
    except (OSError, ValueError, AttributeError):
        return ""


def link_is_right(link, target):
    return os.path.islink(link) and os.readlink(link) == target


def set_link(link, target):
    """Point ``link`` at ``target`` in one rename (a reader sees the old link or the new one)."""
    if link_is_right(link, target):
        return False
    temporary = link + ".hybridops-new"
    if os.path.lexists(temporary):
        os.remove(temporary)
    os.symlink(target, temporary)
    os.rename(temporary, link)
    return True


def side_by_side(prefix):
    """Whether the runtime at ``prefix`` has the side-by-side layout (a ``current`` link)."""
    return os.path.islink(os.path.join(prefix, CURRENT))


def remove_leftovers(parent, prefix):
    """What an interrupted run left: unpacked runtimes next to the prefix or in its versions."""
    for path in glob.glob(os.path.join(parent, STAGING + "*")) + glob.glob(
        os.path.join(prefix, VERSIONS, STAGING + "*")
    ):
        shutil.rmtree(path, ignore_errors=True)


def sha256(module, path):
    if not os.path.isfile(path):
        module.fail_json(msg="the agent archive %s is not on the host. Nothing was changed." % path)
    return module.sha256(path)


def unpack(module, src, parent, prefix):
    """The runtime, unpacked, compiled and answering, in a new folder in ``parent``."""
    staging = tempfile.mkdtemp(prefix=STAGING, dir=parent)
    python, cli = os.path.join(staging, "bin", "python3"), os.path.join(staging, "bin", "azcmagent")
    steps = [
        ("unpacking", ["tar", "--no-same-owner", "-xzf", src, "-C", staging]),
        # With the host's Python (the runtime's bin/python3), named as it will be found at prefix.
        ("byte-compiling", [python, "-m", "compileall", "-q", "-s", staging, "-p", prefix, staging + "/lib"]),
        ("running", [python, cli, "version"]),
    ]
    try:
        os.chmod(staging, 0o755)  # noqa: S103 - the runtime is readable by all, as /opt/azcmagent was
        for what, argv in steps:
            if what != "unpacking" and not (os.path.exists(python) and os.path.isfile(cli)):
                module.fail_json(msg="the agent archive %s is not a runtime of the agent bundle." % src)
            rc, out, err = module.run_command(
                argv, environ_update=dict(LC_ALL="C", PYTHONDONTWRITEBYTECODE="1")
            )
            if rc != 0:
                module.fail_json(
                    msg="%s the agent from %s failed (rc %d): %s. Nothing was changed: the runtime in use"
                    " is as it was." % (what, src, rc, (err or out).strip()[-2000:])
                )
        return staging, out.split()[-1] if out.strip() else ""
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def version_name(record):
    """The folder of a version under ``versions/``: ``<version>-<first 12 of its archive's SHA-256>``."""
    return "%s-%s" % (record.get("version") or "unknown", (record.get("sha256") or "unrecorded")[:12])


def read_record(folder):
    try:
        with open(os.path.join(folder, RECORD)) as stream:
            record = json.load(stream)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def link_entries(root):
    """The top-level links (``bin``, ``lib``, ``pyvenv.cfg``, ``package.json``...) through ``current``:
    every path of the runtime stays ``<prefix>/<entry>``, whichever version is current; links of
    entries the current version lacks are removed."""
    current = os.path.join(root, CURRENT)
    entries = set(os.listdir(current))
    for name in sorted(entries):
        set_link(os.path.join(root, name), os.path.join(CURRENT, name))
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name not in entries and os.path.islink(path) and os.readlink(path).startswith(CURRENT + os.sep):
            os.remove(path)


def prune(root):
    """Every version but the current and the previous one."""
    kept = set(
        os.path.basename(os.readlink(os.path.join(root, link)))
        for link in (CURRENT, PREVIOUS)
        if os.path.islink(os.path.join(root, link))
    )
    for name in os.listdir(os.path.join(root, VERSIONS)):
        if name not in kept:
            shutil.rmtree(os.path.join(root, VERSIONS, name), ignore_errors=True)


def install_recover(root, name):
    """``<prefix>/recover``: the agent's recovery script for upgrades cut short, outside every
    version (the units run it before they start; docs/agent-upgrade.md), from the new version."""
    found = glob.glob(os.path.join(root, VERSIONS, name, "lib", "python3*", "site-packages", *RECOVER_SOURCE))
    if not found:
        return
    temporary = os.path.join(root, ".recover.new")
    shutil.copyfile(found[0], temporary)
    os.chmod(temporary, 0o755)  # noqa: S103 - a root-owned script, run by root
    os.rename(temporary, os.path.join(root, "recover"))


def switch(root, name):
    """Make ``versions/<name>`` current (one rename), the version it replaces previous."""
    current = os.path.join(root, CURRENT)
    wanted = os.path.join(VERSIONS, name)
    install_recover(root, name)
    if os.path.islink(current) and os.readlink(current) != wanted:
        set_link(os.path.join(root, PREVIOUS), os.readlink(current))
    set_link(current, wanted)
    link_entries(root)
    prune(root)


def install(module, src, checksum, prefix):
    """Put the archive's runtime in ``<prefix>/versions/`` next to the one in use and make it current
    (docs/agent-packages.md, "Versions side by side"). A runtime of the former layout (the prefix
    itself a runtime) becomes the previous version, in two renames."""
    parent = os.path.dirname(prefix.rstrip("/"))
    if not os.path.isdir(parent):
        module.fail_json(
            msg="prefix %s: its folder %s does not exist. Nothing was changed." % (prefix, parent)
        )
    remove_leftovers(parent, prefix)
    found = sha256(module, src)
    if found != checksum:
        module.fail_json(
            msg="the agent archive %s does not match its checksum (SHA-256 %s, wanted %s): it was damaged or"
            " replaced on its way. Copy it again. Nothing was changed." % (src, found, checksum)
        )
    laid_out = side_by_side(prefix)
    root = prefix if laid_out else tempfile.mkdtemp(prefix=STAGING, dir=parent)
    moved = None
    try:
        versions = os.path.join(root, VERSIONS)
        if not os.path.isdir(versions):
            os.mkdir(versions)
        for folder in (root, versions):
            os.chmod(folder, 0o755)  # noqa: S103 - the runtime is readable by all
        staging, version = unpack(module, src, versions, prefix)
        record = dict(archive=os.path.basename(src), sha256=checksum, version=version)
        with open(os.path.join(staging, RECORD), "w") as stream:
            json.dump(record, stream)
        name = version_name(record)
        target = os.path.join(versions, name)
        if os.path.lexists(target):  # this version again (after a failed switch): the new copy
            shutil.rmtree(target)
        os.rename(staging, target)
        if laid_out:
            switch(root, name)
            return version
        if os.path.isdir(prefix):
            # the former layout: the runtime in use becomes the previous version
            old = version_name(read_record(prefix))
            old = old if old != name else old + "-former"
            moved = os.path.join(versions, old)
            os.rename(prefix, moved)
            set_link(os.path.join(root, CURRENT), os.path.join(VERSIONS, old))
        switch(root, name)
        os.rename(root, prefix)
    except BaseException:
        if not laid_out:
            if moved is not None and os.path.isdir(moved) and not os.path.lexists(prefix):
                os.rename(moved, prefix)  # the runtime in use back where it was
            shutil.rmtree(root, ignore_errors=True)
        raise
    return version


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bundle=dict(type="path"),
            facts=dict(type="dict"),
            version=dict(type="str"),
            src=dict(type="path"),
            remote_src=dict(type="bool", default=False),
            checksum=dict(type="str"),
            prefix=dict(type="path", default="/opt/azcmagent"),
            link=dict(type="path", default="/usr/bin/azcmagent"),
        ),
        required_one_of=[["src", "bundle"]],
        mutually_exclusive=[["src", "bundle"], ["checksum", "bundle"]],
        required_together=[["src", "checksum"]],
        required_by=dict(bundle=["facts"]),
        supports_check_mode=True,
    )
    params = module.params
    if params["bundle"]:
        module.fail_json(
            msg="bundle is read on the controller by the task's action: run the module as a task"
        )
    prefix = params["prefix"].rstrip("/")
    checksum = params["checksum"].strip().lower()
    target = os.path.join(prefix, "bin", "azcmagent")
    lock_path = LOCK if os.path.isdir(os.path.dirname(LOCK)) else os.path.join(module.tmpdir, "lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = installed_from(prefix)
        if before == checksum:
            changed = link_is_right(params["link"], target) is False
            if changed and not module.check_mode:
                set_link(params["link"], target)
            module.exit_json(changed=changed, checksum=before)
        if module.check_mode:
            module.exit_json(changed=True, checksum=before)
        version = install(module, params["src"], checksum, prefix)
        set_link(params["link"], target)
    module.exit_json(changed=True, checksum=before, version=version)


if __name__ == "__main__":
    main()
