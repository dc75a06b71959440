#!/usr/bin/env bash
# The language server's benchmarks, on a large real repository (Django's source,
# a few thousand files, fetched from PyPI) unless one is given:
#   index build      basis-code's index vs ripgrep reading every file (rg -c),
#                    both honouring ignore files: time, files/s, ratio
#   retrieval        search latency p50/p95 over 200 docstring queries
#   responsiveness   documentSymbol (after an edit) p50/p99, idle and while a
#                    generation runs, through the real `basis lsp`
# Prints a markdown table and writes it to bench/code-results-latest.md.
#
# Usage: bench/code_bench.sh [REPO [FILE_IN_REPO]]
# Environment: SKIP_BUILD=1 uses the release binaries already in target/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { echo "== $*" >&2; }

DJANGO_VERSION=6.1.3
if [[ $# -ge 1 ]]; then
    REPO="$(realpath "$1")"
    FILE="${2:?give a file of REPO for the documentSymbol benchmark}"
else
    CACHE="${BENCH_CACHE:-$HOME/.cache/basis-bench}"
    REPO="$CACHE/django-$DJANGO_VERSION"
    FILE="django/db/models/query.py"
    if [[ ! -d "$REPO" ]]; then
        say "fetching Django $DJANGO_VERSION's source from PyPI"
        mkdir -p "$CACHE"
        python3 -m pip download --quiet --no-deps --ignore-requires-python --no-binary :all: "django==$DJANGO_VERSION" -d "$CACHE/dl" >&2
        tar -xzf "$CACHE/dl/django-$DJANGO_VERSION.tar.gz" -C "$CACHE"
    fi
fi

if ! command -v rg >/dev/null; then
    say "installing ripgrep (Debian package) as the peer"
    apt-get install -y -qq ripgrep >&2
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    say "building release binaries"
    cargo build --release --bin basis --example bench_lsp >&2
    cargo build --release -p basis-code --example bench_index >&2
fi
BASIS="$ROOT/target/release/basis"
"$BASIS" model pull >&2

THREADS="$(nproc)"
say "index: $REPO ($THREADS threads)"
INDEX_JSON="$("$ROOT/target/release/examples/bench_index" "$REPO" 3)"
# The peer: ripgrep reading every file it does not ignore (best of 3).
RG_BEST=""
for _ in 1 2 3; do
    START=$(date +%s.%N)
    rg -c --no-messages --threads "$THREADS" '[A-Za-z_]' "$REPO" >/dev/null || true
    END=$(date +%s.%N)
    T=$(python3 -c "print($END - $START)")
    RG_BEST=$(python3 -c "print(min(float('${RG_BEST:-1e9}'), $T))")
done
RG_FILES=$(rg --files "$REPO" | wc -l)

say "responsiveness: documentSymbol on $FILE"
LSP_JSON="$("$ROOT/target/release/examples/bench_lsp" "$BASIS" "$REPO" "$FILE" 200)"

TABLE="$(python3 - "$INDEX_JSON" "$LSP_JSON" "$RG_BEST" "$RG_FILES" "$REPO" <<'PY'
import json, sys
idx, lsp, rg_s, rg_files, repo = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = [
    ("index build, %d files (s)" % idx["files"], "%.2f" % idx["build_s"], "%.2f (rg -c, %d files)" % (rg_s, rg_files), "%.1f" % (idx["build_s"] / rg_s)),
    ("index build (files/s)", "%.0f" % idx["files_per_s"], "%.0f (rg)" % (rg_files / rg_s), "%.2f" % (idx["files_per_s"] / (rg_files / rg_s))),
    ("symbols indexed", str(idx["symbols"]), "", ""),
    ("retrieval p50 / p95 (ms, %d queries)" % idx["queries"], "%.2f / %.2f" % (idx["search_p50_ms"], idx["search_p95_ms"]), "", ""),
    ("retrieval: docstring's file ranked first (all / outside tests)", "%.0f%% / %.0f%%" % (100 * idx["docstring_top1"], 100 * idx["docstring_top1_code"]), "", ""),
    ("documentSymbol after an edit, idle p50 / p99 (ms)", "%.1f / %.1f" % (lsp["idle_p50_ms"], lsp["idle_p99_ms"]), "", ""),
    ("documentSymbol after an edit, generating p50 / p99 (ms)", "%.1f / %.1f" % (lsp["generating_p50_ms"], lsp["generating_p99_ms"]), "", ""),
]
print("repository: %s; documentSymbol file: %s (%d bytes); generation ran throughout: %s\n" % (repo, lsp["file"], lsp["file_bytes"], lsp["generation_ran_throughout"]))
print("| measure | basis | peer | ratio (basis/peer) |")
print("|---|---|---|---|")
for r in rows:
    print("| %s | %s | %s | %s |" % r)
PY
)"
echo "$TABLE" | tee "$ROOT/bench/code-results-latest.md"
