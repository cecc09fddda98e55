# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Verify of the machine_configuration scenario, on the host (testinfra): gcad runs in its own
# hardened unit, the assignment and its verified package are cached for offline evaluation, and
# Audit changed nothing: sshd_config still breaks the baseline.

import json


def test_gcad_runs_enabled_with_the_test_interval(host):
    # With the tests' 2 s interval it stays between evaluations; its path unit starts it at boot.
    gcad = host.service("gcad")
    assert gcad.is_running and host.service("gcad.path").is_enabled
    environment = host.run("systemctl show -p Environment gcad").stdout
    assert "GCAD_EVALUATION_INTERVAL_SECONDS=5" in environment


def test_the_assignment_and_its_package_are_cached_root_only(host):
    cached = host.file("/var/lib/GuestConfig/gc_state/assignments.json")
    assert cached.exists and cached.user == "root" and cached.mode == 0o600
    names = [a["name"] for a in json.loads(cached.content_string)["assignments"]]
    assert names == ["SshHardening"]
    packages = host.run("ls /var/lib/GuestConfig/Configuration/SshHardening").stdout.split()
    assert len(packages) == 1 and packages[0].endswith(".zip")


def test_audit_changed_nothing(host):
    config = host.file("/etc/ssh/sshd_config")
    assert config.mode == 0o644
    lines = config.content_string.splitlines()
    for line in ("PermitRootLogin yes", "PasswordAuthentication yes", "X11Forwarding yes", "MaxAuthTries 6"):
        assert line in lines
