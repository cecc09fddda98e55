#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, once. Safe to run again: it does
# nothing when every command is already there.
set -euo pipefail
declare -A pkg_for=(
  [debootstrap]=debootstrap
  [systemd-nspawn]=systemd-container
  [socat]=socat
  [ip]=iproute2
  [ssh]=openssh-client
  [curl]=curl
  [rsync]=rsync
  [sha256sum]=coreutils
  [shellcheck]=shellcheck
  [testssl]=testssl.sh      # the security suite checks the control plane's TLS with it
  [openssl]=openssl
  [tinyproxy]=tinyproxy     # the agent's proxy tests go through a real HTTP proxy
)
missing=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_for[$cmd]}")
done
# The control plane's tests start a throwaway PostgreSQL server from Debian's package.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
