# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: the one wrapper around the azcmagent command line. Modules
# never call azcmagent any other way.

import json
import os
import tempfile

from ansible_collections.hybridops.arc.plugins.module_utils._errors import AzcmagentError

AZCMAGENT_DIRS = ["/opt/azcmagent/bin"]
_CLI_ENV = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": "C"}


def azcm_code(rc):
    """The AZCM code that an exit code stands for (exit code N is AZCM00NN)."""
    return "AZCM%04d" % rc


class Azcmagent:
    """Runs azcmagent with --json, an argv list and the C locale; secrets go in a --config file."""

    def __init__(self, module, binary=None):
        self.module = module
        self.binary = binary or module.get_bin_path("azcmagent", required=False, opt_dirs=AZCMAGENT_DIRS)

    @property
    def installed(self):
        """Whether azcmagent was found on this host."""
        return bool(self.binary)

    def run_json(self, operation, args, secrets=None, report_codes=()):
        """Run C(azcmagent <args> --json) and return its parsed JSON output.

        ``report_codes``: exit codes that still come with the command's report rather than an
        error (``check`` exits 26 when an endpoint is unreachable, with its table all the same).

        ``secrets`` maps flag names (as in ``--config`` files, e.g. ``service-principal-secret``)
        to values: they are written to a file of mode 0600 that is passed with ``--config``
        and removed afterwards, so they never appear on the command line.
        """
        if not self.binary:
            raise AzcmagentError(
                operation,
                "the azcmagent command was not found on this host; "
                "install the agent first (role hybridops.arc.arc_agent)",
            )
        argv = [self.binary] + list(args) + ["--json"]
        config_path = None
        try:
            if secrets:
                config_path = self._write_config(secrets)
                argv += ["--config", config_path]
            rc, out, err = self.module.run_command(argv, environ_update=_CLI_ENV)
        finally:
            if config_path:
                os.unlink(config_path)
        data = self._parse(operation, out, err, rc)
        if rc in report_codes and isinstance(data, dict) and "error" not in data:
            return data
        if rc != 0:
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                raise AzcmagentError(
                    operation,
                    error.get("message", ""),
                    code=error.get("code") or azcm_code(rc),
                    rc=rc,
                    stderr=err,
                )
            raise AzcmagentError(
                operation, (err or out).strip() or "exit code %d" % rc, code=azcm_code(rc), rc=rc, stderr=err
            )
        return data

    def config_list(self):
        """Every local setting, ``{key: value}`` with typed values (``config list -j``)."""
        document = self.run_json("config list", ["config", "list"])
        return dict((item["key"], item["value"]) for item in document.get("localsettings", []))

    def check(self):
        """What C(azcmagent check -j) found: every endpoint, reachable or not, and which way."""
        return self.run_json("check", ["check"], report_codes=(26,))

    def config_defaults(self):
        """Every local setting's default, ``{key: default}`` (``config info -j``)."""
        document = self.run_json("config info", ["config", "info"])
        return dict((item["key"], item.get("default")) for item in document.get("properties", []))

    def _write_config(self, secrets):
        # mkstemp creates the file with mode 0600 before anything is written to it.
        fd, path = tempfile.mkstemp(
            prefix="azcmagent-", suffix=".json", dir=getattr(self.module, "tmpdir", None)
        )
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(secrets, f)
        except Exception:
            os.unlink(path)
            raise
        return path

    @staticmethod
    def _parse(operation, out, err, rc):
        text = (out or "").strip()
        if not text:
            if rc == 0:
                raise AzcmagentError(operation, "no output where JSON was expected", rc=rc, stderr=err)
            return {}
        try:
            return json.loads(text)
        except ValueError:
            if rc != 0:
                return {}
            message = "output is not JSON: %s" % text[:200]
            raise AzcmagentError(operation, message, rc=rc, stderr=err) from None
