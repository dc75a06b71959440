#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need and this
# machine lacks (scripts/install-test-deps.sh), checks clippy.toml's rules, then
# runs `cargo test --workspace`.
# Arguments go to cargo test (e.g. `bash scripts/test.sh --test lsp_fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
# The rules clippy.toml sets are part of the suite: processes that run generated
# code come only from the sandbox, and only basis_code::Workspace compares paths
# with a workspace root.
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets --quiet -- -D clippy::disallowed_methods
else
    echo "note: cargo clippy is not installed; clippy.toml's rules were not checked" >&2
fi
exec cargo test --workspace "$@"
