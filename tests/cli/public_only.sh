#!/bin/sh
# public_only.sh CC — the front-ends of the `slm` command (run, chat, serve
# and the HTTP server, the shared CLI helpers) compile against the public
# header alone: with include/ and tools/ as the only project folders on the
# include path, so a runtime header crept into one of them fails here.
# Only `info`, `synth` and `bench` may reach the runtime (tools/cli_internal.h).
# Run from the source root. Exits 0 when all compile, 1 otherwise.
cc=${1:-cc}
status=0
for f in tools/*.c; do
  case $f in
    tools/cmd_info.c|tools/cmd_synth.c|tools/cmd_bench.c) continue ;;
  esac
  if "$cc" -std=c11 -D_GNU_SOURCE -fsyntax-only -Iinclude -Itools "$f"; then
    echo "public only: $f"
  else
    echo "reaches past slm.h: $f"
    status=1
  fi
done
exit $status
