"""Pipeline inputs: an image of any accepted kind to a float tensor in [-1, 1], at its size or at the processing
resolution. The accepted kinds, and their value rules (anything else is one line, never a silent rescale):

- a file path (any image file; 16-bit files are scaled to 8 bits by `formats.read_rgb`), or a PIL image of 8 bits
  per channel (modes 1, L, P, RGB, RGBA, ...; 16- and 32-bit modes I, I;16, F are refused);
- an HxW, HxWx3 or HxWx4 numpy array: uint8 in 0..255, or floating point in [0, 1] (scaled by 255);
- a [3, H, W] torch tensor, floating point in [-1, 1] (what the training data gives).

Every value must be finite. The checks read the values once (min and max), no copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ldmseg.errors import LDMSegError

ImageInput = Image.Image | np.ndarray | torch.Tensor
WIDE_PIL_MODES = ("I", "F")  # and every "I;..." mode: more than 8 bits per channel


def load_image(image: ImageInput | str | Path) -> ImageInput:
    """A path is read (any image file, checked against the pixel limit first); other kinds are checked for shape,
    dtype and value range (the module's rules)."""
    if isinstance(image, (str, Path)):
        from ldmseg.data.formats import read_rgb

        return read_rgb(image)
    if isinstance(image, Image.Image):
        if image.mode in WIDE_PIL_MODES or image.mode.startswith("I;"):
            raise LDMSegError(f"a PIL image of mode {image.mode!r} (more than 8 bits per channel): give an 8-bit "
                              "image, a uint8 array or a float array in [0, 1]")
        return image
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3 or min(image.shape[1:]) < 1:
            raise LDMSegError(f"an image tensor must be [3, H, W] in [-1, 1], got shape {tuple(image.shape)}")
        check_values(image, "an image tensor must be floating point in [-1, 1]", torch.is_floating_point(image),
                     (-1.0, 1.0))
        return image
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[-1] not in (3, 4) or min(image.shape[:2]) < 1:
            raise LDMSegError(f"an image array must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        if image.dtype != np.uint8:
            check_values(image, "an image array must be uint8 in 0..255 or floating point in [0, 1]",
                         np.issubdtype(image.dtype, np.floating), (0.0, 1.0))
        return image
    raise LDMSegError(f"not an image: {type(image).__name__} (give a path, a PIL image, an array or a tensor)")


def check_values(image: np.ndarray | torch.Tensor, what: str, floating: bool, bounds: tuple[float, float]) -> None:
    """Floating point with every value within `bounds` (NaN and infinity fail the comparison): one line saying
    what the image holds and what was expected (`what`: the image's kind and its rule)."""
    if not floating:
        raise LDMSegError(f"{what}, got dtype {str(image.dtype).removeprefix('torch.')}")
    smallest, largest = float(image.min()), float(image.max())
    if not (bounds[0] <= smallest and largest <= bounds[1]):
        finite = np.isfinite([smallest, largest]).all()
        raise LDMSegError(f"{what}, got values in [{smallest:g}, {largest:g}]{'' if finite else ' (NaN or infinity)'}")


def to_tensor(image: ImageInput) -> torch.Tensor:
    """A checked image (`load_image`) -> [3, H, W] float in [-1, 1]: uint8 / 8-bit PIL by 127.5, float arrays in
    [0, 1] by 2, tensors as they are."""
    if isinstance(image, torch.Tensor):
        return image.float()
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    t = torch.from_numpy(np.array(arr[..., :3])).permute(2, 0, 1).float()
    return t / 127.5 - 1 if arr.dtype == np.uint8 else t * 2 - 1


LARGE_IMAGE = 16_000_000  # pixels: above this, inputs are downscaled in uint8 by PIL, not as a float tensor


def image_size(image: ImageInput) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.size[1], image.size[0]
    return tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) else tuple(np.asarray(image).shape[:2])


def to_processing_size(image: ImageInput, res: int) -> torch.Tensor:
    """[3, res, res] in [-1, 1]: antialiased bilinear downscaling. A large PIL / uint8 image is resized by PIL
    first (a float copy of a 100 MP image alone would take 1.2 GB)."""
    h, w = image_size(image)
    if h * w > LARGE_IMAGE and not isinstance(image, torch.Tensor):
        pil = image if isinstance(image, Image.Image) else Image.fromarray(as_uint8(np.asarray(image)[..., :3]))
        image = pil.convert("RGB").resize((res, res), Image.BILINEAR)
    t = to_tensor(image)
    if tuple(t.shape[-2:]) == (res, res):
        return t
    return F.interpolate(t[None], size=(res, res), mode="bilinear", align_corners=False, antialias=True)[0]


def as_uint8(arr: np.ndarray) -> np.ndarray:
    """A checked image array in uint8 (floats in [0, 1] scaled by 255 and rounded)."""
    return arr if arr.dtype == np.uint8 else np.rint(arr * 255).astype(np.uint8)
