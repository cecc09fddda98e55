#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: agent_upgrade
short_description: Upgrade the Connected Machine agent of a host, checked, with rollback
version_added: 0.2.0
description:
  - Brings the agent of the host to a version through C(azcmagent upgrade) - the new version installed next to
    the running one, switched, health-checked, and the previous version back by itself when the check fails
    or the upgrade is cut short. Identity, keys, settings and extensions are not touched.
  - The version comes from the control plane's agent package store (O(source=control_plane), checked against
    the control plane's signature), from an agent bundle on the controller (O(source=controller)), or from an
    agent bundle served over HTTPS (O(source=url)).
  - Does nothing when the host runs the version already; refuses a downgrade unless O(allow_downgrade=true).
  - A missing version, a package that does not match its checksum or signature, a refused downgrade and a
    failed health check each fail naming the cause; the host keeps the version it runs.
extends_documentation_fragment:
  - hybridops.arc._attributes
author:
  - hybridops.arc maintainers (@hybridops)
attributes:
  check_mode:
    support: full
    details:
      - Finds the version the host would get (asking the store, or reading the bundle) and reports the change;
        nothing is downloaded or installed.
  diff_mode:
    support: full
    details:
      - The agent version before and after.
  idempotent:
    support: full
options:
  version:
    description:
      - The version to run. With O(source=control_plane), V(1.66) names the newest 1.66.x the store has,
        V(1.66.3600.1) that version, V(latest) the newest.
      - With O(source=controller) or O(source=url), the version the bundle must hold (optional).
    type: str
  source:
    description:
      - Where the package comes from.
      - V(control_plane) - the control plane's agent package store (C(arc-controlplane agent publish)); the
        host must be connected.
      - V(controller) - the agent bundle in O(bundle) on the controller; the archive for the host is copied.
      - V(url) - the agent bundle served at O(bundle_url); the host downloads the archive for itself.
    type: str
    choices: [control_plane, controller, url]
    default: control_plane
  bundle:
    description:
      - With O(source=controller), the agent bundle's folder on the controller (C(targets.json), C(SHA256SUMS)
        and an archive per target); the archive for the host's Python and machine is chosen and checked
        there, from O(facts).
    type: path
  facts:
    description:
      - With O(source=controller), the host's facts (its Python and machine choose the archive), for example
        the C(host) that M(hybridops.arc.agent_info) returns.
    type: dict
  bundle_url:
    description:
      - With O(source=url), the URL of the folder that serves an agent bundle; the host reads its
        C(targets.json) and C(SHA256SUMS), then downloads the archive for itself and checks it.
    type: str
  validate_certs:
    description: With O(source=url), whether the server's certificate is checked.
    type: bool
    default: true
  url_username:
    description:
      - With O(source=url), the user name for the server's basic authentication (not in O(bundle_url), where
        it would show in the task's arguments).
    type: str
  url_password:
    description: With O(source=url), the password for the server's basic authentication.
    type: str
  allow_downgrade:
    description: Whether a version older than the one the host runs may be installed.
    type: bool
    default: false
  wait:
    description:
      - Whether to wait for the upgrade and its health check. With V(false) the module returns once the
        upgrade has started (C(azcmagent upgrade --background)); its result shows in C(azcmagent show) and in
        the machine's C(agentUpgrade.lastAttempt*).
    type: bool
    default: true
  timeout:
    description: How long, in seconds, the new version has to pass its health check (1 to 3600).
    type: int
    default: 60
  src:
    description: Set by the action plugin (O(source=controller)); the archive's path on the host.
    type: path
  checksum:
    description: Set by the action plugin (O(source=controller)); the archive's SHA-256.
    type: str
  package_version:
    description: Set by the action plugin (O(source=controller)); the agent version in the archive.
    type: str
