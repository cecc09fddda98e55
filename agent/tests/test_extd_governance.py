"""CPU governance of handlers (docs/extensions.md): the commands systemd is given, the quota each
handler gets, a new limit reaching slices in use, and which hosts enforce quotas. The real
enforcement is shown on a real host (tests/agent/test_agent_on_hosts.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from arc_agent.errors import AzcmError, ErrorCode
from arc_agent.extd.governance import CpuGovernor, cpu_controller, quota_of, slice_of
from arc_agent.extd.handler import Handler


def handler(
    tmp_path: Path, publisher: str = "Contoso", type_: str = "Burner", limits: object = None
) -> Handler:
    found = Handler(publisher, type_, "1.0", lib_dir=tmp_path)
    found.folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, object] = {"enableCommand": "run.sh"}
    if limits is not None:
        manifest["resourceLimits"] = limits
    (found.folder / "HandlerManifest.json").write_text(json.dumps([{"handlerManifest": manifest}]))
    return found


class Systemctl:
    """The boundary: the set-property commands the governor gives systemd."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> None:
        self.calls.append(list(argv))


def test_a_command_runs_in_a_scope_of_its_handlers_slice_with_the_quota_set_first(tmp_path: Path) -> None:
    systemctl = Systemctl()
    governor = CpuGovernor(lambda: 5, systemctl)
    burner = handler(tmp_path)
    argv = governor(burner)
    assert slice_of(burner) == "azure-vmextensions-Contoso.Burner.slice"
    assert systemctl.calls == [
        ["systemctl", "set-property", "--runtime", "azure-vmextensions-Contoso.Burner.slice", "CPUQuota=5%"]
    ]
    assert argv[:5] == [
        "systemd-run",
        "--scope",
        "--quiet",
        "--collect",
        "--slice=azure-vmextensions-Contoso.Burner.slice",
    ]
    assert argv[5].startswith("--unit=extension-") and argv[-1] == "--"
    governor(burner)
    assert len(systemctl.calls) == 1, "an unchanged quota is not set again"


def test_a_new_limit_reaches_every_slice_in_use(tmp_path: Path) -> None:
    limit = [5]
    systemctl = Systemctl()
    governor = CpuGovernor(lambda: limit[0], systemctl)
    governor(handler(tmp_path, type_="One"))
    governor(handler(tmp_path, type_="Two"))
    governor.refresh()
    assert len(systemctl.calls) == 2
    limit[0] = 20
    stop = threading.Event()
    thread = governor.watch(stop, interval=0.05)
    try:
        for _ in range(100):
            if len(systemctl.calls) == 4:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert sorted(call[-2:] for call in systemctl.calls[2:]) == [
        ["azure-vmextensions-Contoso.One.slice", "CPUQuota=20%"],
        ["azure-vmextensions-Contoso.Two.slice", "CPUQuota=20%"],
    ]


def test_the_exceptions_table_and_a_manifests_lower_limit_decide_the_quota(tmp_path: Path) -> None:
    assert quota_of(handler(tmp_path, "Microsoft.Azure.Monitor", "AzureMonitorLinuxAgent"), 5) == 60
    assert quota_of(handler(tmp_path, type_="Modest", limits={"cpuQuotaPercentage": 2}), 5) == 2
    # A manifest cannot raise its own limit above the operator's setting, nor give nonsense.
    assert quota_of(handler(tmp_path, type_="Greedy", limits={"cpuQuotaPercentage": 90}), 5) == 5
    assert quota_of(handler(tmp_path, type_="Odd", limits={"cpuQuotaPercentage": "x"}), 5) == 5
    assert quota_of(Handler("Contoso", "Missing", "1.0", lib_dir=tmp_path), 7) == 7


def test_which_hosts_enforce_quotas(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert cpu_controller(v2) is None
    (v2 / "cgroup.controllers").write_text("memory pids\n")
    assert "not enabled" in str(cpu_controller(v2))
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cgroup.procs").write_text("")
    assert cpu_controller(v1) is None  # writable (we are root or own it)
    assert "no cpu controller" in str(cpu_controller(tmp_path / "none"))


def test_an_unreadable_setting_does_not_stop_the_watch(tmp_path: Path) -> None:
    answers: list[object] = [AzcmError(ErrorCode.INVALID_ARGUMENT, "localconfig.json is not JSON"), 20]
    limits = iter(answers)

    def cpu_limit() -> int:
        answer = next(limits, 20)
        if isinstance(answer, Exception):
            raise answer
        return int(str(answer))

    systemctl = Systemctl()
    governor = CpuGovernor(cpu_limit, systemctl)
    governor._quotas["azure-vmextensions-Contoso.One.slice"] = (handler(tmp_path, type_="One"), 5)
    stop = threading.Event()
    thread = governor.watch(stop, interval=0.05)
    try:
        for _ in range(100):
            if systemctl.calls:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert systemctl.calls[0][-1] == "CPUQuota=20%", "the watch went on after the unreadable setting"


def test_an_idle_governor_reads_nothing(tmp_path: Path) -> None:
    asked: list[int] = []

    def cpu_limit() -> int:
        asked.append(1)
        return 5

    systemctl = Systemctl()
    CpuGovernor(cpu_limit, systemctl).refresh()
    assert asked == [] and systemctl.calls == [], "no handler has run: no setting read, no systemctl"
