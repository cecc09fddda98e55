# Copyright (c) hybridops.arc contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Private to this collection: one error type per boundary the modules cross, the agent's command
# line (AzcmagentError) and the control plane's management API (ArmError). Neither is a kind of
# the other; both say which operation failed, why, and the code the other side gave.


class OperationError(Exception):
    """An operation across a boundary failed; ``code`` is the other side's error code."""

    source = "operation"

    def __init__(self, operation, message, code=None):
        super().__init__(message)
        self.operation = operation
        self.message = message
        self.code = code

    def __str__(self):
        prefix = "%s: " % self.code if self.code else ""
        return "%s %s failed: %s%s" % (self.source, self.operation, prefix, self.message)


class AzcmagentError(OperationError):
    """An azcmagent command failed; ``code`` is the agent's AZCM code when it gave one."""

    source = "azcmagent"

    def __init__(self, operation, message, code=None, rc=None, stderr=None):
        super().__init__(operation, message, code=code)
        self.rc = rc
        self.stderr = stderr


class ArmError(OperationError):
    """A management API or token service call failed; ``code`` is the ARM error code (or the
    OAuth error), ``status`` the HTTP status when there was an answer."""

    source = "management API"

    def __init__(self, operation, message, code=None, status=None):
        super().__init__(operation, message, code=code)
        self.status = status


def error_message(error, target):
    """One message for a failed operation: what, on which target, and the other side's code."""
    code = "%s: " % error.code if error.code else ""
    return "%s %s failed for %s: %s%s" % (error.source, error.operation, target, code, error.message)
