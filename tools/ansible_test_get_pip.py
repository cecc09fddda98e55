# Offline stand-in for the pip bootstrap script that ansible-test downloads
# (https://ci-files.testing.ansible.com/ansible-test/get-pip-<version>.py), which this
# machine cannot reach. tools/ansible-test.sh installs it as
# ~/.ansible/test/cache/get_pip_<version>.py, where ansible-test looks before downloading.
#
# ansible-test runs it with the interpreter of a fresh virtual environment made without pip,
# as `python get_pip.py --disable-pip-version-check pip==<version> --no-setuptools --no-wheel`.
# We bootstrap pip from the interpreter's own bundled copy (ensurepip), then let that pip
# install the exact packages ansible-test asked for from the configured package index.
from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    # ensurepip sets PIP_CONFIG_FILE to os.devnull for its own pip run; keep that out of the
    # environment of the second step, so pip still sees the machine's index configuration.
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONFIG_FILE"}
    subprocess.run(
        [sys.executable, "-m", "ensurepip", "--default-pip"], check=True, env=env, stdout=subprocess.DEVNULL
    )
    return subprocess.run([sys.executable, "-m", "pip", "install", *args], check=False, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
