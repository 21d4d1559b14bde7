#!/usr/bin/env bash
# The test suite: set up what is missing (test extras included), then run every test.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup.sh" test
cd "$ROOT"
exec .venv/bin/python -m pytest "$@"
