#!/usr/bin/env bash
# Builds the collection tarball and checks that build_ignore kept everything that is not the
# collection (agent/, controlplane/, benchmarks, tool config) out of it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/build/dist
rm -rf "$out" && mkdir -p "$out"
ansible-galaxy collection build --force --output-path "$out" "$top" >/dev/null
tarball=$(ls "$out"/hybridops-arc-*.tar.gz)
listing=$(tar -tzf "$tarball")
bad=$(grep -E '^(agent|configurations|controlplane|benchmarks|build|molecule|tools|\.venv|\.ci|\.config|tests/hosts|tests/output)(/|$)|^(Makefile|\.ansible-lint|ruff\.toml|requirements-dev\.txt)$' <<<"$listing" || true)
if [ -n "$bad" ]; then
  echo "build-collection: these do not belong in the collection tarball (add them to build_ignore):" >&2
  while read -r line; do printf '  %s\n' "$line" >&2; done <<<"$bad"
  exit 1
fi
for must in MANIFEST.json meta/runtime.yml roles/arc_agent/tasks/main.yml plugins/module_utils/_azcmagent.py; do
  grep -qx "$must" <<<"$listing" || { echo "build-collection: $must is missing from the tarball" >&2; exit 1; }
done
echo "build-collection: $(basename "$tarball") ($(wc -l <<<"$listing") entries, $(du -h "$tarball" | cut -f1))"
