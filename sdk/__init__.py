"""scopesr.sdk: the torch-free runtime (tiled super-resolution over exported artifacts).

    import scopesr.sdk as sr
    up = sr.load("model.onnx")      # card checked (fields + sha256), runtime picked by suffix
    hr = up.upscale(image)          # seam-free tiles, input dtype and axes kept

The names below are the SDK's public face: the rest of the project (trainer, converters,
bench, demo_pi) imports them from here, and the runtimes from ``scopesr.sdk.backends``.
Modules not named here are private. Importing this package loads numpy only (no torch, no
runtime): each runtime is imported when a model that needs it is opened.
"""

from . import quality  # PSNR, SSIM, the degradation model: one implementation for the whole project
from . import zarr_io as _zarr_io  # noqa: F401  # registers OME-Zarr folders/URLs with read_image (zarr itself loads lazily)
from .atomic import atomic_path, atomic_write_bytes, atomic_write_text
from .card import CARD_SUFFIX, FORMATS, ModelCard, Normalisation, card_path_for, training_stages
from .cpu import CpuInfo, cpu_key, describe_cpu
from .ensemble import ENSEMBLE_SIZES
from .errors import (
    BackendUnavailable,
    CardError,
    DependencyError,
    ImageError,
    InputError,
    IntegrityError,
    InternalError,
    ModelError,
    ModelIOError,
    OutputError,
    ScopesrError,
)
from .io import IMAGE_SUFFIXES, Image, find_inputs, read_image, write_image, write_tiff_streaming
from .normalize import Stats, compute_stats
from .provenance import package_versions, sha256_path
from .samples import SAMPLES, available_samples, sample_path
from .tiles import parse_signature, parse_tile, parse_tile_sizes, signature_name, tile_entry, tile_label, tile_shapes
from .tiling import DEFAULT_TILE, TilePlan, make_plan
from .upscaler import (
    BUNDLES,
    DEFAULT_MODELS,
    MODELS_DIR,
    NOISE_WARNING_KEY,
    StreamFrame,
    Upscaler,
    bundle_dir,
    bundle_files,
    crop_roi,
    default_model_path,
    load,
)

__all__ = [
    # running models
    "quality",
    "load",
    "Upscaler",
    "StreamFrame",
    "default_model_path",
    "crop_roi",
    "BUNDLES",
    "bundle_dir",
    "bundle_files",
    "DEFAULT_MODELS",
    "MODELS_DIR",
    "NOISE_WARNING_KEY",
    "make_plan",
    "TilePlan",
    "DEFAULT_TILE",
    "ENSEMBLE_SIZES",
    # model cards and provenance
    "ModelCard",
    "training_stages",
    "Normalisation",
    "card_path_for",
    "CARD_SUFFIX",
    "FORMATS",
    "package_versions",
    "sha256_path",
    # tile sizes
    "parse_tile_sizes",
    "parse_tile",
    "tile_shapes",
    "tile_label",
    "tile_entry",
    "signature_name",
    "parse_signature",
    # images and normalisation
    "read_image",
    "write_image",
    "write_tiff_streaming",
    "find_inputs",
    "Image",
    "IMAGE_SUFFIXES",
    "compute_stats",
    "Stats",
    # the CPU (what speed figures and the artifact picker's cache are keyed on)
    "describe_cpu",
    "cpu_key",
    "CpuInfo",
    # files
    "atomic_path",
    "atomic_write_text",
    "atomic_write_bytes",
    # real sample images
    "SAMPLES",
    "sample_path",
    "available_samples",
    # errors
    "ScopesrError",
    "InputError",
    "CardError",
    "IntegrityError",
    "ImageError",
    "ModelError",
    "ModelIOError",
    "BackendUnavailable",
    "DependencyError",
    "InternalError",
    "OutputError",
]
