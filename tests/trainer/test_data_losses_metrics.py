"""Data pipeline on real fluorescence images, losses, and PSNR/SSIM against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from scopesr.trainer import data as D  # noqa: E402
from scopesr.trainer.losses import (  # noqa: E402
    LogL1PerCrop,
    LossError,
    VGGContentLoss,
    bce_clipped,
    generator_adversarial_loss,
    pixel_loss,
    smoothed_labels,
)
from scopesr.trainer.metrics import psnr, sample_grid, ssim, upscale_pil  # noqa: E402


def test_hpa_layout_is_composed_as_table1(hpa_dir):
    cfg = D.DataConfig(data=[str(hpa_dir)], channels=3, hr_size=64)
    items = D.discover(cfg)
    assert len(items) == 6 and all(it.kind == "hpa" for it in items)
    it = items[0]
    one, two, three, four = (D.load_item(it, cfg, n) for n in (1, 2, 3, 4))
    # 1 = red only; 2 adds blue; 3 adds green; 4 adds yellow into red and green
    assert one[..., 0].max() > 0 and one[..., 1].max() == 0 and one[..., 2].max() == 0
    assert two[..., 2].max() > 0 and two[..., 1].max() == 0
    assert three[..., 1].max() > 0
    assert (four[..., 0] >= three[..., 0]).all() and (four[..., 0] > three[..., 0]).any()
    assert np.array_equal(four[..., 2], three[..., 2])
    assert four.dtype == np.float32 and four.min() >= 0 and four.max() <= 1


def test_folder_items_planes_and_channels(folder_dir):
    grey = D.discover(D.DataConfig(data=[str(folder_dir)], channels=1, hr_size=64))
    # 3 PNGs + 1 TIFF + a 3-plane stack = 7 grey items
    assert len(grey) == 7 and sorted({it.plane for it in grey}) == [0, 1, 2]
    rgb = D.discover(D.DataConfig(data=[str(folder_dir)], channels=3, hr_size=64))
    x = D.load_item(rgb[0], D.DataConfig(data=[str(folder_dir)], channels=3, hr_size=64))
    assert x.shape[-1] == 3 and np.array_equal(x[..., 0], x[..., 1])  # grey replicated
    with pytest.raises(D.DataError, match="hr-size"):
        D.discover(D.DataConfig(data=[str(folder_dir)], channels=1, hr_size=512))
    with pytest.raises(D.DataError, match="no such file"):
        D.discover(D.DataConfig(data=[str(folder_dir / "nope")], channels=1))


def test_samples_are_deterministic_crops_with_pil_bicubic_lr(folder_dir):
    cfg = D.DataConfig(data=[str(folder_dir)], channels=1, hr_size=64, seed=3)
    tr, va = D.split(D.discover(cfg), cfg)
    assert len(va) == 1 and len(tr) == 6
    assert D.split(D.discover(cfg), cfg) == (tr, va)  # fixed by the seed
    ds = D.TrainDataset(tr, cfg)
    lr, hr = ds[11]
    lr2, hr2 = ds[11]
    assert lr.shape == (1, 16, 16) and hr.shape == (1, 64, 64)
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert not torch.equal(ds[11][1], ds[11 + len(tr)][1])  # same image, next epoch: another crop
    from PIL import Image

    ref = np.asarray(Image.fromarray(hr[0].numpy(), mode="F").resize((16, 16), Image.Resampling.BICUBIC))
    assert np.allclose(lr[0].numpy(), ref)
    other = D.TrainDataset(
        tr, D.DataConfig(data=[str(folder_dir)], channels=1, hr_size=64, seed=3, degradation="pil-box")
    )
    assert not torch.equal(other[11][0], lr)  # the kernel option changes the LR


def test_step_sampler_resumes_and_shards():
    full = D.StepSampler(10, batch_size=3, seed=1)
    it = iter(full)
    seq = [next(it) for _ in range(30)]
    later = iter(D.StepSampler(10, batch_size=3, seed=1, start_step=4))
    assert [next(later) for _ in range(18)] == seq[12:30]
    r0, r1 = iter(D.StepSampler(10, 2, 1, rank=0, world_size=2)), iter(D.StepSampler(10, 2, 1, rank=1, world_size=2))
    a, b = [next(r0) for _ in range(5)], [next(r1) for _ in range(5)]
    assert set(a).isdisjoint(b) and sorted(a + b) == list(range(10))  # one epoch, split between ranks


def test_loader_with_workers_gives_the_same_batches(folder_dir):
    cfg = D.DataConfig(data=[str(folder_dir)], channels=1, hr_size=32)
    ds = D.TrainDataset(D.discover(cfg), cfg)
    b0 = next(iter(D.make_loader(ds, 4, seed=0, workers=0)))
    b2 = next(iter(D.make_loader(ds, 4, seed=0, workers=2)))
    assert torch.equal(b0[1], b2[1]) and torch.equal(b0[0], b2[0])


def test_label_smoothing_ranges_and_clipped_bce():
    g = torch.Generator().manual_seed(0)
    real = smoothed_labels(10000, True, "cpu", g)
    fake = smoothed_labels(10000, False, "cpu", g)
    assert 0.8 <= float(real.min()) and float(real.max()) <= 1.2 and float(real.max()) > 1.15
    assert 0.0 <= float(fake.min()) and float(fake.max()) <= 0.2
    code = smoothed_labels(1000, True, "cpu", g, real_range=(0.8, 1.0))
    assert float(code.max()) <= 1.0
    # a target above 1 still has a finite loss (probabilities clipped, as Keras)
    assert torch.isfinite(bce_clipped(torch.tensor([50.0]), torch.tensor([1.2])))
    assert float(generator_adversarial_loss(torch.tensor([10.0]))) < 1e-3
    assert float(generator_adversarial_loss(torch.tensor([-10.0]))) > 5


def test_l1_plus_mse_is_l1_for_small_errors_and_mse_for_large_ones():
    target = torch.zeros(1, 1, 1, 2)
    sr = torch.tensor([[[[0.01, 0.5]]]], requires_grad=True)
    loss = pixel_loss("l1", mse_weight=10.0)
    value = loss(sr, target)
    assert value.item() == pytest.approx(0.255 + 10.0 * (0.01**2 + 0.25) / 2)
    value.backward()
    # per-pixel gradient (1 + 2 * 10 * err) / 2: L1's sign term dominates at 0.01, MSE's at 0.5
    assert sr.grad.flatten().tolist() == pytest.approx([(1 + 0.2) / 2, (1 + 10.0) / 2])
    assert isinstance(pixel_loss("l1"), torch.nn.L1Loss)  # weight 0: plain L1, as before
    with pytest.raises(LossError, match="use mse or l1"):
        pixel_loss("huber")


def test_per_crop_log_l1_weighs_every_crop_by_its_relative_error():
    target = torch.zeros(2, 1, 4, 4)
    # a clean crop with small errors and a noisy crop with errors ten times larger
    sr = torch.cat([torch.full((1, 1, 4, 4), 0.002), torch.full((1, 1, 4, 4), 0.02)]).requires_grad_(True)
    eps = 1e-4
    loss = pixel_loss("l1", crop_log_eps=eps)
    value = loss(sr, target)
    assert value.item() == pytest.approx((np.log(eps + 0.002) + np.log(eps + 0.02)) / 2)
    value.backward()
    # each pixel's pull is 1 / (2 crops * 16 px * (eps + its crop's L1)): the clean crop pulls
    # about ten times harder, where plain L1 pulls both alike
    clean, noisy = sr.grad[0].flatten(), sr.grad[1].flatten()
    assert clean.tolist() == pytest.approx([1 / (2 * 16 * (eps + 0.002))] * 16)
    assert noisy.tolist() == pytest.approx([1 / (2 * 16 * (eps + 0.02))] * 16)
    # halving the error of either crop lowers the loss by the same amount (log 2 / 2, minus eps)
    half_clean = loss(torch.cat([sr[:1] / 2, sr[1:]]), target).item()
    half_noisy = loss(torch.cat([sr[:1], sr[1:] / 2]), target).item()
    assert value.item() - half_clean == pytest.approx(value.item() - half_noisy, abs=0.03)
    assert value.item() - half_noisy == pytest.approx(np.log(2) / 2, abs=0.01)
    with pytest.raises(LossError, match="eps must be > 0"):
        LogL1PerCrop(0.0)
    with pytest.raises(LossError, match="one of the two"):
        pixel_loss("l1", mse_weight=1.0, crop_log_eps=0.01)


def test_vgg_content_loss_random_init_and_offline_error(tmp_path, monkeypatch):
    # random-init VGG19: exercises the code path only (no ImageNet weights offline here)
    loss = VGGContentLoss(random_init=True)
    x = torch.rand(2, 1, 32, 32)
    assert float(loss(x, x)) == 0.0
    y = x.clone().requires_grad_(True)
    target = torch.rand(2, 1, 32, 32)
    v = loss(y, target)
    v.backward()
    assert v.item() > 0 and y.grad is not None and not any(p.requires_grad for p in loss.parameters())
    # weights from a file: a torchvision vgg19 state dict
    f = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in loss.features.state_dict().items()}, f)  # torchvision key names
    loaded = VGGContentLoss(weights=f)
    assert torch.equal(loaded(y.detach(), target), v.detach())
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(LossError, match="do not fit"):
        VGGContentLoss(weights=tmp_path / "bad.pth")
    # offline without weights: a clear error saying how to fix it
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    from torchvision.models import VGG19_Weights

    def no_net(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(type(VGG19_Weights.IMAGENET1K_V1), "get_state_dict", no_net)
    with pytest.raises(LossError, match="--vgg-weights"):
        VGGContentLoss()


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_ssim_match_scikit_image(real_arrays, channels):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    img = real_arrays["stardist-nuclei-2d"][:128, :128].astype(np.float32)
    hr = img / img.max()
    if channels == 3:
        hr = np.stack([hr, hr[::-1], hr[:, ::-1]], axis=-1)
    else:
        hr = hr[..., None]
    hr_t = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]
    lr = torch.nn.functional.avg_pool2d(hr_t, 4)
    sr = upscale_pil(lr, 4, "bicubic").clamp(0, 1)
    b = 4
    a_sr = sr[0].numpy().transpose(1, 2, 0)[b:-b, b:-b].astype(np.float64)
    a_hr = hr[b:-b, b:-b].astype(np.float64)
    ref_p = peak_signal_noise_ratio(a_hr, a_sr, data_range=1.0)
    ref_s = structural_similarity(
        a_hr, a_sr, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert float(psnr(sr, hr_t, border=b)[0]) == pytest.approx(ref_p, abs=1e-3)
    assert float(ssim(sr, hr_t, border=b)[0]) == pytest.approx(ref_s, abs=1e-4)
    assert float(psnr(hr_t, hr_t)[0]) > 100 and float(ssim(hr_t, hr_t)[0]) == pytest.approx(1.0)


def test_sample_grid_layout():
    lr = torch.rand(2, 1, 8, 8)
    grid = sample_grid(lr, torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32), scale=4)
    assert grid.shape == (2 * 32 + 4, 4 * 32 + 3 * 4, 3) and grid.dtype == np.uint8


def test_detect_channels(hpa_dir, folder_dir):
    assert D.detect_channels(D.DataConfig(data=[str(hpa_dir)])) == 3
    assert D.detect_channels(D.DataConfig(data=[str(folder_dir)])) == 1
