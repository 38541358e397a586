# Shared set-up of the GPU scripts (sourced by gpu_all.sh and gpu_profile.sh): repo root as the
# working directory, the output folder ($OUT if set, else benchmarks/results/) in $out_dir, the
# results' stem (gpu-h100, ...) in $name, and the device and software versions printed.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out_dir="${OUT:-benchmarks/results}"
mkdir -p "$out_dir"
name="$(python3 -c 'import torch; n = torch.cuda.get_device_name(0).lower().split(); print("gpu-" + "-".join(w for w in n if w not in ("nvidia", "hbm3", "80gb")))' 2>/dev/null || echo gpu)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' || true
