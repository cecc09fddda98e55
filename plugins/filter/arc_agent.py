# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The arc_agent role's decisions, taken on the controller from one read of the host
# (hybridops.arc.agent_info) with the same code the modules use on the host
# (module_utils/_desired.py). The role's vars/main.yml holds data only; tasks/probe.yml asks
# arc_agent_plan once per host and every step reads the answer.

import hashlib
import os
import re

from ansible.errors import AnsibleFilterError
from ansible_collections.hybridops.arc.plugins.module_utils._desired import (
    clears_plan,
    connected_as_requested,
    credential_problems,
    given_credentials,
    is_downgrade,
    settings_differ,
    tags_differ,
)

STATES = ("present", "absent", "configured")
CONNECTION_STATES = ("connected", "disconnected", "reconnected", "unmanaged")
IDENTITY_FROM_SHOW = (
    ("tenant_id", "tenantId"),
    ("subscription_id", "subscriptionId"),
    ("resource_group", "resourceGroup"),
    ("location", "location"),
    ("resource_name", "resourceName"),
)


def _role_variable(option):
    return "arc_agent_" + option


def _text(value):
    return "" if value is None else str(value)


def _read(path):
    with open(os.path.expanduser(path), "rb") as handle:
        return handle.read()


def _sha256(content):
    return hashlib.sha256(content if isinstance(content, bytes) else content.encode("utf-8")).hexdigest()


def _release(text):
    """The numbers of a version (2.19.4, 2.20.0rc1 -> (2, 19, 4), (2, 20, 0))."""
    return tuple(int(number) for number in re.findall(r"\d+", re.split(r"[a-z]", _text(text))[0])[:3])


def arc_agent_problems(wanted, ansible_version=None, requires_ansible=None):
    """Sentences naming each role variable that is missing or inconsistent, and the fix. With
    ``ansible_version`` (the controller's) older than ``requires_ansible``, only that: the
    variables are not looked at (ansible-core itself only warns about requires_ansible)."""
    if ansible_version and requires_ansible and _release(ansible_version) < _release(requires_ansible):
        return [
            "hybridops.arc needs ansible-core %s or newer (requires_ansible in its meta/runtime.yml); this"
            " controller runs ansible-core %s. Upgrade it, e.g. pip install 'ansible-core>=%s', or use an"
            " execution environment that has it." % (requires_ansible, ansible_version, requires_ansible)
        ]
    problems = []
    connecting = wanted.get("state") == "present" and wanted.get("connection_state") in (
        "connected",
        "reconnected",
    )
    if connecting:
        missing = [
            _role_variable(option)
            for option in ("subscription_id", "resource_group", "location")
            if not wanted.get(option)
        ]
        credentials = credential_problems(wanted, required=True, name=_role_variable)
        if missing:
            problems.append(
                "arc_agent_connection_state=%s needs %s: set %s."
                % (wanted["connection_state"], ", ".join(missing), "it" if len(missing) == 1 else "them")
            )
        problems += [
            "arc_agent_connection_state=%s: %s." % (wanted["connection_state"], p) for p in credentials
        ]
    elif wanted.get("state") == "configured" and (wanted.get("tags") or wanted.get("purge_tags")):
        # Tags are changed through the management API, which needs a credential.
        credentials = credential_problems(wanted, required=True, name=_role_variable)
        problems += ["arc_agent_tags (arc_agent_state=configured): %s." % p for p in credentials]
    else:
        problems += ["%s." % p for p in credential_problems(wanted, required=False, name=_role_variable)]
    proxy_url = _text(wanted.get("proxy_url"))
    if "@" in proxy_url.split("//", 1)[-1].split("/", 1)[0]:
        problems.append(
            "arc_agent_proxy_url holds credentials: the agent's settings file is readable by every user, so"
            " proxy.url takes none. Give the proxy's URL without them, and its credentials in the services'"
            " environment (HTTPS_PROXY, docs/proxy.md)."
        )
    unknown = [
        str(group)
        for group in (wanted.get("proxy_bypass") or [])
        if str(group).lower() not in [known.lower() for known in BYPASS_GROUPS]
    ]
    if unknown:
        problems.append(
            "arc_agent_proxy_bypass names %s, which %s not a service group: use %s."
            % (", ".join(unknown), "is" if len(unknown) == 1 else "are", ", ".join(BYPASS_GROUPS))
        )
    if wanted.get("package_source") == "control_plane" and wanted.get("state") != "absent":
        if not wanted.get("control_plane_url"):
            problems.append(
                "arc_agent_package_source=control_plane downloads the agent from the control plane, whose"
                " URL arc_agent_control_plane_url does not give: set it (and arc_agent_control_plane_ca)."
            )
        if wanted.get("package_url"):
            problems.append(
                "arc_agent_package_source=control_plane and arc_agent_package_url name two sources of the"
                " agent: leave arc_agent_package_url empty, or arc_agent_package_source at controller."
            )
    ca = _text(wanted.get("control_plane_ca"))
    if ca and not os.path.isfile(os.path.expanduser(ca)):
        problems.append(
            "arc_agent_control_plane_ca=%s is not a file on the controller: give the path of the control"
            " plane CA certificate (PEM) there." % ca
        )
    return problems


