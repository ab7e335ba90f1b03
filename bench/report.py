"""sr-bench output: markdown tables, the JSON file and the plot (matplotlib, else Pillow).

Formatting is kept apart from measuring so it can be tested on hand-made results.
"""

from __future__ import annotations

import io
import json
import logging
import math
import textwrap
from pathlib import Path
from typing import Any

from scopesr.sdk.atomic import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

DASH = "—"

#: The paper's own figures (Tesla K80; PSNR/SSIM on HPA test crops), quoted for context.
PAPER_TABLE3 = {"patch_s": 0.051, "image_s": 0.14, "roi_fps": 24.2, "device": "Tesla K80"}
PAPER_TABLE2 = {
    "nearest": (27.556, 0.771),
    "bicubic": (28.498, 0.810),
    "SRGAN": (32.585, 0.815),
    "modified SRGAN (paper)": (33.873, 0.832),
}


# --------------------------------------------------------------------------- numbers
def fmt_num(v: float | None, digits: int = 3) -> str:
    """Three significant digits, no exponent for ordinary magnitudes; a dash for None/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10**digits:
        return f"{v:.0f}"
    if a < 1e-4:
        return f"{v:.{digits - 1}e}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(a))))
    return f"{v:.{decimals}f}"


def fmt_count(n: float | None) -> str:
    """1234 -> 1.23 k, 2035459 -> 2.04 M."""
    if n is None:
        return DASH
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= div:
            return fmt_num(n / div) + unit
    return fmt_num(float(n)) if n != int(n) else str(int(n))


def fmt_ms(t: dict[str, Any] | None) -> str:
    """``median [min–max]`` in milliseconds from a Timing dict; a dash when not measured."""
    if not t:
        return DASH
    med, lo, hi = 1e3 * t["median_s"], 1e3 * t["min_s"], 1e3 * t["max_s"]
    if t.get("n", 0) < 2:
        return f"{fmt_num(med)} (n=1)"
    return f"{fmt_num(med)} [{fmt_num(lo)}–{fmt_num(hi)}]"


def fmt_fps(t: dict[str, Any] | None) -> str:
    """Frames per second from per-frame times: ``1/median [1/max–1/min]``."""
    if not t or not t.get("median_s"):
        return DASH
    med, lo, hi = t["median_s"], t["min_s"], t["max_s"]
    if t.get("n", 0) < 2:
        return f"{fmt_num(1.0 / med)} (n=1)"
    return f"{fmt_num(1.0 / med)} [{fmt_num(1.0 / hi)}–{fmt_num(1.0 / lo)}]"


def fmt_cell(v: Any) -> str:
    if v is None:
        return DASH
    if isinstance(v, float):
        return fmt_num(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[Any]], align: list[str] | None = None) -> str:
    """A GitHub markdown table; ``align`` per column: 'l' or 'r' (default: first l, rest r)."""
    if any(len(r) != len(headers) for r in rows):
        raise ValueError("every row needs one cell per header")
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    cells = [[fmt_cell(c) for c in r] for r in rows]
    head = "| " + " | ".join(headers) + " |"
    sep = "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"
    body = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([head, sep] + body)


# --------------------------------------------------------------------------- JSON
def _clean(o: Any) -> Any:
    """JSON has no inf/NaN: store them as strings, everything else as is."""
    if isinstance(o, float) and not math.isfinite(o):
        return "inf" if o > 0 else ("-inf" if o < 0 else "nan")
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_json(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write_text(Path(path), json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- markdown
SPEED_HEADERS = [
    "model",
    "kind",
    "runtime",
    "ch",
    "params",
    "MAC/LR px",
    "64x64 patch (ms)",
    "512x512 out, tiler (ms)",
    "tiles",
    "64x64 ROI (FPS)",
    "GFLOP/s patch",
    "GFLOP/s image",
]


def speed_rows(rows: list[dict[str, Any]], with_peak: bool = False) -> tuple[list[str], list[list[Any]]]:
    headers = list(SPEED_HEADERS) + (["% of peak"] if with_peak else [])
    out = []
    for r in rows:
        if r.get("error"):
            cells = [
                r["model"],
                r.get("kind"),
                r.get("runtime"),
                r.get("in_channels"),
                fmt_count(r.get("params")),
                fmt_count(r.get("macs_per_lr_pixel")),
                "error: " + str(r["error"])[:80],
            ] + [DASH] * (len(headers) - 7)
            out.append(cells)
            continue
        peak = r.get("peak_fraction")
        cells = [
            r["model"],
            r.get("kind"),
            r.get("runtime"),
            r.get("in_channels"),
            fmt_count(r.get("params")),
            fmt_count(r.get("macs_per_lr_pixel")),
            fmt_ms(r.get("patch")) if r.get("patch") else (r.get("patch_note") or DASH),
            fmt_ms(r.get("image")),
            r.get("tiles", DASH),
            fmt_fps(r.get("roi")),
            r.get("gflops_patch"),
            r.get("gflops_image"),
        ]
        if with_peak:
            cells.append(DASH if peak is None else f"{100 * peak:.2g} %")
        out.append(cells)
    return headers, out


def render_markdown(res: dict[str, Any]) -> str:
    """The whole report as markdown (machine, command, every table, conventions)."""
    lines = [
        "# sr-bench: the paper's Tables 2 and 3 on this machine",
        "",
        f"- **Command:** `{res['command']}`",
        f"- **When:** {res['created']} ({'quick' if res.get('quick') else 'full'} mode, "
        f"{res.get('elapsed_s', 0):.0f} s)",
        f"- **Machine:** {res['machine_line']}",
        f"- **Weights for timing:** {res['weights_note']}",
        f"- **Timing:** {res['timing_note']}",
        "",
    ]
    sp = res.get("speed")
    if sp:
        lines += [
            "## Table 3 analogue: speed",
            "",
            "Columns: one 64x64 LR patch through the runtime (ms); a 128x128 LR image to a 512x512 "
            "output through the SDK's seam-free tiler, `Upscaler.upscale` (ms, `tiles` = tiles the "
            "plan used); a 64x64 ROI of a video through `Upscaler.stream` (frames/s). Each cell: "
            "median [min–max]. GFLOP/s = 2 x MACs per LR pixel x LR pixels / median time (useful "
            "pixels only: halos are not counted). `ch` = input channels (teachers: RGB as in the "
            "paper; students and peers: one channel). Reference rows (nearest, bicubic, OpenCV peers) "
            "are runtime-independent and repeated in every table.",
            "",
            f"Paper, for context ({PAPER_TABLE3['device']}): {1e3 * PAPER_TABLE3['patch_s']:.0f} ms per "
            f"64x64 patch, {1e3 * PAPER_TABLE3['image_s']:.0f} ms per 512x512 image, "
            f"{PAPER_TABLE3['roi_fps']} FPS on a "
            "64x64 video ROI.",
            "",
        ]
        for b in sp["backends"]:
            gpu = bool(b.get("gpu"))
            title = f": {b['title']}" if b.get("title") else ""
            lines += [f"### {b['backend']}{title}", ""]
            if b.get("skipped"):
                lines += [f"Not measured: {b['skipped']}", ""]
                continue
            headers, rows = speed_rows(b["rows"] + sp.get("reference", []), with_peak=gpu)
            lines += [markdown_table(headers, rows), ""]
            notes = sorted({n for r in b["rows"] for n in r.get("notes", [])})
            for n in notes:
                lines.append(f"- {n}")
            if notes:
                lines.append("")
        if sp.get("peak_source"):
            lines += [f"GPU peaks: {sp['peak_source']}.", ""]
    gt = res.get("gpu_targets")
    if gt:
        lines += [
            "## GPU path targets",
            "",
            markdown_table(
                ["target", "goal", "measured", "settings"],
                [[t["target"], t["goal"], t["measured"], t.get("settings", DASH)] for t in gt],
            ),
            "",
        ]
    q = res.get("quality")
    if q:
        lines += quality_markdown(q)
    if res.get("plot"):
        lines += [f"![sr-bench plot]({res['plot']})", ""]
    return "\n".join(lines)


def _signed(v: float | None) -> str:
    return DASH if v is None else f"{v:+.2f}"


def quality_markdown(q: dict[str, Any]) -> list[str]:
    """Table 2 analogue: one row per degradation, every method side by side, the winner named."""
    methods, degs = q["methods"], list(q["degradations"])
    win = q.get("winners") or {}
    lines = ["## Table 2 analogue: quality per degradation", "", f"Convention: {q['convention']}", ""]
    for d, text in q["degradations"].items():
        lines.append(f"- LR `{d}`: {text}")
    lines += ["", f"Images: {q['images_note']}", ""]
    # 1. mean PSNR / SSIM, the best of each row in bold
    headers = ["LR made by"] + [m["name"] for m in methods] + ["best PSNR", "best SSIM"]
    rows = []
    for d in degs:
        w = win.get(d, {})
        row: list[Any] = [d]
        for m in methods:
            mean = m["mean"].get(d)
            if not mean:
                row.append(DASH)
                continue
            p, s = fmt_num(mean["psnr"], 4), f"{mean['ssim']:.3f}"
            p = f"**{p}**" if w.get("psnr") == m["name"] else p
            s = f"**{s}**" if w.get("ssim") == m["name"] else s
            row.append(f"{p} / {s}")
        rows.append(row + [w.get("psnr", DASH), w.get("ssim", DASH)])
    lines += [
        "Mean PSNR (dB) / SSIM (per source, then over sources); **bold**: the best of the row:",
        "",
        markdown_table(headers, rows, ["l"] + ["r"] * len(methods) + ["l", "l"]),
        "",
    ]
    # 2. gain over bicubic of every non-classic method, with its worst image
    others = [m for m in methods if m["kind"] != "classic"]
    if others:
        headers = ["LR made by"] + [m["name"] for m in others]
        rows = []
        for d in degs:
            row = [d]
            for m in others:
                mean = m["mean"].get(d)
                row.append(
                    DASH
                    if not mean
                    else f"{_signed(mean['gain_db'])} dB / SSIM {mean['ssim_gain']:+.3f}; worst "
                    f"{_signed(mean['worst_gain_db'])} dB; {mean['below_bicubic']} of {mean['n']} below"
                )
            rows.append(row)
        lines += [
            "Gain over bicubic (mean PSNR and SSIM; the worst image's PSNR gain; images where the method "
            "is below bicubic):",
            "",
            markdown_table(headers, rows),
            "",
        ]
    # 3. per image detail: one table per degradation, images as rows, methods as columns
    for d in degs:
        headers = ["image", "kind", "held out"] + [m_["name"] for m_ in methods]
        rows = []
        for im in q["images"]:
            row = [f"{im['name']} {'x'.join(map(str, im['shape'][:2]))} {im['dtype']}", im["kind"], im["heldout"]]
            for m_ in methods:
                v = m_["per_image"].get(d, {}).get(im["name"])
                row.append(
                    DASH if v is None else ("error" if "error" in v else f"{fmt_num(v['psnr'])} / {fmt_num(v['ssim'])}")
                )
            rows.append(row)
        lines += [
            f"Per image, LR `{d}`, PSNR (dB) / SSIM:",
            "",
            markdown_table(headers, rows, ["l", "l", "l"] + ["r"] * len(methods)),
            "",
        ]
    errs = [(m_["name"], e) for m_ in methods for e in m_.get("errors", [])]
    errs += [(f["model"], "not loaded: " + f["error"]) for f in q.get("failed_models", [])]
    for name, e in errs:
        lines.append(f"- {name}: {e}")
    if errs:
        lines.append("")
    lines += [
        "Paper's Table 2 (HPA test crops, RGB, bicubic LR, another convention; for context only): "
        + "; ".join(f"{k} {p:.3f} dB / {s:.3f}" for k, (p, s) in PAPER_TABLE2.items())
        + ".",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- plot
def _bars(res: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(label, median seconds of a 64x64 patch, group) for every measured cell, fastest first."""
    out = []
    sp = res.get("speed") or {}
    for b in sp.get("backends", []):
        for r in b.get("rows", []):
            if r.get("patch"):
                out.append((f"{r['model']} · {b['backend']}", r["patch"]["median_s"], b["backend"]))
    for r in sp.get("reference", []):
        if r.get("patch"):
            out.append((f"{r['model']} · {r.get('runtime')}", r["patch"]["median_s"], "reference"))
    return sorted(out, key=lambda x: x[1])


