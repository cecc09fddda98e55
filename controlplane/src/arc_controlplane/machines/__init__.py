"""Machines: the resource's lifecycle, its status, and its ARM representation."""
