"""Run the torch-free SDK on some models and save the outputs (a helper, not a test module).

Runs inside foreign interpreters that the edge tests drive as subprocesses: the arm64
Python under qemu (tests/edge/test_qemu_arm64.py) and the tflite-runtime + numpy<2 env
(tests/edge/test_tflite_runtime.py). Only the standard library, numpy and scopesr.sdk.

    python sdk_probe.py --input x.npy --out DIR MODEL:BACKEND [MODEL:BACKEND ...]

Writes DIR/<model file name>.npy per model and DIR/env.json (machine, versions, timings).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()

    import numpy as np

    import scopesr.sdk as sdk

    x = np.load(a.input)
    a.out.mkdir(parents=True, exist_ok=True)
    env = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch_importable": importlib.util.find_spec("torch") is not None,
        "runs": {},
    }
    for mod in ("ai_edge_litert", "tflite_runtime", "onnxruntime"):
        try:
            m = importlib.import_module(mod)
            env[mod] = getattr(m, "__version__", "?")
        except ImportError:
            env[mod] = None
    for spec in a.models:
        path, backend = spec.rsplit(":", 1)
        up = sdk.load(path, backend=backend)
        t0 = time.perf_counter()
        y = up.upscale(x)
        dt = time.perf_counter() - t0
        np.save(a.out / (Path(path).name + ".npy"), y)
        try:
            desc = up.describe()
        except Exception as exc:  # informative only
            desc = repr(exc)
        env["runs"][Path(path).name] = {
            "seconds": round(dt, 3),
            "shape": list(y.shape),
            "dtype": str(y.dtype),
            "describe": desc if isinstance(desc, (dict, str)) else str(desc),
        }
    (a.out / "env.json").write_text(json.dumps(env, indent=1, default=str))
    print(json.dumps({k: v for k, v in env.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
