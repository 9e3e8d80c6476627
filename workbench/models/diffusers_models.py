"""A diffusers `UNet2DModel` or `UNet1DModel` saved in a local folder, with its scheduler
config, as a `DiffusionModel` (through `from_discrete`).

Only local files are read: the folder must exist, `from_pretrained` runs with
`local_files_only=True` and `use_safetensors=True` (weights are never unpickled), and the
scheduler's config is read as JSON. The folder is either a model saved with `save_pretrained`
(config.json and diffusion_pytorch_model.safetensors) beside a scheduler_config.json, or a
pipeline's layout (unet/ and scheduler/ subfolders).

The workbench's samples are (N, D); the UNet's are (N, C, H, W) or (N, C, L), with D = C H W
(or C L) in row-major order: `x.reshape(N, C, H, W)` of a sample is the image.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from workbench.diffusion.models import DiffusionModel
from workbench.models.adapters import from_discrete
from workbench.registry import Registry, check_choice

# diffusers' prediction_type -> the workbench's prediction kind
PREDICTION_TYPES = {"epsilon": "noise", "sample": "data", "v_prediction": "v"}
# schedulers whose config defines a training table alphas_cumprod the UNet was trained on
SCHEDULER_CLASSES = ("DDPMScheduler", "DDIMScheduler")
UNET_CLASSES: Registry[int] = Registry("diffusers model class")  # name -> spatial dimensions
UNET_CLASSES.add("UNet2DModel", 2)
UNET_CLASSES.add("UNet1DModel", 1)
# variance types under which the UNet also outputs its variance (as many channels again)
LEARNED_VARIANCE = ("learned", "learned_range")
# what save_pretrained writes with safe serialization: one file, or shards and their index
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json")


def _read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object")
    return config


def _model_dir(folder: Path, subfolder: str | None) -> Path:
    if not folder.is_dir():
        raise ValueError(
            f"no such folder {str(folder)!r} (from_diffusers reads local folders only)"
        )
    if subfolder is not None:
        candidates = [folder / subfolder]
    else:
        candidates = [folder, folder / "unet"]  # a saved model, or a pipeline's layout
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    looked = " or ".join(str(c / "config.json") for c in candidates)
    raise ValueError(f"no diffusers model in {str(folder)!r}: {looked} does not exist")


def _scheduler_config(folder: Path, model_dir: Path) -> dict:
    candidates = [
        model_dir / "scheduler_config.json",
        folder / "scheduler" / "scheduler_config.json",
    ]
    for path in candidates:
        if path.is_file():
            return _read_json(path)
    looked = " or ".join(map(str, candidates))
    raise ValueError(f"no scheduler config beside the model in {str(folder)!r}: {looked}")


def _sample_shape(config: dict, dims: int) -> tuple[int, ...]:
    size = config.get("sample_size")
    sizes = (size,) * dims if isinstance(size, int) else tuple(size or ())
    if len(sizes) != dims or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ValueError(f"the model's sample_size must be {dims} positive integers, got {size!r}")
    return (int(config.get("in_channels", 0)), *sizes)


class _UNetOnVectors(torch.nn.Module):
    """(N, D) samples through a UNet on (N, *shape), its output's first C channels as (N, D)."""

    def __init__(self, unet: torch.nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.unet, self.shape = unet, shape

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        out = self.unet(x.reshape(x.shape[0], *self.shape), timestep).sample
        # a learned-variance UNet returns 2 C channels: the prediction is the first C
        return out[:, : self.shape[0]].reshape(x.shape)


def from_diffusers(
    folder,
    *,
    subfolder: str | None = None,
    timestep: str = "nearest",
    dtype: torch.dtype | None = None,
) -> DiffusionModel:
    """The UNet saved in `folder` (or `folder/subfolder`) on its scheduler's alphas_cumprod.

    The prediction is the scheduler's prediction_type (epsilon, sample, v_prediction); the
    UNet is fed integer timesteps by default (`timestep`, as in `from_discrete`) and runs in
    its stored dtype unless `dtype` is given.
    """
    try:
        import diffusers
    except ImportError:
        raise ValueError("from_diffusers needs diffusers: pip install diffusers") from None
    folder = Path(folder)
    model_dir = _model_dir(folder, subfolder)
    config = _read_json(model_dir / "config.json")
    class_name = config.get("_class_name")
    dims = UNET_CLASSES[class_name]
    shape = _sample_shape(config, dims)
    scheduler_config = _scheduler_config(folder, model_dir)
    scheduler_name = check_choice(
        "diffusers scheduler", scheduler_config.get("_class_name"), SCHEDULER_CLASSES
    )
    kind = check_choice(
        "prediction_type", scheduler_config.get("prediction_type", "epsilon"), PREDICTION_TYPES
    )
    variance = scheduler_config.get("variance_type")
    out_channels = config.get("out_channels")
    expected = shape[0] * (2 if variance in LEARNED_VARIANCE else 1)
    if out_channels != expected:
        raise ValueError(
            f"the model has {out_channels} output channels; {shape[0]} input channels and a "
            f"{variance!r} variance need {expected}"
        )
    if not any((model_dir / name).is_file() for name in WEIGHTS):
        raise ValueError(f"no {WEIGHTS[0]} in {str(model_dir)!r} (pickled weights are never read)")
    scheduler = getattr(diffusers, scheduler_name).from_config(scheduler_config)
    unet = getattr(diffusers, class_name).from_pretrained(
        model_dir, local_files_only=True, use_safetensors=True
    )
    unet.eval()  # dropout off: a solve calls a deterministic network
    if dtype is not None:
        unet.to(dtype)
    net = _UNetOnVectors(unet, shape)
    steps = len(scheduler.alphas_cumprod)
    return from_discrete(
        net,
        scheduler.alphas_cumprod,
        PREDICTION_TYPES[kind],
        timestep=timestep,
        dtype=dtype,
        name=f"{class_name} {'x'.join(map(str, shape))} from {model_dir.name}",
        schedule_name=f"VP discrete ({steps} steps, {scheduler_name} of {model_dir.name})",
    )