def _config_wanted(wanted, ca_dest):
    """The local settings wanted: arc_agent_config plus the control plane's URL and CA; a
    setting whose value is null is to be put back to its default."""
    settings = dict(wanted.get("config") or {})
    # arc_agent_proxy_url / arc_agent_proxy_bypass: null leaves the setting alone, "" / [] clears it.
    if wanted.get("proxy_url") is not None:
        settings["proxy.url"] = _text(wanted["proxy_url"]) or None
    if wanted.get("proxy_bypass") is not None:
        settings["proxy.bypass"] = list(wanted["proxy_bypass"]) or None
    if wanted.get("control_plane_url"):
        settings["controlplane.url"] = wanted["control_plane_url"]
    if wanted.get("control_plane_ca"):
        settings["controlplane.cafile"] = ca_dest
    present = dict((key, value) for key, value in settings.items() if value is not None)
    cleared = sorted(key for key, value in settings.items() if value is None)
    return present, cleared


BYPASS_GROUPS = ("AAD", "ARM", "Arc", "AMA", "ArcData")
"""proxy.bypass's service groups (the agent's config/settings.py has the same list)."""

DOWNLOADS_PATH = "/downloads/agent"
"""Where the control plane serves each published agent version as a bundle (docs/control-plane.md)."""


GC_ENABLED = "guestconfiguration.enabled"
CONFIG_MODE = "config.mode"


def _guest_configuration_on(config, config_set, config_clear):
    """Whether machine configuration is on once the config step has run: the host's settings
    with the wanted ones (a cleared one back to its default: on, full mode)."""
    effective = dict(config)
    effective.update(config_set)
    for key in config_clear:
        effective.pop(key, None)
    enabled = effective.get(GC_ENABLED, True)
    return str(enabled).lower() not in ("false", "0") and str(effective.get(CONFIG_MODE, "full")) != "monitor"


def _package_url(wanted):
    """Where the controller downloads the bundle from (empty: the folder arc_agent_package_dir)."""
    if wanted.get("package_source") == "control_plane":
        base = _text(wanted.get("control_plane_url")).rstrip("/")
        return "%s%s/%s" % (base, DOWNLOADS_PATH, wanted.get("version")) if base else ""
    return _text(wanted.get("package_url")).rstrip("/")


def _package_source(wanted):
    url = _package_url(wanted)
    if not url:
        return _text(wanted.get("package_dir"))
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:12]  # noqa: S324 - a cache folder name, not security
    return "%s/%s-%s" % (
        os.path.expanduser(_text(wanted.get("package_cache"))),
        digest,
        wanted.get("version"),
    )


def _connection_args(wanted, show, state):
    """The connection module's options (without the credentials), from the role's variables;
    with arc_agent_state=configured the resource is the one the machine is connected to."""
    if state == "configured":
        identity = dict((option, show.get(key) or None) for option, key in IDENTITY_FROM_SHOW)
        connection_state = "connected"
    else:
        identity = dict((option, wanted.get(option) or None) for option, _key in IDENTITY_FROM_SHOW)
        connection_state = wanted.get("connection_state")
    tags_managed = bool(wanted.get("tags")) or bool(wanted.get("purge_tags"))
    disconnecting = connection_state == "disconnected"
    args = dict(
        identity,
        state="disconnected" if disconnecting else "connected",
        force_reconnect=connection_state == "reconnected",
        # Without a credential a disconnect resets this machine only (its resource stays).
        force_local_only=disconnecting and not given_credentials(wanted),
        tags=dict(wanted.get("tags") or {}) if tags_managed else None,
        purge_tags=bool(wanted.get("purge_tags")),
        gateway_id=wanted.get("gateway_id") or None,
    )
    return args, tags_managed


