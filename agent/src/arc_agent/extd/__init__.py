"""The extension service (docs/extensions.md): the handler model of Azure VM extensions on this
machine, driven by the goal state of the control plane."""
