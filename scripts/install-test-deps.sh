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
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "installing ${missing[*]} with apt-get" >&2
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo)
    else
        echo "error: the tests need ${missing[*]}; install them (Debian/Ubuntu: apt-get install ${missing[*]}) and run this again" >&2
        exit 1
    fi
    # apt-get takes the dpkg lock itself; wait for it instead of failing.
    "${as_root[@]}" flock /tmp/basis-apt.lock sh -c \
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 ${missing[*]}"
fi

bash scripts/install-neovim.sh >&2
bash scripts/install-vscode-test.sh >&2
