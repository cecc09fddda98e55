"""The machine's identity: its key pair, the credential the control plane issued over it, and
the files they live in (``store``). The command line and himds both use it."""
