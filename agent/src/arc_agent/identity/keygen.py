"""``python -m arc_agent.identity.keygen PATH``: write a new machine key to PATH, print its
public key (PEM). himds runs this at renewal, so that the ``cryptography`` package is loaded
only for the moment it takes (see ``arc_agent.identity.signer``)."""

from __future__ import annotations

import sys
from pathlib import Path

from arc_agent.errors import AzcmError
from arc_agent.identity.keys import generate_machine_key, public_key_pem, save_private_key


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m arc_agent.identity.keygen PATH", file=sys.stderr)
        return 2
    try:
        key = generate_machine_key()
        save_private_key(Path(argv[0]), key)
    except (AzcmError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(public_key_pem(key))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
