#!/usr/bin/env bash
# Install everything (idempotent) and run the test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
set +e
# two workers, whole files each (module fixtures stay per file): 15 min instead of 25 on 2 cores;
# SYNALIGN_TEST_WORKERS=0 runs in one process
.venv/bin/python -m pytest -q -n "${SYNALIGN_TEST_WORKERS:-2}" --dist loadfile "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "synalign: error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
