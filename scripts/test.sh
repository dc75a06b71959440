#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need and this
# machine lacks (scripts/install-test-deps.sh), then runs `cargo test --workspace`.
# Arguments go to cargo test (e.g. `bash scripts/test.sh --test lsp_fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
exec cargo test --workspace "$@"
