"""The admin commands of ``arc-controlplane``: ``init``, ``sp``, ``role`` and ``audit``.

They work on the database directly (no server needs to run), migrate it first, and write
every change they make to the audit log as ``arc-controlplane-cli (<unix user>)``.
"""
