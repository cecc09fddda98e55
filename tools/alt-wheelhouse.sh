#!/usr/bin/env bash
# Usage: tools/alt-wheelhouse.sh OUT VERSION
# Builds the agent from agent/ as another version into the folder OUT, next to the same
# dependency and pip wheels as build/wheelhouse, with its SHA256SUMS: a package folder the
# arc_agent role installs from (arc_agent_package_dir, or served for arc_agent_package_url).
# The molecule 'alternative' scenario upgrades and downgrades between the two versions.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "alt-wheelhouse: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: tools/alt-wheelhouse.sh OUT VERSION"
out=$1 version=$2
[[ $version =~ ^[0-9]+(\.[0-9]+){1,3}$ ]] || die "VERSION must look like 1.65.3500.100, not '$version'"
[ -f "$top/build/wheelhouse/SHA256SUMS" ] || die "build/wheelhouse is missing; run: make wheelhouse"

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$top/agent/pyproject.toml" "$top/agent/README.md" "$top/agent/src" "$src/"
rm -rf "$src"/src/*.egg-info
sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$src/src/arc_agent/__init__.py"

rm -rf "$out.tmp" && mkdir -p "$out.tmp"
"$top/.venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$out.tmp" "$src"
[ -f "$out.tmp/arc_agent-$version-py3-none-any.whl" ] || die "the build made no arc_agent-$version wheel"
find "$top/build/wheelhouse" -maxdepth 1 -name '*.whl' ! -name 'arc_agent-*' -exec cp {} "$out.tmp/" \;
(cd "$out.tmp" && sha256sum -- *.whl > SHA256SUMS)
rm -rf "$out" && mv "$out.tmp" "$out"
echo "alt-wheelhouse: agent $version in $out"