def _preflight_refusal(host, name, installed_version, version, wanted, families):
    """Why the agent cannot be installed on this host (``host``: what agent_info read of it), or
    "": an unwanted downgrade, not root, or not a system the agent runs on (docs/support.md)."""
    python = host.get("python") or {}
    release = python.get("version") or {}
    python_version = "%s.%s" % (release.get("major", "?"), release.get("minor", "?"))
    allowed = _text(wanted.get("allow_downgrade")).lower() in ("true", "yes", "on", "1")
    if is_downgrade(installed_version, version) and not allowed:
        return (
            "%s runs agent %s, newer than the wanted %s. Set arc_agent_allow_downgrade=true to downgrade"
            " on purpose." % (name, installed_version, version)
        )
    if _text(host.get("user_uid")) != "0":
        return (
            "%s: the role runs as %s (uid %s) there, and installing the agent needs root (/opt/azcmagent,"
            " systemd units, the himds user). Set become: true on the play (with a user that may sudo), or"
            " connect as root." % (name, host.get("user_id"), host.get("user_uid"))
        )
    supported = (
        host.get("system") == "Linux"
        and host.get("os_family") in families
        and host.get("service_mgr") == "systemd"
        and (int(release.get("major") or 0), int(release.get("minor") or 0)) >= (3, 9)
        and _text(python.get("executable")).startswith("/usr/bin/python3")
    )
    if not supported:
        return (
            "%s cannot run the Connected Machine agent: it needs Linux of the %s family with systemd as init"
            " system and the system's Python 3.9 or newer (/usr/bin/python3, which runs the agent); this host"
            " has %s %s %s, init system %s, Python %s at %s."
            % (
                name,
                " or ".join(families),
                host.get("system"),
                host.get("distribution") or "unknown",
                host.get("distribution_version") or "",
                host.get("service_mgr"),
                python_version,
                python.get("executable"),
            )
        )
    return ""


