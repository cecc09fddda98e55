"""The ``azcmagent`` command line (docs/reference/azcmagent.md)."""
