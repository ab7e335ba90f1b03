"""A real sr-serve process on a free 127.0.0.1 port, driven by headless Chromium: the upload page's
three panels and its download (equal to sr-upscale's output), the live page's frames and FPS."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from serve_helpers import MODEL, SAMPLE, wait_text

pytest.importorskip("fastapi", reason="sr-serve needs the serve extra: pip install -e '.[serve]'")
pytestmark = pytest.mark.edge


def _not_blank(png: bytes) -> float:
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32).std())


def test_upload_three_panels_and_download_equal_sr_upscale(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.base + "/")
    page.set_input_files("#files", str(SAMPLE))
    page.wait_for_selector("#download:not(.disabled)", timeout=60_000)
    for panel in ("nearest", "bicubic", "model"):
        assert _not_blank(page.locator(f"#panel-{panel}").screenshot()) > 5, f"the {panel} panel is blank"
    wait_text(page, "#card-body", lambda t: "student" in t and "Held-out" in t.title() or "held-out" in t.lower())
    # one zoom for all three: the wheel on one panel changes the shared zoom
    before = page.locator("#zoom").inner_text()
    box = page.locator("#panel-bicubic").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    wait_text(page, "#zoom", lambda t: t != before, timeout=5)
    with page.expect_download() as dl:
        page.click("#download")
    got = Path(dl.value.path())
    assert dl.value.suggested_filename == "sample_nuclei_x4.tif"

    out = tmp_path / "cli"
    from scopesr.sdk.cli import main as sr_upscale  # in this process: the command itself, without its start-up

    status = sr_upscale.main([str(SAMPLE), "-o", str(out), "--model", str(MODEL), "-q"], standalone_mode=False)
    assert status in (None, 0)
    ref = out / "sample_nuclei_x4.tif"
    a, b = tifffile.imread(got), tifffile.imread(ref)
    assert a.dtype == b.dtype == np.uint16 and a.shape == b.shape == (512, 512)
    assert np.array_equal(a, b)
    assert got.read_bytes() == ref.read_bytes()  # the same file, metadata included
    assert not errors, errors
    page.close()


def test_upload_of_a_non_image_says_why(server, browser, tmp_path):
    page = browser.new_page()
    bad = tmp_path / "notes.tif"
    bad.write_text("not a TIFF at all")
    page.goto(server.base + "/")
    page.set_input_files("#files", str(bad))
    err = wait_text(page, ".queue .err", lambda t: bool(t.strip()))
    assert "415" in err and "not an image" in err
    page.close()


@pytest.mark.parametrize("transport", ["ws", "mjpeg"])
def test_live_page_shows_frames_and_its_fps_moves(server, browser, transport):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server.base}/live?transport={transport}")
    wait_text(page, "#frames", lambda t: int(t or 0) > 10)
    fps1 = float(wait_text(page, "#fps", lambda t: t not in ("–", "0.0")))
    n1 = int(page.locator("#frames").inner_text())
    page.wait_for_timeout(800)
    assert int(page.locator("#frames").inner_text()) > n1
    assert fps1 > 1
    assert _not_blank(page.locator("#frame").screenshot()) > 3
    # the method switch and a dragged ROI reach the server and come back with the frames
    page.click("#modes button[data-mode=bicubic]")
    wait_text(page, "#roi-caption", lambda t: "bicubic" in t)
    box = page.locator("#frame").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5, steps=5)
    page.mouse.up()
    wait_text(page, "#roi-caption", lambda t: "ROI 38×38" in t or "ROI 38×" in t)
    page.click("#modes button[data-mode=model]")
    wait_text(page, "#roi-caption", lambda t: "model" in t)
    assert not errors, errors  # nothing refused by the CSP, no failed request
    page.close()


def test_stack_upload_has_a_plane_slider(server, browser, stack_tif):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.base + "/")
    page.set_input_files("#files", str(stack_tif))
    page.wait_for_selector("#download:not(.disabled)", timeout=60_000)
    assert page.locator("#plane-box").is_visible()
    assert page.locator("#plane-label").inner_text() == "7 / 12"
    before = page.locator("#panel-model").screenshot()
    page.locator("#plane").fill("0")  # a range input takes its value and fires "input"
    wait_text(page, "#plane-label", lambda t: t == "1 / 12", timeout=5)
    for _ in range(50):
        page.wait_for_timeout(100)
        if page.locator("#panel-model").screenshot() != before:
            break
    else:
        raise AssertionError("the model panel did not change with the plane")
    page.close()


def test_upload_with_half_strength_equals_sr_upscale_strength(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.base + "/")
    page.select_option("#strength", "0.5")
    page.set_input_files("#files", str(SAMPLE))
    page.wait_for_selector("#download:not(.disabled)", timeout=60_000)
    assert "strength 0.5" in page.locator("#result-title").inner_text()
    with page.expect_download() as dl:
        page.click("#download")
    got = tifffile.imread(Path(dl.value.path()))
    import scopesr.sdk as sr

    up = sr.load(MODEL)
    img = tifffile.imread(SAMPLE)
    assert np.array_equal(got, up.upscale(img, strength=0.5)) and not np.array_equal(got, up.upscale(img))
    page.close()


def test_upload_with_the_self_ensemble_equals_sr_upscale_ensemble(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.base + "/")
    wait_text(page, "#card-body", lambda t: "self-ensemble" in t)  # the card names the distillation stage
    page.select_option("#ensemble", "4")
    page.set_input_files("#files", str(SAMPLE))
    page.wait_for_selector("#download:not(.disabled)", timeout=60_000)
    assert "4-copy self-ensemble" in page.locator("#result-title").inner_text()
    with page.expect_download() as dl:
        page.click("#download")
    got = tifffile.imread(Path(dl.value.path()))
    import scopesr.sdk as sr

    up = sr.load(MODEL)
    assert np.array_equal(got, up.upscale(tifffile.imread(SAMPLE), ensemble=4))
    page.close()
