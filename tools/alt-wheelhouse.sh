#!/usr/bin/env bash
# Usage: tools/alt-wheelhouse.sh OUT VERSION
# Builds the agent from agent/ as another version into the agent bundle OUT, for the same
# targets as build/wheelhouse and with the same locked dependencies (tools/agent-bundle.py): a
# bundle the arc_agent role installs from (arc_agent_package_dir, or served for arc_agent_package_url).
# The molecule 'alternative' scenario upgrades and downgrades between the two versions.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "alt-wheelhouse: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: tools/alt-wheelhouse.sh OUT VERSION"
out=$1 version=$2
[[ $version =~ ^[0-9]+(\.[0-9]+){1,3}$ ]] || die "VERSION must look like 1.65.3500.100, not '$version'"
[ -f "$top/build/wheelhouse/targets.json" ] || die "build/wheelhouse is missing; run: make wheelhouse"

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$top/agent/pyproject.toml" "$top/agent/README.md" "$top/agent/src" "$src/"
rm -rf "$src"/src/*.egg-info
sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$src/src/arc_agent/__init__.py"

wheel=$(mktemp -d)
trap 'rm -rf "$src" "$wheel"' EXIT
"$top/.venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$wheel" "$src"
[ -f "$wheel/arc_agent-$version-py3-none-any.whl" ] || die "the build made no arc_agent-$version wheel"
mapfile -t targets < <("$top/.venv/bin/python" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["targets"]))' \
  "$top/build/wheelhouse/targets.json")
"$top/.venv/bin/python" "$top/tools/agent-bundle.py" "$out" "$wheel/arc_agent-$version-py3-none-any.whl" "${targets[@]}" >/dev/null
echo "alt-wheelhouse: agent $version in $out"
