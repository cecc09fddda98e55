#!/usr/bin/env bash
# Runs galaxy-importer (what Galaxy and Automation Hub run on upload) on the built collection
# tarball. It lives in a virtual environment of its own: it pins its own ansible-lint.
#   tools/galaxy-importer.sh   (after tools/build-collection.sh)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
venv=$top/build/galaxy-importer-venv
version=0.4.44
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/pip" show -q galaxy-importer 2>/dev/null | grep -qx "Version: $version"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "galaxy-importer==$version" >"$venv.log" 2>&1 || {
    cat "$venv.log" >&2
    exit 1
  }
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config=$work/galaxy-importer.cfg
# ansible-test sanity runs in make sanity (offline); the importer would want a container for it.
printf '[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = True\n' >"$config"
tarball=$(ls "$top"/build/dist/hybridops-arc-*.tar.gz)
# It writes importer_result.json into the current directory: let that be the throwaway one.
out=$(cd "$work" && GALAXY_IMPORTER_CONFIG=$config PATH=$venv/bin:$PATH "$venv/bin/python" -m galaxy_importer.main "$tarball" 2>&1) || {
  printf '%s\n' "$out" >&2
  exit 1
}
# The importer prints "LEVEL: message" for anything above INFO; the names of the files it loads
# ("Loading module_utils _errors") are not findings.
if grep -vE '^Loading ' <<<"$out" | grep -qiE 'warning|error'; then
  printf '%s\n' "$out" >&2
  echo "galaxy-importer: warnings or errors above" >&2
  exit 1
fi
echo "galaxy-importer: $(basename "$tarball") imports cleanly"
