#!/bin/sh
# public_only.sh CC [GENERATED] — the front-ends of the `slm` command (run, chat, serve
# and the HTTP server, the shared CLI helpers) compile against the public
# header alone: with include/ and tools/ as the only project folders on the
# include path, so a runtime header crept into one of them fails here.
# GENERATED, the build's generated/ folder, holds slm_commit.h (the commit
# a report names): generated, not the runtime, so it may be on the path.
# Only `info`, `synth` and `bench` may reach the runtime (tools/cli_internal.h).
# Run from the source root. Exits 0 when all compile, 1 otherwise.
cc=${1:-cc}
gen=${2:+-I$2}
status=0
for f in tools/*.c; do
  case $f in
    tools/cmd_info.c|tools/cmd_synth.c|tools/cmd_bench.c) continue ;;
  esac
  if "$cc" -std=c11 -D_GNU_SOURCE -fsyntax-only -Iinclude -Itools $gen "$f"; then
    echo "public only: $f"
  else
    echo "reaches past slm.h: $f"
    status=1
  fi
done
exit $status
