"""Image and JSON files: reading them safely (bounded, decoded once) and writing them atomically.

COCO-panoptic JSON sets are read by data/panoptic_json.py; output places are checked by data/outputs.py.

Kept free of torch so that `ldmseg evaluate` starts fast.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ldmseg.errors import LDMSegError

try:  # libspng decodes panoptic PNGs about twice as fast as Pillow (bench/evaluate_speed.py); Pillow is the fallback
    import pyspng as _spng
except ImportError:
    _spng = None

VOID = 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # image files commands read


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """COCO-panoptic colour -> segment id (id = R + 256 G + 256^2 B)."""
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16)


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Segment id -> COCO-panoptic colour, uint8 HxWx3: the low three bytes of each little-endian uint32 id, read
    in place (no HxWx3 uint32 temporaries: an 81 MP map needed 2.2 GB for them)."""
    ids = np.asarray(ids, dtype="<u4")
    flat = np.ascontiguousarray(ids.reshape(-1))
    return flat.view(np.uint8).reshape(*ids.shape, 4)[..., :3].copy()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds. Only a regular file
    is ever replaced: a device (/dev/null), folder or pipe at `path` is an error."""
    path = Path(path)
    if path.exists() and not path.is_file() or path.is_symlink():
        raise LDMSegError(f"{path}: exists and is not a regular file; name a new file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        usual_permissions(tmp)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_permissions(path: str | Path) -> None:
    """Give a written file, or every file below a written folder, the permissions the umask gives new files (0644
    under the common 022): temp-file writers (mkstemp, safetensors' save_file) leave 0600 files, which other users
    of a shared model or run folder could not read."""
    mode = 0o666 & ~_umask()
    root = Path(path)
    for file in [root] if not root.is_dir() else sorted(root.rglob("*")):
        if file.is_file() and not file.is_symlink():
            os.chmod(file, mode)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write uint8 (HxW / HxWx3) or uint16 (HxW) array as PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by null: JSON has no such numbers, and a metric that is
    undefined (e.g. the IoU of a class absent from both sides) is no number."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any, indent: int | None = None) -> None:
    """Write JSON atomically; NaN and infinities become null (strict JSON, which every reader takes)."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        text = json.dumps(finite_json(obj), indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    write_png(path, id2rgb(ids))


def check_regular(path: str | Path, what: str = "file") -> None:
    """Refuse, before opening it, a path that is not a regular file: opening a FIFO blocks until a writer comes
    (forever), and a device or socket is no image or JSON."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise LDMSegError(f"{path}: file not found") from None
    except OSError as e:
        raise LDMSegError(f"{path}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise LDMSegError(f"{path}: is a folder, not {what}")
    if not stat.S_ISREG(mode):
        raise LDMSegError(f"{path}: not a regular file (a pipe, device or socket); expected {what}")


def read_json(path: str | Path) -> Any:
    """A JSON file's value; a missing, irregular, undecodable or too deeply nested file is one line naming it."""
    path = Path(path)
    check_regular(path, "a JSON file")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LDMSegError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LDMSegError(f"{path}: broken JSON ({e})") from None
    except RecursionError:
        raise LDMSegError(f"{path}: broken JSON (nested too deeply to read)") from None


def max_pixels() -> int:
    """The largest image (width x height) decoded: LDMSEG_MAX_PIXELS, default 144 MP (12000^2). Checked from the
    header, before decoding: a decompression bomb costs nothing."""
    value = os.environ.get("LDMSEG_MAX_PIXELS", "").strip()
    if not value:
        return 144_000_000
    if not value.isdigit() or not 0 < int(value) <= 10**12:
        raise LDMSegError(f"LDMSEG_MAX_PIXELS={value!r}: expected a whole number of pixels in 1..10^12")
    return int(value)


def _open_image(path: Path) -> Image.Image:
    return _opened(path, decode=True)


def _opened(path: str | Path, decode: bool) -> Image.Image:
    """The image with its header read and its size checked against the pixel limit before any decoding; decoded
    too when `decode`. Every failure is one LDMSegError naming the file; only regular files are opened."""
    check_regular(path, "an image")
    try:
        img = Image.open(path)
        limit = max_pixels()
        if img.size[0] * img.size[1] > limit:
            img.close()
            raise LDMSegError(f"{path}: image of {img.size[0]}x{img.size[1]} px is over the limit of "
                              f"{limit / 1e6:.0f} MP (set LDMSEG_MAX_PIXELS to allow more)")
        if decode:
            img.load()
        return img
    except FileNotFoundError:
        raise LDMSegError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise LDMSegError(f"{path}: is a folder, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise LDMSegError(f"{path}: corrupt or unreadable image ({e})") from None


def check_image(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, within the pixel limit, without decoding: a cheap look at every input
    of a batch job before its model loads."""
    with _opened(path, decode=False) as img:
        return img.size


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """RGB-encoded panoptic PNG -> uint32 id map."""
    path = Path(path)
    with _opened(path, decode=False) as img:
        mode, fmt, (w, h) = img.mode, img.format, img.size
        rawmode = img.tile[0][3] if len(img.tile) == 1 else None
    if mode != "RGB":
        raise LDMSegError(f"{path}: panoptic PNG must be RGB, got mode {mode}")
    if rawmode and "16" in rawmode:  # Pillow would keep only the high byte of each channel: the ids would change
        raise LDMSegError(f"{path}: a 16-bit-per-channel panoptic PNG; ids are 8-bit RGB (R + 256 G + 256^2 B)")
    if _spng is not None and fmt == "PNG" and rawmode == "RGB":  # 8-bit RGB: the common case, decoded by libspng
        try:
            rgba = _spng.load(path.read_bytes(), format="RGBA")
        except (RuntimeError, ValueError, OSError) as e:
            raise LDMSegError(f"{path}: corrupt or unreadable image ({e})") from None
        if rgba.shape != (h, w, 4) or rgba.dtype != np.uint8:
            raise LDMSegError(f"{path}: corrupt or unreadable image (decoded {rgba.shape}, header {w}x{h})")
        return rgba.view("<u4")[..., 0] & np.uint32(0xFFFFFF)
    # RGBX bytes read as little-endian uint32 are R + 256 G + 256^2 B + 256^3 X: mask X away. PIL's raw
    # RGBX packer writes them straight from the decoded RGB (~5x faster than convert("RGBX")).
    img = _open_image(path)
    return np.frombuffer(img.tobytes("raw", "RGBX"), "<u4").reshape(h, w) & np.uint32(0xFFFFFF)


def read_rgb(path: str | Path) -> np.ndarray:
    """Any image file -> uint8 HxWx3 RGB. Grayscale, RGBA and palette are converted; 16-bit images (48-bit RGB
    as Pillow decodes it, or 16-bit gray) are scaled to 8 bits; float images must be finite, in [0, 1] or [0, 255]."""
    img = _open_image(Path(path))
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise LDMSegError(f"{path}: float image with NaN or infinite pixels")
        if img.mode == "F":
            top = 1.0 if arr.max() <= 1.0 else 255.0
            if arr.min() < 0 or arr.max() > 255:
                raise LDMSegError(f"{path}: float image with values outside [0, 255] ({arr.min():g}..{arr.max():g})")
        else:
            top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray((arr / top * 255).round().astype(np.uint8))
    return np.asarray(img.convert("RGB"))


def read_label_png(path: str | Path) -> np.ndarray:
    """Single-channel label PNG (ADE20K semantic, our depth) -> integer array."""
    img = _open_image(Path(path))
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise LDMSegError(f"{path}: expected a single-channel label PNG, got shape {arr.shape}")
    return arr


DEPTH_SCALE = 65535  # depth PNGs: uint16 = depth x 65535 (ldmseg data synth, ldmseg predict --task depth)


def read_depth_png(path: str | Path) -> np.ndarray:
    """16-bit single-channel depth PNG -> float32 depth in [0, 1]."""
    img = _open_image(Path(path))
    if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise LDMSegError(f"{path}: a depth PNG must be 16-bit single-channel (uint16 = depth x {DEPTH_SCALE}), "
                          f"got mode {img.mode}")
    arr = np.asarray(img, dtype=np.float64)
    if arr.min() < 0 or arr.max() > DEPTH_SCALE:
        raise LDMSegError(f"{path}: depth values outside 0..{DEPTH_SCALE}")
    return (arr / DEPTH_SCALE).astype(np.float32)


def write_depth_png(path: str | Path, depth: np.ndarray) -> None:
    """Float depth in [0, 1] -> uint16 PNG (depth x 65535), atomically."""
    write_png(path, (np.clip(depth, 0, 1) * DEPTH_SCALE).round().astype(np.uint16))


def read_binary_mask(path: str | Path) -> np.ndarray:
    """Any image -> bool HxW, True where the (grayscale-converted) pixel is non-zero."""
    return np.asarray(_open_image(Path(path)).convert("L")) > 0
