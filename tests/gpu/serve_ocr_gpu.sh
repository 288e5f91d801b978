#!/usr/bin/env bash
# The OCR graph built for the GPU and served by nvidia-pytriton's tritonserver, its engines on
# ONNX Runtime's CUDA provider; the same pages through a CPU build of the same models; both
# at 1 / 4 / 16 clients. Not run by CI (no GPU). On an NVIDIA GPU machine, from the root:
#   tests/gpu/serve_ocr_gpu.sh ORT_SITE WHEELS MODELS PAGES OUT [DEVICE]
# ORT_SITE: a folder with onnxruntime-gpu (ahead of any CPU onnxruntime); WHEELS: the numpy 1
# serving environment's wheels (nvidia-pytriton, numpy 1.26, opencv-python-headless 4.11,
# pyclipper, tritonclient, protobuf); MODELS: PP-OCRv5_mobile_{det,rec}_onnx PaddleX dirs
# (hpi_triton.wheel_models); PAGES: PNG pages; DEVICE: gpu (default) or cpu (a dry run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ORT_SITE=$1 WHEELS=$2 MODELS=$3 PAGES=$4 OUT=$5 DEVICE=${6:-gpu}
SITE=/tmp/hpi-gpu-site
mkdir -p "$OUT"
[ "$WHEELS" = none ] || [ -d "$SITE/numpy" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
  --target "$SITE" "$WHEELS"/*.whl
# The Python-backend stub embeds Python in isolated mode (no PYTHONPATH): a venv whose .pth
# files put the numpy 1 site and onnxruntime-gpu ahead of the machine's own packages (numpy 2).
if [ "$WHEELS" != none ]; then
  VENV=/tmp/hpi-gpu-venv
  HOST_SITE=$(python3 -c "import site; print(site.getsitepackages()[0])")
  [ -x "$VENV/bin/python3" ] || python3 -m venv --without-pip "$VENV" ||
    /usr/bin/python3 -m venv --without-pip "$VENV"
  VENV_SITE=$("$VENV/bin/python3" -c "import site; print(site.getsitepackages()[0])")
  printf '%s\n' "$SITE" "$ORT_SITE" "$HOST_SITE" > "$VENV_SITE/hpi_gpu_paths.pth"
  export PATH="$VENV/bin:$PATH"
fi
export PYTHONPATH="$ROOT" HPI_TRITON_CACHE_DIR=/tmp/hpi-gpu-cache
export PYTHONUNBUFFERED=1
hpi() { python3 -m hpi_triton.cli "$@"; }
python3 -c "import numpy, cv2, onnxruntime; print('numpy', numpy.__version__, 'cv2',
cv2.__version__, 'onnxruntime', onnxruntime.__version__, onnxruntime.get_device())"

build() {  # $1 device, $2 repo
  local started=$SECONDS
  hpi build --pipeline OCR --device "$1" --out "$2" \
    --model "TextDetection=$MODELS/${DET:-PP-OCRv5_mobile_det_onnx}" \
    --model "TextRecognition=$MODELS/PP-OCRv5_mobile_rec_onnx" 2>&1 | tail -25
  echo "build $1: $((SECONDS - started)) s"
  cp "$2/REPORT.md" "$OUT/REPORT_$1.md" 2>/dev/null || true
}

serve_and_measure() {  # $1 label, $2 repo
  # Not through the hpi function: $! must be serve itself, which SIGTERM stops.
  python3 -m hpi_triton.cli serve "$2" --http-port 18000 --grpc-port 18001 --metrics-port 18002 \
    --log-file "$OUT/server_$1.log" > "$OUT/serve_$1.out" 2>&1 &
  local pid=$!
  for _ in $(seq 1 180); do
    python3 -c "import urllib.request as u; u.urlopen('http://localhost:18000/v2/health/ready',
timeout=2)" >/dev/null 2>&1 && break
    kill -0 $pid 2>/dev/null || { echo "serve $1 exited"; tail -40 "$OUT/serve_$1.out"; return 1; }
    sleep 1
  done
  hpi infer --pipeline OCR --url localhost:18000 --output-dir "$OUT/infer_$1" "$PAGES" \
    > /dev/null 2>&1 || echo "infer $1 failed"
  [ "$1" = gpu ] && nvidia-smi --query-compute-apps=pid,used_memory --format=csv
  hpi bench --url localhost:18001 --protocol grpc --pipeline OCR --input "$PAGES" \
    --concurrency 1,4,16 --duration 15 --warmup 3 --output-dir "$OUT/bench_$1" 2>&1 | tail -12
  kill -TERM $pid; wait $pid || true
}

build "$DEVICE" /tmp/repo-"$DEVICE"
grep -h "device\|KIND_\|instance_group" -A2 /tmp/repo-"$DEVICE"/OCR_TextDetection/config.pbtxt \
  | head -12 || true
serve_and_measure "$DEVICE" /tmp/repo-"$DEVICE"
if [ "$DEVICE" = gpu ]; then
  build cpu /tmp/repo-cpu
  serve_and_measure cpu /tmp/repo-cpu
  python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
same = lines = pages = 0
for gpu_file in sorted((out / "infer_gpu").glob("*_res.json")):
    cpu_file = out / "infer_cpu" / gpu_file.name
    g = json.loads(gpu_file.read_text())["res"]
    c = json.loads(cpu_file.read_text())["res"]
    gt, ct = g.get("rec_texts", []), c.get("rec_texts", [])
    pages += 1; lines += max(len(gt), len(ct))
    same += sum(a == b for a, b in zip(gt, ct))
print(f"GPU vs CPU served: {pages} pages, rec_texts identical {same}/{lines}")
EOF
fi