_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _gains(res: dict[str, Any]) -> tuple[list[str], dict[str, list[float]], list[str]]:
    """(degradations, {method: mean PSNR gain over bicubic per degradation}, the PSNR winner per
    degradation) for every method but the two classic ones (nearest is far below, bicubic is 0)."""
    q = res.get("quality") or {}
    degs = list(q.get("degradations", {}))
    gains = {
        m["name"]: [(m["mean"].get(d) or {}).get("gain_db") or 0.0 for d in degs]
        for m in q.get("methods", [])
        if m.get("kind") != "classic"
    }
    best = [(q.get("winners") or {}).get(d, {}).get("psnr", "?") for d in degs]
    return degs, gains, best


def write_plot(path: Path, res: dict[str, Any]) -> str:
    """PNG: patch latency per model and runtime (log scale) and, when measured, each method's
    PSNR gain over bicubic per degradation, the winner named per degradation. Returns the library
    used ('matplotlib' or 'pillow')."""
    bars = _bars(res)
    degs, gains, best = _gains(res)
    names = degs if gains else []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _pillow_plot(path, bars)
        return "pillow"
    speed_panel = bool(bars) or not names  # a run without speed tables (--no-speed) shows quality only
    n_panels = int(speed_panel) + (1 if names else 0)
    fig, axes = plt.subplots(
        1,
        n_panels,
        figsize=(7 * n_panels, max(3.0, 0.28 * max(len(bars), len(names) * (2 + len(gains)) // 2) + 1.5)),
        squeeze=False,
    )
    ax = axes[0][0]
    if bars:
        groups = list(dict.fromkeys(b[2] for b in bars))
        colour = {g: ("tab:gray" if g == "reference" else _COLOURS[i % len(_COLOURS)]) for i, g in enumerate(groups)}
        ax.barh([b[0] for b in bars], [b[1] * 1e3 for b in bars], color=[colour[b[2]] for b in bars])
        from matplotlib.patches import Patch

        ax.legend(
            handles=[Patch(color=colour[g], label=g) for g in groups], fontsize=7, loc="upper right"
        )  # fastest (shortest) bars are on top
        ax.set_xscale("log")
        ax.invert_yaxis()
    if speed_panel:
        ax.set_xlabel("ms per 64x64 LR patch (median, log scale)")
        ax.set_title("Speed (Table 3 analogue)")
        ax.tick_params(axis="y", labelsize=7)
    if names:  # one group of bars per degradation, one bar per method; the winner in the label
        ax = axes[0][n_panels - 1]
        h = 0.8 / max(1, len(gains))
        for i, (m, g) in enumerate(gains.items()):
            ax.barh([j + i * h for j in range(len(degs))], g, height=h, label=m, color=_COLOURS[i % len(_COLOURS)])
        ax.set_yticks([j + 0.4 - h / 2 for j in range(len(degs))])
        ax.set_yticklabels([f"{d}\nbest: {b}" for d, b in zip(degs, best)], fontsize=7)
        ax.axvline(0, color="k", lw=0.8)
        ax.invert_yaxis()
        ax.set_xlabel("mean PSNR gain over bicubic (dB); < 0: worse than bicubic")
        ax.set_title("Quality per degradation (Table 2 analogue)")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("\n".join(textwrap.wrap(res.get("machine_line", ""), 95 * n_panels)[:2]), fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return "matplotlib"


def _pillow_plot(path: Path, bars: list[tuple[str, float, str]]) -> None:
    """A plain log-scale bar chart of patch latency when matplotlib is not installed."""
    from PIL import Image, ImageDraw

    w, row, left = 900, 18, 330
    h = 40 + row * max(1, len(bars))
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 10), "ms per 64x64 LR patch (median, log scale)", fill="black")
    if bars:
        lo = math.log10(min(b[1] for b in bars) * 1e3) - 0.3
        hi = math.log10(max(b[1] for b in bars) * 1e3) + 0.1
        for i, (label, t, _group) in enumerate(bars):
            y = 30 + i * row
            x1 = left + (w - left - 80) * (math.log10(t * 1e3) - lo) / max(hi - lo, 1e-9)
            d.text((10, y + 2), label[:48], fill="black")
            d.rectangle([left, y + 3, max(left + 1, x1), y + row - 3], fill=(31, 119, 180))
            d.text((x1 + 4, y + 2), f"{t * 1e3:.3g}", fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
