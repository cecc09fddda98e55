#!/usr/bin/python
# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

DOCUMENTATION = r"""
module: agent_info
short_description: Read the state of the Connected Machine agent
version_added: 0.1.0
description:
  - Returns what the agent knows about itself on the managed host, from C(azcmagent show -j) and C(azcmagent
    config list -j) (and C(azcmagent version -j) when C(show) does not carry the version); whether it is
    installed and connected, its version, its local settings and the status of its services.
  - Never changes anything. On a host without the agent it returns RV(arc_agent.installed=false) without
    failing.
  - Also returns what a role needs of the host to decide whether the agent can run there (RV(host), the
    user the module runs as, the system, machine, distribution, init system and Python), under the names
    Ansible's facts use, so that one read of a host serves both and no fact gathering is needed.
author:
  - hybridops.arc maintainers (@hybridops)
extends_documentation_fragment:
  - hybridops.arc._attributes
  - hybridops.arc._attributes.INFO_MODULE
options:
  checksums:
    description:
      - Files whose SHA-256 to return in RV(checksums) (for example the files a role manages next to the
        agent), so that one read of the host tells both. A path that is not a regular file gets V("").
    type: list
    elements: path
    default: []
  config_defaults:
    description:
      - Also return every local setting's default (C(azcmagent config info -j)) in
        RV(arc_agent.config_defaults), so that a caller can tell whether putting a setting back to its default
        would change anything.
    type: bool
    default: false
  check:
    description:
      - Also check the endpoints the agent needs (C(azcmagent check -j)) and return what it found in
        RV(arc_agent.check) (each endpoint, whether it is reachable, through which proxy, its TLS version
        and time). An unreachable endpoint does not fail the module; read its C(allReachable).
    type: bool
    default: false
notes:
  - The information is returned as RV(arc_agent), not as facts, following Ansible's rule that C(_info) modules
    do not return facts. Register the result to use it.
seealso:
  - module: hybridops.arc.connection
  - module: hybridops.arc.agent_config
"""

EXAMPLES = r"""
- name: Read the agent's state
  hybridops.arc.agent_info:
  register: arc

- name: Show where the machine is connected
  ansible.builtin.debug:
    msg: "{{ arc.arc_agent.show.resourceId if arc.arc_agent.connected else 'not connected' }}"
"""

RETURN = r"""
arc_agent:
  description: The agent's state on the host.
  returned: always
  type: dict
  contains:
    installed:
      description: Whether C(azcmagent) was found on the host. When V(false), no other key is returned.
      type: bool
      returned: always
      sample: true
    connected:
      description: Whether the machine is connected to a machine resource.
      type: bool
      returned: when installed
      sample: true
    version:
      description: The agent's version, from C(azcmagent version -j).
      type: str
      returned: when installed
      sample: 1.64.3414.2961
    show:
      description: What C(azcmagent show -j) prints.
      type: dict
      returned: when installed
      sample:
        resourceName: db-07
        resourceGroup: arc-servers
        resourceId: "/subscriptions/5d3b1a52-0f6c-4c1e-9a8e-0d1f2b3c4d5e/resourceGroups/arc-servers/\
          providers/Microsoft.HybridCompute/machines/db-07"
        vmId: b7a098cc-b0b8-46e8-a205-62f301a62a8f
        status: Connected
        tags: {"env": "prod"}
        dependentServiceStatus: {"agentService": "running", "arcProxy": "running", "extensionService":
        "running",
                                 "gcService": "running"}
    config:
      description: Every local setting and its value, from C(azcmagent config list -j).
      type: dict
      returned: when installed
      sample: {"config.mode": "full", "incomingconnections.ports": ["22"], "proxy.url": ""}
    config_defaults:
      description: Every local setting's default, from C(azcmagent config info -j).
      type: dict
      returned: when installed and O(config_defaults=true)
      sample: {"config.mode": "full", "incomingconnections.ports": [], "proxy.url": ""}
    check:
      description:
        - What C(azcmagent check -j) found (docs/agent-cli.md, "check") - C(controlPlaneUrl),
          C(allReachable) and C(endpoints), each with C(endpoint), C(purpose), C(reachable), C(proxy) (empty
          for direct), C(tls), C(timeMs), C(httpStatus), C(error).
      type: dict
      returned: when installed and O(check=true)
      sample:
        controlPlaneUrl: https://controlplane:8443
        allReachable: true
        endpoints:
          - {endpoint: "https://controlplane:8443/healthz", purpose: control plane health, reachable: true,
             proxy: "http://proxy.corp:3128", tls: TLSv1.3, timeMs: 9, httpStatus: 200, error: ""}
    side_by_side:
      description:
        - Whether the runtime holds its versions side by side (C(/opt/azcmagent/current)), so that
          M(hybridops.arc.agent_upgrade) can change its version with a health check and rollback.
      type: bool
      returned: when installed
      sample: true
    services:
      description:
        - The agent's services (C(agentService), C(arcProxy), C(extensionService), C(gcService)) and their
          status, V(running), V(stopped) or V(not installed).
      type: dict
      returned: when installed
      sample: {"agentService": "running", "arcProxy": "running", "extensionService": "running", "gcService":
        "running"}
host:
  description:
    - The host, under the names of Ansible's facts (a subset of them, read from C(/etc/os-release), the
      process and the Python that runs the module). Its C(os_family) is V(Debian) for Debian and the
      distributions based on it (C(ID_LIKE)); its C(service_mgr) is V(systemd) when systemd runs as init
      system (C(/run/systemd/system) exists), else the name of process 1.
  returned: always
  type: dict
  sample:
    system: Linux
    architecture: x86_64
    distribution: Debian
    distribution_version: "12"
    distribution_release: bookworm
    os_family: Debian
    service_mgr: systemd
    user_id: root
    user_uid: 0
    python: {"executable": "/usr/bin/python3", "version": {"major": 3, "minor": 11, "micro": 2}}
checksums:
  description: The SHA-256 (hex) of each file of O(checksums), by path; an empty string for a path that is
    not a regular file.
  returned: always
  type: dict
  sample:
    /etc/systemd/system/himdsd.service: 3f5c0a9e8d7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19
code:
  description: The agent's AZCM error code when a command failed.
  returned: failure
  type: str
  sample: AZCM0006
"""

