"""Pipeline inputs: an image of any accepted kind (a file path, PIL, HxW[x3|4] uint8 array, [3, H, W] tensor in
[-1, 1]) to a float tensor in [-1, 1], at its size or at the processing resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ldmseg.errors import LDMSegError

ImageInput = Image.Image | np.ndarray | torch.Tensor


def load_image(image: ImageInput | str | Path) -> ImageInput:
    """A path is read (any image file, checked against the pixel limit first); other kinds are checked for shape."""
    if isinstance(image, (str, Path)):
        from ldmseg.data.formats import read_rgb

        return read_rgb(image)
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise LDMSegError(f"an image tensor must be [3, H, W] in [-1, 1], got shape {tuple(image.shape)}")
        return image
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[-1] not in (3, 4) or min(image.shape[:2]) < 1:
            raise LDMSegError(f"an image array must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        return image
    raise LDMSegError(f"not an image: {type(image).__name__} (give a path, a PIL image, an array or a tensor)")


def to_tensor(image: ImageInput) -> torch.Tensor:
    """PIL / HxWx3 uint8 array / [3, H, W] tensor in [-1, 1] -> [3, H, W] float in [-1, 1]."""
    if isinstance(image, torch.Tensor):
        return image.float()
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    return torch.from_numpy(np.array(arr[..., :3])).permute(2, 0, 1).float() / 127.5 - 1


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
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)[..., :3])
        image = pil.convert("RGB").resize((res, res), Image.BILINEAR)
    t = to_tensor(image)
    if tuple(t.shape[-2:]) == (res, res):
        return t
    return F.interpolate(t[None], size=(res, res), mode="bilinear", align_corners=False, antialias=True)[0]