notes:
  - Needs the agent installed in its side-by-side layout (the P(hybridops.arc.arc_agent#role) role lays it
    out). Runs as root (C(become)).
seealso:
  - module: hybridops.arc.agent_package
  - module: hybridops.arc.agent_info
"""

EXAMPLES = r"""
- name: Upgrade to the newest 1.66 the control plane publishes
  hybridops.arc.agent_upgrade:
    version: "1.66"
  become: true

- name: Upgrade from the bundle on the controller
  hybridops.arc.agent_upgrade:
    source: controller
    bundle: /srv/arc-agent/1.66.3600.1
    facts: "{{ ansible_facts }}"
  become: true

- name: Go back to an older version
  hybridops.arc.agent_upgrade:
    version: 1.64.3414.2961
    allow_downgrade: true
  become: true
"""

RETURN = r"""
version_before:
  description: The agent version the host ran.
  returned: always
  type: str
  sample: 1.64.3414.2961
version_after:
  description: The agent version the host runs now (in check mode, the one it would run).
  returned: always
  type: str
  sample: 1.66.3600.1
health:
  description:
    - The health check's result - V(passed), V(started) (O(wait=false)), V(not run) (no change), or what
      failed (the host runs RV(version_before) again).
  returned: always
  type: str
  sample: passed
"""

import os
import shutil
import tempfile
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent
from ansible_collections.hybridops.arc.plugins.module_utils._bundle import SUMS, TARGETS, parse_sums
from ansible_collections.hybridops.arc.plugins.module_utils._errors import AzcmagentError

AGENT_PYTHON = "/opt/azcmagent/bin/python3"
TARGET_PROBE = (
    "import platform, sys; v = sys.version_info; print('cp%d%d-%s' % (v[0], v[1], platform.machine()))"
)


def version_key(version):
    try:
        return tuple(int(part) for part in str(version).split("."))
    except ValueError:
        return ()


class Upgrade:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.agent = Azcmagent(module)
        self.result = dict(changed=False, version_before="", version_after="", health="not run")

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **dict(self.result, **extra))

    def running(self):
        return str(self.agent.run_json("version", ["version"]).get("version") or "")

    def target(self):
        """The version the source gives (a full version); the package arguments, if any."""
        source = self.params["source"]
        if source == "control_plane":
            if not self.params["version"]:
                self.fail("version is required with source=control_plane ('1.66', a full version, or latest)")
            asked = ["upgrade", "--version", self.params["version"], "--check"]
            check = self.agent.run_json("upgrade", asked)
            return str(check.get("to") or ""), ["--version", str(check.get("to") or "")]
        if source == "controller":
            if not self.params["src"] or not self.params["checksum"]:
                self.fail("source=controller needs bundle and facts (the action plugin picks the archive)")
            return str(self.params["package_version"] or ""), None
        return self.from_url()

    def from_url(self):
        url = (self.params["bundle_url"] or "").rstrip("/")
        if not url:
            self.fail("source=url needs bundle_url, the URL of the folder that serves the agent bundle")
        if urlsplit(url).password is not None:
            self.fail(
                "bundle_url must not hold a password (it would show in the task's arguments and logs);"
                " give it in url_username and url_password"
            )
        rc, out, err = self.module.run_command([AGENT_PYTHON, "-c", TARGET_PROBE])
        if rc != 0:
            self.fail("cannot tell this host's target with %s: %s" % (AGENT_PYTHON, (err or out).strip()))
        target = out.strip()
        try:
            targets = self.module.from_json(self.fetch(url + "/" + TARGETS).decode("utf-8"))
            sums = parse_sums(self.fetch(url + "/" + SUMS).decode("utf-8"))
        except ValueError as error:
            self.fail("the agent bundle at %s is not readable: %s" % (url, error))
        entry = (targets.get("targets") or {}).get(target) or {}
        archive, sha256 = str(entry.get("archive") or ""), str(entry.get("sha256") or "").lower()
        if not archive or sums.get(archive) != sha256:
            served = ", ".join(sorted(targets.get("targets") or {})) or "nothing"
            self.fail(
                "the agent bundle at %s has no package for this host (%s) that its SHA256SUMS confirms;"
                " it serves %s" % (url, target, served)
            )
        return str(targets.get("version") or ""), ("url", url + "/" + archive, sha256)

    def fetch(self, url, dest=None):
        from ansible.module_utils.urls import fetch_url

        response, info = fetch_url(self.module, url, timeout=60)
        if info.get("status") != 200 or response is None:
            self.fail("downloading %s failed: %s %s" % (url, info.get("status"), info.get("msg", "")))
        if dest is None:
            return response.read()
        with open(dest, "wb") as stream:
            shutil.copyfileobj(response, stream)
        return b""

    def run(self):
        params = self.params
        before = self.running()
        self.result.update(version_before=before, version_after=before)
        try:
            to, package = self.target()
        except AzcmagentError as error:
            self.fail("%s (the host keeps %s)" % (error.message, before), code=error.code)
        wanted = version_key(params["version"] or "")
        if params["source"] != "control_plane" and wanted and version_key(to)[: len(wanted)] != wanted:
            self.fail(
                "the bundle holds agent %s, not %s; the host keeps %s"
                % (to or "nothing", params["version"], before)
            )
        if version_key(to) == version_key(before):
            return self.finish()
        if version_key(to) < version_key(before) and not params["allow_downgrade"]:
            self.fail(
                "%s is older than the version the host runs (%s): a downgrade, refused; set"
                " allow_downgrade: true to install it" % (to, before)
            )
        self.result.update(changed=True, version_after=to)
        if self.module.check_mode:
            return self.finish()
        self.upgrade(to, package)
        return self.finish()

    def upgrade(self, to, package):
        params = self.params
        args = ["upgrade", "--timeout", str(params["timeout"])]
        if not params["wait"]:
            args.append("--background")
        workdir = None
        try:
            if package is None:  # from the controller: the action plugin copied it
                args += ["--package", params["src"], "--sha256", params["checksum"]]
            elif package[0] == "url":
                workdir = tempfile.mkdtemp(prefix="agent-upgrade-", dir=self.module.tmpdir)
                path = os.path.join(workdir, os.path.basename(package[1]))
                self.fetch(package[1], dest=path)
                args += ["--package", path, "--sha256", package[2]]
            else:
                args += package
            try:
                self.agent.run_json("upgrade", args)
            except AzcmagentError as error:
                now = self.running()
                changed = now != self.result["version_before"]
                self.result.update(changed=changed, version_after=now, health=error.message)
                self.fail("the upgrade to %s failed: %s" % (to, error.message), code=error.code)
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
        if params["wait"]:
            self.result.update(version_after=self.running(), health="passed")
        else:
            self.result["health"] = "started"

    def finish(self):
        if self.module._diff:
            self.result["diff"] = dict(
                before=dict(version=self.result["version_before"]),
                after=dict(version=self.result["version_after"]),
            )
        self.module.exit_json(**self.result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            version=dict(type="str"),
            source=dict(type="str", choices=["control_plane", "controller", "url"], default="control_plane"),
            bundle=dict(type="path"),
            facts=dict(type="dict"),
            bundle_url=dict(type="str"),
            validate_certs=dict(type="bool", default=True),
            url_username=dict(type="str"),
            url_password=dict(type="str", no_log=True),
            allow_downgrade=dict(type="bool", default=False),
            wait=dict(type="bool", default=True),
            timeout=dict(type="int", default=60),
            src=dict(type="path"),
            checksum=dict(type="str", no_log=False),
            package_version=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    if not 0 < module.params["timeout"] <= 3600:
        module.fail_json(msg="timeout must be 1 to 3600 seconds, not %d" % module.params["timeout"])
    upgrade = Upgrade(module)
    try:
        upgrade.run()
    except AzcmagentError as error:
        upgrade.fail(str(error), code=error.code)


if __name__ == "__main__":
    main()
