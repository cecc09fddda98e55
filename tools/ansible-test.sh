#!/usr/bin/env bash
# Runs ansible-test (sanity or units) offline on a copy of the collection laid out as
# ansible_collections/hybridops/arc, which ansible-test requires.
#   tools/ansible-test.sh sanity|units [extra ansible-test options]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: ansible-test.sh sanity|units [options]}
shift
python=${PYTHON:-$top/.venv/bin/python}
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test bootstraps pip into each of its virtual environments with a script it
# downloads; put our offline stand-in where it looks first.
pip_version=$("$python" - <<'PY'
import re, ansible_test, pathlib
src = (pathlib.Path(ansible_test.__file__).parent / '_internal/python_requirements.py').read_text()
print(re.search(r"pip='([^']+)'", src).group(1))
PY
)
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
install -m 0644 "$top/tools/ansible_test_get_pip.py" "$cache/get_pip_${pip_version//./_}.py"

# The collection as ansible-test wants to see it: only what ships, plus its tests. The copy
# lives outside this git work tree: inside it, ansible-test would ask git for the file list.
dest=${ARC_ANSIBLE_TEST_DIR:-${TMPDIR:-/tmp}/hybridops-arc.ansible-test}/ansible_collections/hybridops/arc
mkdir -p "$dest"
rsync -a --delete --delete-excluded \
  --exclude=/.git --exclude=/.venv --exclude=/build --exclude=/agent --exclude=/controlplane \
  --exclude=/benchmarks --exclude=/extensions --exclude=/molecule --exclude=tests/output --exclude=__pycache__ \
  --exclude=.ruff_cache --exclude=.mypy_cache --exclude=.pytest_cache --exclude=.hypothesis --exclude=.schemathesis --exclude='*.tar.gz' \
  "$top/" "$dest/"
cd "$dest"
# The ansible-test of the Python given (PYTHON: another ansible-core's environment, make matrix).
bin=$(dirname "$python")
export PATH=$bin:$top/.venv/bin:$PATH
case $cmd in
  sanity) exec ansible-test sanity --local --python "$pyver" --color no "$@" ;;
  units) exec ansible-test units --local --python "$pyver" --color no "$@" ;;
  *) echo "ansible-test.sh: unknown command '$cmd' (sanity or units)" >&2; exit 2 ;;
esac
