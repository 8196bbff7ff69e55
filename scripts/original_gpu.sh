#!/usr/bin/env bash
# The converted authors' model, full size, on a GPU: the same table as bench/original_full_size.py on the CPU
# (random weights of the released shapes; conversion, one UNet call, 512x512 predictions at 50 / 20 / 4 steps,
# fp32 / bf16, an ensemble; then the UNet call eager vs torch.compile). Writes bench/results/original_full_size_cuda.json
# and its docs/benchmarks.md section.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
python3 bench/original_full_size.py --device cuda --work "${WORK:-/tmp/ldmseg-original-bench}"
# The UNet call per memory layout, eager vs torch.compile (fp32 and bf16): the original_compile_cuda section.
python3 bench/original_full_size.py --device cuda --work "${WORK:-/tmp/ldmseg-original-bench}" --compile-only
