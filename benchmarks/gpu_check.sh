#!/usr/bin/env bash
# One pass over what needs a CUDA GPU: training on cuda in fp32, bf16 autocast and
# torch.compile through `aectl train`, a resume on cuda, then the throughput benchmark.
#   bash benchmarks/gpu_check.sh [output folder]
set -uo pipefail
out=${1:-gpu-check}
mkdir -p "$out"
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
status=0
run() {  # name, overrides...
  local name=$1; shift
  local start=$(date +%s%N)
  if "$py" -m aectl train trainer.device=cuda trainer.progress=false hydra.run.dir="$out/$name" "$@" \
      > "$out/$name.log" 2>&1; then
    printf '%-28s ok   %6d ms  val loss %s\n' "$name" "$(( ($(date +%s%N) - start) / 1000000 ))" \
      "$("$py" -c "import json,sys; print(round(json.load(open(sys.argv[1]))['val']['loss'], 4))" "$out/$name/metrics.json")"
  else
    printf '%-28s FAILED (see %s)\n' "$name" "$out/$name.log"; tail -5 "$out/$name.log"; status=1
  fi
}
run vae_fp32 trainer.epochs=5
run vae_bf16 trainer.epochs=5 trainer.precision=bf16
run vae_compile trainer.epochs=5 trainer.compile=true
run vae_compile_bf16 trainer.epochs=5 trainer.compile=true trainer.precision=bf16
run conv_vae_bf16 trainer.epochs=5 model.arch=conv trainer.precision=bf16
run dae_masking model=dae noise=masking trainer.epochs=5
run vae_half trainer.epochs=2
run vae_resumed trainer.resume="$out/vae_half" trainer.epochs=5
"$py" - "$out" <<'PY' || status=1
import sys, torch
from aectl.runs.checkpoint import load_checkpoint
out = sys.argv[1]
a = load_checkpoint(f"{out}/vae_fp32")["state_dict"]
b = load_checkpoint(f"{out}/vae_resumed")["state_dict"]
diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
print(f"resumed vs uninterrupted on cuda: max |Δweight| = {diff:.3g}")
PY
PYTHONPATH=. "$py" benchmarks/throughput.py --device cuda --rounds 3 | tee "$out/throughput.txt"
exit $status
