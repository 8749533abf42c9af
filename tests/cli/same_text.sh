#!/bin/sh
# same_text.sh SLM PROMPT... — `slm run --backend vulkan` prints the same
# greedy text as the CPU backend (two-term activations, SLM_CPU_ACT=q8x2) for
# the default model, for each prompt (the Vulkan issue's "done when").
# Exits 0 when equal, 1 when not, 77 (ctest: skipped) without the model.
slm=$1
shift
[ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || { echo "skipped: default model not present"; exit 77; }
"$slm" info --devices 2>&1 | grep -q '^  vulkan  \[' || { echo "skipped: no device"; exit 77; }
status=0
for p in "$@"; do
  vk=$("$slm" run --backend vulkan --temp 0 -n 24 -p "$p" 2>/dev/null) || { echo "vulkan run failed: $p"; exit 1; }
  cpu=$(SLM_CPU_ACT=q8x2 "$slm" run --backend cpu --temp 0 -n 24 -p "$p" 2>/dev/null) || { echo "cpu run failed: $p"; exit 1; }
  if [ -n "$vk" ] && [ "$vk" = "$cpu" ]; then
    echo "same: $p"
  else
    printf 'differs: %s\n  vulkan: %s\n  cpu:    %s\n' "$p" "$vk" "$cpu"
    status=1
  fi
done
exit $status
