#!/usr/bin/env bash
# The embedded model's speed and memory, and llama.cpp's on the same file
# and machine for comparison (docs/performance.md, "Embedded local model").
#
#   scripts/bench/local_model.sh [MODEL.gguf]
#
# llama.cpp comes from PyPI (llama-cpp-python, compiled by pip: about ten
# minutes on two cores the first time) into a virtual environment under
# /var/cache/switchyard; set SKIP_LLAMA_CPP=1 to leave it out.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:-${SWITCHYARD_TEST_MODEL:-/var/cache/switchyard/models/SmolLM2-135M-Instruct.Q4_1.gguf}}
if [ ! -f "$model" ]; then
  cargo run --release --quiet -p switchyard -- models pull --dest "$model"
fi
cargo build --release --quiet -p switchyard-local --example local_bench
echo "==> switchyard-local"
/usr/bin/time -f "process_peak_rss_kb %M" target/release/examples/local_bench "$model" 256 128
if [ "${SKIP_LLAMA_CPP:-0}" != 1 ]; then
  venv=${LLAMA_CPP_VENV:-/var/cache/switchyard/llama-cpp-venv}
  if ! "$venv/bin/python" -c 'import llama_cpp, numpy' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$venv/bin/pip" install -q llama-cpp-python numpy
  fi
  echo "==> llama.cpp $("$venv/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
  /usr/bin/time -f "process_peak_rss_kb %M" "$venv/bin/python" scripts/bench/llama_cpp_bench.py "$model" "$(nproc)"
fi
