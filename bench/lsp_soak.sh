#!/usr/bin/env bash
# A longer run of the structure-aware fuzz of tests/lsp_fuzz.rs: more seeds, more
# messages per seed. It passes when, after every seed, the server is alive, every
# request got exactly one answer and a fresh document's symbols are right; it
# prints, per seed, how the requests were answered (by error code), how long
# the seed took and the server's peak resident memory (#29's figure).
#
#   bash bench/lsp_soak.sh              # 16 seeds x 20,000 messages
#   bash bench/lsp_soak.sh 64 50000     # seeds, messages per seed
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-16}"
MESSAGES="${2:-20000}"
echo "soak: $SEEDS seeds x $MESSAGES messages" >&2
BASIS_FUZZ_SEEDS="$SEEDS" BASIS_FUZZ_MESSAGES="$MESSAGES" \
    cargo test --release --test lsp_fuzz -- --nocapture 2>&1 | grep -E '^seed|test result|panicked|FAILED'
