#!/usr/bin/env bash
# Install everything (idempotent) and run the test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "synalign: error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
