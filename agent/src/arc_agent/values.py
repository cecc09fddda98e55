"""Small value classes without ``typing.NamedTuple`` or ``dataclasses``.

The Arc proxy's resident process (docs/architecture.md, "Footprint") runs for as long as the
machine is in gateway mode, and what it imports stays in its memory: ``typing`` costs it about
0.6 MiB, ``dataclasses`` about 1.5 MiB, more than its own code. The few value classes it uses
(the gateway's settings, the proxy's, a route, a refusal) are built on :class:`Value` instead:
a class lists its fields in ``__slots__`` and sets them in a typed ``__init__``; equality, hash
and repr come from here, and a field once set cannot be set again (as a frozen dataclass's).
"""

from __future__ import annotations


class Value:
    __slots__: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    """Fields whose values ``repr`` does not show (credentials): a value may reach a log."""

    def fields(self) -> tuple[object, ...]:
        """The values of the fields, in the order of ``__slots__``."""
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Value) and other.fields() == self.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            raise AttributeError(f"{type(self).__name__}.{name} cannot be changed")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__}.{name} cannot be changed")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={'<hidden>' if name in self.hidden else repr(getattr(self, name))}"
            for name in self.__slots__
        )
        return f"{type(self).__name__}({shown})"
