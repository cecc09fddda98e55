"""The admin commands of ``arc-controlplane``: ``init``, ``sp``, ``role``, ``audit`` and ``machine``.

They work on the database directly (no server needs to run), migrate it first, and write
every change they make to the audit log as ``arc-controlplane-cli (<unix user>)``; the read-only
listings (``sp list``, ``role list``, ``audit list``, ``machine list``) write nothing.
"""
