# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# agent_package against real archives, a real tar and a real Python: each test builds an archive
# laid out as the agent bundle's (tools/agent-bundle.py) whose azcmagent prints its version.

import hashlib
import io
import json
import os
import sys
import tarfile

import pytest
from ansible_collections.hybridops.arc.plugins.modules import agent_package

# The interpreter itself (not a virtual environment's link to it): the archive is a venv of it.
PYTHON = os.path.realpath(sys.executable)
CLI = "import sys\nprint('azcmagent version %s')\nsys.exit(%d)\n"


def archive(path, version, rc=0):
    """An archive of the bundle's layout: pyvenv.cfg, bin/python3 (this Python), bin/azcmagent, lib/."""
    files = {
        "pyvenv.cfg": "home = %s\ninclude-system-site-packages = false\n" % os.path.dirname(PYTHON),
        "bin/azcmagent": CLI % (version, rc),
        "lib/python3/site-packages/arc_agent/__init__.py": "__version__ = %r\n" % version,
        "lib/python3/site-packages/arc_agent/upgrade/recover.sh": "#!/bin/sh\n# recover %s\n" % version,
    }
    with tarfile.open(str(path), "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo("./" + name)
            info.size, info.mode = len(data), 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("./bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, PYTHON
        tar.addfile(link)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def host(tmp_path):
    """A host's /opt, /usr/bin and the folder the archive is copied to."""
    for folder in ("opt", "usr/bin", "cache"):
        (tmp_path / folder).mkdir(parents=True)
    return tmp_path


def args(host, name, checksum):
    return dict(
        src=str(host / "cache" / name),
        checksum=checksum,
        prefix=str(host / "opt" / "azcmagent"),
        link=str(host / "usr" / "bin" / "azcmagent"),
    )


def test_installs_verifies_compiles_links_and_removes_the_archive(host, run_module):
    checksum = archive(host / "cache" / "a.tar.gz", "1.2.3")
    out = run_module(agent_package, args(host, "a.tar.gz", checksum))
    assert not out.failed, out.result
    assert out.result["changed"] is True and out.result["version"] == "1.2.3" and out.result["checksum"] == ""
    prefix = host / "opt" / "azcmagent"
    assert json.loads((prefix / "package.json").read_text()) == {
        "archive": "a.tar.gz",
        "sha256": checksum,
        "version": "1.2.3",
    }
    # side by side: the version in its folder, one link says which is current, the runtime's paths
    # (bin, lib, pyvenv.cfg, package.json) lead through it
    assert os.readlink(str(prefix / "current")) == "versions/1.2.3-" + checksum[:12]
    assert sorted(os.listdir(str(prefix / "versions"))) == ["1.2.3-" + checksum[:12]]
    assert os.readlink(str(prefix / "bin")) == "current/bin"
    assert not os.path.lexists(str(prefix / "previous"))
    # the recovery script of upgrades cut short, outside every version (the units run it)
    assert (prefix / "recover").read_text() == "#!/bin/sh\n# recover 1.2.3\n"
    assert oct((prefix / "recover").stat().st_mode & 0o777) == "0o755"
    assert os.readlink(str(host / "usr/bin/azcmagent")) == str(prefix / "bin" / "azcmagent")
    for folder in (prefix, prefix / "versions", prefix / "versions" / ("1.2.3-" + checksum[:12])):
        assert oct(folder.stat().st_mode & 0o777) == "0o755"
    compiled = list((prefix / "lib/python3/site-packages/arc_agent/__pycache__").iterdir())
    assert len(compiled) == 1 and compiled[0].name.startswith("__init__.")
    # compiled as found at the prefix, not where it was unpacked
    assert str(prefix).encode() in compiled[0].read_bytes()
    # an archive already on the host is the user's: left where it is
    assert (host / "cache" / "a.tar.gz").exists()
    assert sorted(os.listdir(str(host / "opt"))) == ["azcmagent"]


def test_the_same_archive_again_changes_nothing_and_needs_no_copy(host, run_module):
    checksum = archive(host / "cache" / "a.tar.gz", "1.2.3")
    run_module(agent_package, args(host, "a.tar.gz", checksum))
    again = run_module(agent_package, args(host, "a.tar.gz", checksum))
    assert again.result == {"changed": False, "checksum": checksum}
    os.remove(str(host / "usr/bin/azcmagent"))
    relinked = run_module(agent_package, args(host, "a.tar.gz", checksum))
    assert relinked.result["changed"] is True and os.path.islink(str(host / "usr/bin/azcmagent"))


def test_check_mode_reports_and_changes_nothing(host, run_module):
    checksum = archive(host / "cache" / "a.tar.gz", "1.2.3")
    out = run_module(agent_package, args(host, "a.tar.gz", checksum), check_mode=True)
    assert out.result["changed"] is True
    assert os.listdir(str(host / "opt")) == [] and os.listdir(str(host / "usr/bin")) == []


def answer(host):
    """What the runtime in use says, run as the host runs it: through the prefix's links."""
    prefix = host / "opt" / "azcmagent"
    return (
        os.popen("%s %s version" % (prefix / "bin" / "python3", prefix / "bin" / "azcmagent")).read().strip()
    )


def test_another_version_goes_next_to_the_runtime_and_the_previous_one_is_kept(host, run_module):
    first = archive(host / "cache" / "a.tar.gz", "1.2.3")
    run_module(agent_package, args(host, "a.tar.gz", first))
    second = archive(host / "cache" / "b.tar.gz", "1.3.0")
    out = run_module(agent_package, args(host, "b.tar.gz", second))
    assert (
        out.result["changed"] is True and out.result["version"] == "1.3.0" and out.result["checksum"] == first
    )
    prefix = host / "opt" / "azcmagent"
    assert os.readlink(str(prefix / "current")) == "versions/1.3.0-" + second[:12]
    assert os.readlink(str(prefix / "previous")) == "versions/1.2.3-" + first[:12]
    assert answer(host) == "azcmagent version 1.3.0"
    third = archive(host / "cache" / "c.tar.gz", "1.4.0")
    run_module(agent_package, args(host, "c.tar.gz", third))
    assert sorted(os.listdir(str(prefix / "versions"))) == ["1.3.0-" + second[:12], "1.4.0-" + third[:12]], (
        "older versions than the previous one are pruned"
    )
    assert sorted(os.listdir(str(host / "opt"))) == ["azcmagent"]


def former_layout(host, version):
    """A runtime as the role installed it before versions side by side: the prefix is the runtime."""
    checksum = archive(host / "cache" / "old.tar.gz", version)
    prefix = host / "opt" / "azcmagent"
    prefix.mkdir()
    with tarfile.open(str(host / "cache" / "old.tar.gz")) as tar:
        tar.extractall(str(prefix))  # noqa: S202 - the test's own archive
    (prefix / "package.json").write_text(
        json.dumps({"archive": "old.tar.gz", "sha256": checksum, "version": version})
    )
    return checksum


def test_a_runtime_of_the_former_layout_becomes_the_previous_version(host, run_module):
    old = former_layout(host, "1.1.0")
    new = archive(host / "cache" / "b.tar.gz", "1.3.0")
    out = run_module(agent_package, args(host, "b.tar.gz", new))
    assert not out.failed and out.result["checksum"] == old, out.result
    prefix = host / "opt" / "azcmagent"
    assert os.readlink(str(prefix / "current")) == "versions/1.3.0-" + new[:12]
    assert os.readlink(str(prefix / "previous")) == "versions/1.1.0-" + old[:12]
    assert (prefix / "versions" / ("1.1.0-" + old[:12]) / "bin" / "azcmagent").is_file()
    assert answer(host) == "azcmagent version 1.3.0"
    assert sorted(os.listdir(str(host / "opt"))) == ["azcmagent"]


def test_a_failed_install_leaves_the_former_layout_as_it_was(host, run_module):
    former_layout(host, "1.1.0")
    broken = archive(host / "cache" / "b.tar.gz", "1.3.0", rc=3)
    out = run_module(agent_package, args(host, "b.tar.gz", broken))
    assert out.failed and "Nothing was changed" in out.result["msg"]
    prefix = host / "opt" / "azcmagent"
    assert not os.path.islink(str(prefix / "current")) and (prefix / "pyvenv.cfg").is_file()
    assert sorted(os.listdir(str(host / "opt"))) == ["azcmagent"]


@pytest.mark.parametrize("damage", ["checksum", "runtime", "missing"])
def test_a_bad_archive_is_refused_and_the_runtime_in_use_stays(host, run_module, damage):
    first = archive(host / "cache" / "a.tar.gz", "1.2.3")
    run_module(agent_package, args(host, "a.tar.gz", first))
    checksum = archive(host / "cache" / "b.tar.gz", "1.3.0", rc=3 if damage == "runtime" else 0)
    if damage == "checksum":
        checksum = "0" * 64
    if damage == "missing":
        os.remove(str(host / "cache" / "b.tar.gz"))
    out = run_module(agent_package, args(host, "b.tar.gz", checksum))
    assert out.failed
    assert {
        "checksum": "does not match its checksum",
        "runtime": "running the agent from",
        "missing": "is not on the host",
    }[damage] in out.result["msg"]
    assert "Nothing was changed" in out.result["msg"]
    assert json.loads((host / "opt/azcmagent/package.json").read_text())["version"] == "1.2.3"
    assert sorted(os.listdir(str(host / "opt"))) == ["azcmagent"]
    assert os.listdir(str(host / "opt/azcmagent/versions")) == ["1.2.3-" + first[:12]], "nothing left"


def test_what_an_interrupted_run_left_is_removed(host, run_module):
    (host / "opt" / ".azcmagent-abc123" / "lib").mkdir(parents=True)
    checksum = archive(host / "cache" / "a.tar.gz", "1.2.3")
    out = run_module(agent_package, args(host, "a.tar.gz", checksum))
    assert out.result["changed"] is True
    assert sorted(os.listdir(str(host / "opt"))) == ["azcmagent"]


def test_a_prefix_whose_folder_does_not_exist_is_refused(host, run_module):
    checksum = archive(host / "cache" / "a.tar.gz", "1.2.3")
    out = run_module(
        agent_package, dict(args(host, "a.tar.gz", checksum), prefix=str(host / "nowhere" / "agent"))
    )
    assert out.failed and "does not exist. Nothing was changed." in out.result["msg"]


def test_back_and_forth_keeps_the_other_as_previous(host, run_module):
    first = archive(host / "cache" / "a.tar.gz", "1.2.3")
    second = archive(host / "cache" / "b.tar.gz", "1.3.0")
    for name, checksum in [("a.tar.gz", first), ("b.tar.gz", second)] * 2:
        out = run_module(agent_package, args(host, name, checksum))
        assert not out.failed, out.result
    prefix = host / "opt" / "azcmagent"
    assert os.readlink(str(prefix / "current")) == "versions/1.3.0-" + second[:12]
    assert os.readlink(str(prefix / "previous")) == "versions/1.2.3-" + first[:12]
