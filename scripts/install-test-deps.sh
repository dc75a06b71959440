#!/usr/bin/env bash
# Installs what the test suite needs and this machine lacks, idempotently and
# safely when run twice at once:
# - Debian packages: bubblewrap (the sandbox and its escape probes), the system
#   Python 3 the sandbox runs Python tests with, git (review, the fixture
#   repositories); installed with apt-get (as root, or through sudo);
# - a headless Neovim under $BASIS_TOOLS (scripts/install-neovim.sh);
# - Node, code-server, playwright-core and Chromium for tests/vscode.rs
#   (scripts/install-vscode-test.sh).
# The default model is pulled by the tests themselves on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
[[ -x /usr/bin/python3 ]] || missing+=(python3)
command -v git >/dev/null || missing+=(git)
bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" "the tests" "${missing[@]}"

bash scripts/install-neovim.sh >&2
bash scripts/install-vscode-test.sh >&2