import os
import platform
import pwd
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.hybridops.arc.plugins.module_utils._azcmagent import Azcmagent
from ansible_collections.hybridops.arc.plugins.module_utils._errors import AzcmagentError, error_message

PREFIX = "/opt/azcmagent"


def agent_state(agent, defaults=False, check=False):
    if not agent.installed:
        return dict(installed=False)
    shown = agent.run_json("show", ["show"])
    # `show` carries the agent's version; `version` is asked only when it does not.
    version = shown.get("agentVersion") or agent.run_json("version", ["version"]).get("version", "")
    return dict(
        installed=True,
        connected=bool(shown.get("resourceId")),
        version=version,
        show=shown,
        config=agent.config_list(),
        services=shown.get("dependentServiceStatus") or {},
        side_by_side=os.path.islink(os.path.join(PREFIX, "current")),
        **(dict(config_defaults=agent.config_defaults()) if defaults else {}),
        **(dict(check=agent.check()) if check else {}),
    )


def os_release(path="/etc/os-release"):
    values = {}
    try:
        with open(path) as stream:
            for line in stream:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    values[key] = value.strip().strip("'\"")
    except OSError:
        pass
    return values


def init_system():
    if os.path.isdir("/run/systemd/system"):
        return "systemd"
    try:
        with open("/proc/1/comm") as stream:
            return stream.read().strip() or "unknown"
    except OSError:
        return "unknown"


def host_state(release=None):
    """The host, under the names Ansible's facts give these (see RETURN); ``release``: the fields
    of /etc/os-release."""
    release = os_release() if release is None else release
    family = [release.get("ID", "")] + release.get("ID_LIKE", "").split()
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return dict(
        system=platform.system(),
        architecture=platform.machine(),
        distribution=release.get("ID", "unknown").capitalize(),
        distribution_version=release.get("VERSION_ID", ""),
        distribution_release=release.get("VERSION_CODENAME", ""),
        os_family="Debian" if "debian" in family else (family[-1] or "unknown").capitalize(),
        service_mgr=init_system(),
        user_id=user,
        user_uid=uid,
        python=dict(
            executable=sys.executable,
            version=dict(major=sys.version_info[0], minor=sys.version_info[1], micro=sys.version_info[2]),
        ),
    )


def checksums(module, paths):
    return dict((path, module.sha256(path) if os.path.isfile(path) else "") for path in paths)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checksums=dict(type="list", elements="path", default=[]),
            config_defaults=dict(type="bool", default=False),
            check=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    try:
        state = agent_state(Azcmagent(module), module.params["config_defaults"], module.params["check"])
    except AzcmagentError as error:
        module.fail_json(msg=error_message(error, "this machine"), code=error.code)
    module.exit_json(
        changed=False,
        arc_agent=state,
        host=host_state(),
        checksums=checksums(module, module.params["checksums"]),
    )


if __name__ == "__main__":
    main()