def arc_agent_plan(
    probe, wanted, ca_dest, files_wanted=None, check_mode=False, name="", families=("Debian",), problems=None
):
    """What the host has (``probe``: the result of hybridops.arc.agent_info, with the checksums
    of the files the role manages), compared with what the role's variables want: the steps to
    run, in order, and what each step needs. ``files_wanted``: path to content of the files the
    service step writes (rendered once, here, and handed to it). ``name``: the host's, for
    messages; ``families``:
    the OS families the agent supports; ``problems``: what arc_agent_problems found (then the
    host was not read, and the plan is to refuse it with them)."""
    if wanted.get("state") not in STATES:
        raise AnsibleFilterError("arc_agent_state must be one of %s" % ", ".join(STATES))
    if problems:
        return dict(steps=["refuse"], refusal=" ".join(problems), host={})
    state = wanted["state"]
    now = (probe or {}).get("arc_agent") or {"installed": False}
    installed = bool(now.get("installed"))
    show = now.get("show") or {}
    connected = installed and bool(now.get("connected"))
    services = now.get("services") or {}
    installed_version = _text(now.get("version")) if installed else ""
    version = _text(wanted.get("version"))
    needs_install = installed_version != version
    host_sums = dict(
        (path, digest) for path, digest in ((probe or {}).get("checksums") or {}).items() if digest
    )
    config_set, config_clear = _config_wanted(wanted, ca_dest)
    gc_on = _guest_configuration_on(now.get("config") or {}, config_set, config_clear)
    service_drifted = (
        needs_install
        or services.get("agentService", "") != "running"
        or services.get("extensionService", "") != "running"
        or (gc_on and services.get("gcService", "") != "running")
        or (bool(wanted.get("gateway_id")) and services.get("arcProxy", "") != "running")
        or show.get("stateDirectory", "as expected") != "as expected"
        or any(host_sums.get(path, "") != _sha256(content) for path, content in (files_wanted or {}).items())
    )
    ca = _text(wanted.get("control_plane_ca"))
    # The certificate as text, byte for byte (a PEM file is ASCII).
    ca_content = _read(ca).decode("utf-8") if ca else ""
    ca_drifted = bool(ca) and host_sums.get(ca_dest, "") != _sha256(ca_content)
    config_drifted = (
        ca_drifted
        or bool(clears_plan(now.get("config") or {}, now.get("config_defaults") or {}, config_clear))
        or (bool(config_clear) and "config_defaults" not in now)  # defaults not read: let the module see
        or settings_differ(now.get("config") or {}, config_set)
    )
    connection, tags_managed = _connection_args(wanted, show, state)
    tags_drifted = tags_managed and tags_differ(
        show.get("tags") or {}, wanted.get("tags"), wanted.get("purge_tags")
    )
    connection_state = wanted.get("connection_state")
    if state == "configured":
        connection_acts = tags_drifted
    elif connection_state == "connected":
        connection_acts = not connected_as_requested(show, connection) or tags_drifted
    else:
        connection_acts = connection_state == "reconnected" or (
            connection_state == "disconnected" and connected
        )
    can_ask = installed or not check_mode
    refusal = ""
    if state == "configured" and not connected:
        refusal = (
            "this host is not an onboarded machine (agent installed: %s, connected: %s):"
            " arc_agent_state=configured changes settings and tags of connected machines only;"
            " run hybridops.arc.onboard first" % (installed, connected)
        )
    # A refused host runs one step: refuse.yml, which fails with the refusal.
    if state == "present" and needs_install and not refusal:
        refusal = _preflight_refusal(
            dict((probe or {}).get("host") or {}),
            name or "the host",
            installed_version,
            version,
            wanted,
            families,
        )
    steps = ["refuse"] if refusal else []
    if state == "absent":
        steps = ["uninstall"]
    elif state == "present" and not refusal:
        steps += ["install"] if needs_install else []
        steps += ["service"] if service_drifted else []
    if state != "absent" and not refusal and can_ask:
        steps += ["config"] if config_drifted else []
        if connection_acts and (state == "configured" or connection_state != "unmanaged"):
            steps.append("connection")
        # The extension module compares each extension with the resource itself (one read each).
        if wanted.get("extensions") and (connected or connection_state in ("connected", "reconnected")):
            steps.append("extensions")
        # So does the machine_configuration module with each assignment.
        if wanted.get("machine_configurations") and (
            connected or connection_state in ("connected", "reconnected")
        ):
            steps.append("machine_configurations")
    return dict(
        steps=steps,
        refusal=refusal,
        installed=installed,
        installed_version=installed_version,
        downgrade=is_downgrade(installed_version, version),
        # A running agent whose versions are side by side changes version through its own upgrade
        # (hybridops.arc.agent_upgrade: health-checked, rolled back by itself); others are installed.
        upgrade_in_place=bool(
            needs_install
            and installed_version
            and now.get("side_by_side")
            and services.get("agentService") == "running"
        ),
        connected=connected,
        # The units uninstall stops (systemd names; those agent_info found installed).
        # The units the service step enables and starts: gcad only while machine configuration
        # is on (it ends by itself while it is off; docs/machine-configuration.md).
        # arcproxyd with an Arc gateway (docs/gateway.md).
        # extd and gcad are started on demand: their path units are what runs and starts at boot
        # (docs/architecture.md, "Services started on demand").
        service_units=["himdsd.service", "extd.path"]
        + (["gcad.path"] if gc_on else [])
        + (["arcproxyd.service"] if wanted.get("gateway_id") else []),
        # A path unit before its service (stopped first, it starts the service no more).
        services_installed=[
            unit
            for key, units in (
                ("agentService", ["himdsd.service"]),
                ("extensionService", _on_demand(host_sums, "extd")),
                ("gcService", _on_demand(host_sums, "gcad")),
                ("arcProxy", ["arcproxyd.service"]),
            )
            if services.get(key, "not installed") != "not installed"
            for unit in units
        ],
        # For the config step: agent_config's settings (null: back to the default) and the
        # certificate, in one module run.
        config=dict(config_set, **dict((key, None) for key in config_clear)),
        control_plane_ca=dict(path=ca_dest, content=ca_content) if ca else None,
        # For the service step: the files it writes, rendered once.
        files=[dict(path=path, content=content) for path, content in sorted((files_wanted or {}).items())],
        connection=connection,
        has_credentials=bool(
            wanted.get("service_principal_secret")
            or wanted.get("access_token")
            or wanted.get("service_principal_cert")
        ),
        package_source=_package_source(wanted),
        # For the download step (empty: nothing to download): the bundle's URL, and the CA that
        # checks its TLS certificate when it is the control plane's.
        package_url=_package_url(wanted),
        package_ca=(os.path.expanduser(ca) if ca and wanted.get("package_source") == "control_plane" else ""),
        # The host as agent_info read it (user, system, distribution, init system, Python), for the
        # install step's choice of archive, under the names of Ansible's facts.
        host=dict((probe or {}).get("host") or {}),
    )


def _on_demand(host_sums, service):
    """A service's units on the host: its path unit (when the host has it: agents set up by
    earlier releases did not) and the service."""
    path_unit = service + ".path"
    return ([path_unit] if any(path.endswith("/" + path_unit) for path in host_sums) else []) + [
        service + ".service"
    ]


def credential_problems_filter(values, required=False, prefix=""):
    """The credential rule for role or playbook variables named ``prefix`` + option."""
    return credential_problems(values, required=required, name=lambda option: prefix + option)


class FilterModule:
    def filters(self):
        return {
            "arc_agent_plan": arc_agent_plan,
            "arc_agent_problems": arc_agent_problems,
            "credential_problems": credential_problems_filter,
        }
