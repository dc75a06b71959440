#!/usr/bin/env bash
# Installs Debian packages with apt-get, as root or through sudo, waiting for the
# dpkg lock instead of failing (safe when several installers run at once).
# Usage: scripts/apt-install.sh WHO PACKAGE...   (WHO names what needs them, for
# the error a machine without root or sudo gets)
set -euo pipefail
who="$1"
shift
[[ $# -gt 0 ]] || exit 0
echo "installing $* with apt-get" >&2
if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null; then
    as_root=(sudo)
else
    echo "error: $who need $*; install them (Debian/Ubuntu: apt-get install $*) and run this again" >&2
    exit 1
fi
"${as_root[@]}" flock /tmp/basis-apt.lock sh -c \
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $*" >&2
