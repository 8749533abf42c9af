#!/usr/bin/env bash
# tests/install/exports.sh — libslm.so exports exactly the functions
# include/slm.h marks SLM_API: nothing of the runtime or the backends leaks
# (they are compiled with hidden visibility), and nothing declared is
# missing. Prints both lists' differences on failure.
# usage: exports.sh LIBSLM_SO SLM_H
set -euo pipefail

lib=$1
header=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declarations are one per line: "SLM_API <type> <name>(...".
sed -n 's/^SLM_API[^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$header" | sort >"$tmp/declared"
nm -D --defined-only "$lib" | awk '{ print $NF }' | sort >"$tmp/exported"

n=$(wc -l <"$tmp/declared")
[[ $n -gt 0 ]] || { echo "exports: no SLM_API declarations found in $header" >&2; exit 1; }
if ! diff -u --label "SLM_API in $header" --label "exported by $lib" \
    "$tmp/declared" "$tmp/exported"; then
    echo "exports: FAILED: the library's exported symbols differ from slm.h's SLM_API functions" >&2
    exit 1
fi
echo "exports: ok: $n symbols, each an SLM_API function of slm.h"
