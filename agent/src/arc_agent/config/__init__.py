"""What the agent keeps in ``/var/opt/azcmagent``: the connection state (``connection``), the
local settings (``settings``), and the directory's layout and lock (``statedir``). Shared by the
command line and the services."""
