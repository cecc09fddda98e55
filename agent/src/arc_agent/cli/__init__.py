"""The ``azcmagent`` command line (reference §1)."""
