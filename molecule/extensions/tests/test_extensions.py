# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Verify of the extensions scenario, on the host (testinfra): CustomScript ran once with its
# protected command, the handler is where the handler model puts it, its CPU quota is set on its
# slice, and the protected command is in no log.


def test_customscript_ran_once_with_its_protected_command(host):
    ran = host.file("/root/molecule-customscript")
    assert ran.exists
    assert ran.content_string == "converged h1\n", "once, through converge and idempotence"


def test_the_handler_is_installed_with_root_only_settings(host):
    folder = host.file("/var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.0")
    assert folder.is_directory and folder.mode == 0o700
    settings = host.run("ls /var/lib/waagent/Microsoft.Azure.Extensions.CustomScript-2.1.0/config")
    assert settings.stdout.split() == ["1.settings"]


def test_its_slice_has_the_cpu_quota_of_extensions_agent_cpulimit(host):
    unit = "azure-vmextensions-Microsoft.Azure.Extensions.CustomScript.slice"
    quota = host.run("systemctl show -p CPUQuotaPerSecUSec " + unit)
    assert quota.stdout.strip() == "CPUQuotaPerSecUSec=50ms", "5 % of a core, the default"
    cpu_max = host.run(
        "cat /sys/fs/cgroup/azure.slice/azure-vmextensions.slice/"
        "azure-vmextensions-Microsoft.Azure.Extensions.CustomScript.slice/cpu.max 2>/dev/null || "
        "echo $(cat /sys/fs/cgroup/cpu/azure.slice/azure-vmextensions.slice/"
        "azure-vmextensions-Microsoft.Azure.Extensions.CustomScript.slice/cpu.cfs_quota_us "
        "/sys/fs/cgroup/cpu/azure.slice/azure-vmextensions.slice/"
        "azure-vmextensions-Microsoft.Azure.Extensions.CustomScript.slice/cpu.cfs_period_us)"
    )
    assert cpu_max.stdout.strip() == "5000 100000", "cpu.max (cgroup v2) or its cgroup v1 pair"


def test_the_protected_command_is_in_no_log(host):
    logs = host.run(
        "cat /var/lib/GuestConfig/ext_mgr_logs/* /var/log/azure/*/*.log; journalctl -u extd --no-pager"
    ).stdout
    assert "molecule-customscript" not in logs
