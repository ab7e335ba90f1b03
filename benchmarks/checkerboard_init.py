"""Period-2 (checkerboard) energy of every generator preset at initialisation.

The paper's central claim, measured: on a constant and on a smooth LR input, the
transposed-conv variant paints a period-2 pattern from the start; nearest x2 + conv does
not; sub-pixel convolution also does at random init (the reason for ICNR-style inits, and
for the students' anchor with a zero-initialised tail). Records
``benchmarks/results/checkerboard_init.json``.

    .venv/bin/python benchmarks/checkerboard_init.py
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from scopesr.sdk import atomic_write_text
from scopesr.trainer import create_model
from scopesr.trainer.analysis import period2_energy
from scopesr.trainer.models import presets


def main() -> None:
    torch.manual_seed(0)
    n = 24
    t = torch.linspace(0, 1, n)
    rows = []
    for name, p in presets().items():
        m = create_model(name).eval()
        c = int(getattr(m.config, "in_channels", 3))
        const = torch.full((1, c, n, n), 0.5)
        smooth = (0.3 + 0.4 * t[None, :] * t[:, None]).expand(1, c, n, n).contiguous()
        border = 4 * 10  # inner region, away from zero-padding effects
        with torch.no_grad():
            e_c = period2_energy(m(const), border=border)
            e_s = period2_energy(m(smooth), border=border)
        rows.append({"preset": name, "kind": p.kind, "constant": e_c, "smooth": e_s})
        print(f"{name:<16} constant {e_c:.3e}   smooth {e_s:.3e}")
    out = Path(__file__).resolve().parent / "results" / "checkerboard_init.json"
    atomic_write_text(
        out,
        json.dumps(
            {
                "measure": "period2_energy (trainer/analysis.py): energy of the 2x2 "
                "polyphase pattern of the high-passed output / mean square of the output",
                "input": f"{n}x{n} LR, constant 0.5 and smooth 0.3+0.4*x*y; 40 HR px border cut",
                "seed": 0,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n",
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
