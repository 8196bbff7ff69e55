"""COCO-panoptic and ADE20K file formats: reading, validating and atomic writing.

Kept free of torch so that `ldmseg evaluate` starts fast.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ldmseg.errors import LDMSegError, SkippedInputs

try:  # libspng decodes panoptic PNGs about twice as fast as Pillow (bench/evaluate_speed.py); Pillow is the fallback
    import pyspng as _spng
except ImportError:
    _spng = None

VOID = 0


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """COCO-panoptic colour -> segment id (id = R + 256 G + 256^2 B)."""
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16)


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Segment id -> COCO-panoptic colour, uint8 HxWx3."""
    ids = np.asarray(ids, dtype=np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files: give the output the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LDMSegError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LDMSegError(f"{path}: broken JSON ({e})") from None


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
    too when `decode`. Every failure is one LDMSegError naming the file."""
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


@dataclass
class PanopticRecord:
    """One image of a COCO-panoptic set."""

    image_id: Any
    image_file: str | None
    png_file: str
    segments: list[dict]
    width: int | None = None
    height: int | None = None


@dataclass
class PanopticSet:
    """A parsed COCO-panoptic JSON: records in file order and categories by id."""

    json_path: Path
    records: list[PanopticRecord]
    categories: dict[int, dict]

    @property
    def by_image_id(self) -> dict[Any, PanopticRecord]:
        return {r.image_id: r for r in self.records}


def _require(cond: bool, path: Path, msg: str) -> None:
    if not cond:
        raise LDMSegError(f"{path}: {msg}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_SEGMENT_ID = 2**24 - 1  # ids are RGB-encoded in 24 bits; 0 is VOID


def _is_flag(value: Any) -> bool:
    """isthing / iscrowd: 0 or 1 (JSON false / true too)."""
    return value in (0, 1) and (isinstance(value, bool) or _is_int(value))


def _bad_area(area: Any, need_area: bool) -> str | None:
    if area is None and not need_area:
        return None
    if not isinstance(area, (int, float)) or isinstance(area, bool):
        return f"'area' must be a number, got {area!r}"
    if not math.isfinite(area) or not 0 <= area <= 2**40:
        return f"'area' must be a finite pixel count >= 0, got {area!r}"
    return None


def _bad_segment(path: Path, image_id: Any, s: Any, seen: set, categories: dict, need_area: bool) -> str | None:
    """Why a segments_info entry is invalid, or None (the message is only built for a bad entry)."""
    if not isinstance(s, dict):
        return f"image {image_id!r}: segment is not an object: {str(s)[:80]}"
    if not _is_int(s.get("id")):
        return f"image {image_id!r}: segment id must be an integer, got {s.get('id')!r}"
    if not 1 <= s["id"] <= MAX_SEGMENT_ID:
        return f"image {image_id!r}: segment id {s['id']} is outside 1..{MAX_SEGMENT_ID} (0 is VOID)"
    if not _is_int(s.get("category_id")):
        return f"image {image_id!r}: segment {s['id']}: category_id must be an integer, got {s.get('category_id')!r}"
    if s["id"] in seen:
        return f"image {image_id!r}: duplicate segment id {s['id']}"
    if s["category_id"] not in categories:
        return f"image {image_id!r}: segment {s['id']} has unknown category_id {s['category_id']}"
    if "iscrowd" in s and not _is_flag(s["iscrowd"]):
        return f"image {image_id!r}: segment {s['id']}: 'iscrowd' must be 0 or 1, got {s['iscrowd']!r}"
    why = _bad_area(s.get("area"), need_area)
    return f"image {image_id!r}: segment {s['id']}: {why}" if why else None


def _categories(path: Path, listed: Any) -> dict[int, dict]:
    """Categories by id: integer ids, each once, isthing 0 or 1."""
    _require(isinstance(listed, list), path, "missing 'categories' list")
    categories: dict[int, dict] = {}
    for c in listed:
        if not (isinstance(c, dict) and _is_int(c.get("id"))):
            raise LDMSegError(f"{path}: category without an integer id: {str(c)[:80]}")
        _require(c["id"] not in categories, path, f"duplicate category id {c['id']}")
        _require(_is_flag(c.get("isthing")), path, f"category {c['id']}: 'isthing' must be 0 or 1, got "
                 f"{c.get('isthing', 'nothing')!r}")
        categories[c["id"]] = c
    return categories


def load_panoptic_json(path: str | Path, categories: dict[int, dict] | None = None,
                       need_area: bool = False) -> PanopticSet:
    """Parse and validate a COCO-panoptic JSON (GT or predictions).

    Predictions may omit `categories`; pass the GT's. Checks value types, duplicate image ids, duplicate
    segment ids and category ids unknown to the category list; `need_area` (GT for scoring) requires each
    segment's area. A valid file pays only for the tests themselves: messages are built on failure.
    """
    path = Path(path)
    data = read_json(path)
    _require(isinstance(data, dict), path, "top level must be a JSON object")
    _require(isinstance(data.get("annotations"), list), path, "missing 'annotations' list")
    if categories is None:
        categories = _categories(path, data.get("categories"))
    images = {}
    for im in data.get("images", []) or []:
        if isinstance(im, dict) and "id" in im:
            images[im["id"]] = im
    records, seen, names = [], set(), set()
    for ann in data["annotations"]:
        if not (isinstance(ann, dict) and "image_id" in ann and isinstance(ann.get("file_name"), str)
                and isinstance(ann.get("segments_info"), list)):
            raise LDMSegError(f"{path}: annotation needs image_id, file_name (a string) and segments_info "
                              f"(a list): {str(ann)[:80]}")
        image_id = ann["image_id"]
        if not (_is_int(image_id) or isinstance(image_id, str)):
            raise LDMSegError(f"{path}: image_id must be an integer or a string, got {image_id!r}")
        if image_id in seen:
            raise LDMSegError(f"{path}: duplicate image_id {image_id!r}")
        if ann["file_name"] in names:
            raise LDMSegError(f"{path}: image {image_id!r}: file_name {ann['file_name']!r} is used twice")
        seen.add(image_id)
        names.add(ann["file_name"])
        seg_ids: set = set()
        for s in ann["segments_info"]:
            if (type(s) is not dict or type(s.get("id")) is not int or type(s.get("category_id")) is not int
                    or not 0 < s["id"] <= MAX_SEGMENT_ID or s["id"] in seg_ids or s["category_id"] not in categories
                    or s.get("iscrowd", 0) not in (0, 1) or type(s.get("iscrowd", 0)) is float
                    or ("area" in s or need_area) and not (type(s.get("area")) in (int, float)
                                                           and 0 <= s["area"] <= 2**40)):
                why = _bad_segment(path, image_id, s, seg_ids, categories, need_area)
                if why:
                    raise LDMSegError(f"{path}: {why}")
            seg_ids.add(s["id"])
        im = images.get(image_id, {})
        image_file = im.get("file_name")
        for name in (ann["file_name"], image_file):
            if name is not None and not is_plain_name(name):
                raise LDMSegError(f"{path}: image {image_id!r}: file_name {name!r} must be a plain name inside its "
                                  "folder (no '..', no absolute path)")
        records.append(PanopticRecord(image_id, image_file, ann["file_name"], ann["segments_info"],
                                      im.get("width"), im.get("height")))
    return PanopticSet(path, records, categories)


def read_panoptic_ids(folder: str | Path, record: PanopticRecord) -> np.ndarray:
    """A record's panoptic PNG as an id map whose non-zero ids are exactly its JSON segments (the rule of
    panopticapi, which refuses the same mismatches): one line naming the PNG and the first stray id."""
    png = Path(folder) / record.png_file
    ids = read_panoptic_png(png)
    present = set(np.unique(ids).tolist()) - {VOID}
    listed = {s["id"] for s in record.segments}
    if present - listed:
        raise LDMSegError(f"{png}: segment id {min(present - listed)} is in the PNG but not in its JSON entry")
    if listed - present:
        raise LDMSegError(f"{png}: segment id {min(listed - present)} is listed in the JSON but has no pixel in the "
                          "PNG")
    return ids


def is_plain_name(name: object) -> bool:
    """A file name from an input file that is safe to join to a folder: relative, no '..', no drive, non-empty."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return False
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts and not name.startswith(("/", "\\"))


def check_output_place(out: str | Path, is_file: bool = False) -> None:
    """Refuse, before any work, an output folder (or file) that cannot be one: an existing file where a folder
    is meant (or a folder or device where a file is), or a path below a file."""
    path = Path(out)
    if path.exists() and (not path.is_file() if is_file else not path.is_dir()):
        raise LDMSegError(f"{out}: exists and is not a {'regular file' if is_file else 'folder'}")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise LDMSegError(f"{out}: {parent} is a file, not a folder")
            break


def check_outputs_apart(out: str | Path, inputs: dict[str, str | Path | None], is_file: bool = False) -> None:
    """Refuse, before any work, an output that is, contains or lies inside one of the inputs (by flag name), so
    that no command ever overwrites what it reads, or that cannot be written where it is (check_output_place)."""
    target = Path(out).resolve()
    for flag, item in inputs.items():
        if not item or not Path(item).exists():  # a model name, a glob, stdin: nothing on disk to protect here
            continue
        source = Path(item).resolve()
        if target == source or target.is_relative_to(source) or source.is_relative_to(target):
            raise LDMSegError(f"{out}: the output would overlap the input {flag} {item}; choose another output")
    check_output_place(out, is_file)


class SkipLog:
    """Batch jobs go on past unreadable inputs: `attempt` runs a read, and on an LDMSegError remembers the input
    and names it on stderr (once some output exists: until then a job with nothing readable stays one plain
    error); `finish` writes OUT/skipped.json and raises SkippedInputs (exit 2) if any was skipped, after the good
    outputs are complete."""

    def __init__(self) -> None:
        self.skipped: list[dict] = []
        self.done = 0
        self._pending: list[str] = []

    def attempt(self, name: str, read: Callable[[], Any]) -> Any | None:
        try:
            return read()
        except LDMSegError as e:
            self.skipped.append({"input": name, "error": str(e)})
            self._pending.append(f"ldmseg: skipping {e}")
            if self.done:
                self._flush()
            return None

    def succeeded(self) -> None:
        self.done += 1
        self._flush()

    def _flush(self) -> None:
        for line in self._pending:
            print(line, file=sys.stderr)
        self._pending = []

    def finish(self, out: Path) -> None:
        if not self.skipped:
            return
        if not self.done:
            raise LDMSegError(f"no readable input: {self.skipped[0]['error']}"
                              + (f" (and {len(self.skipped) - 1} more)" if len(self.skipped) > 1 else ""))
        write_json(out / "skipped.json", self.skipped, indent=2)
        names = ", ".join(Path(s["input"]).name for s in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
        raise SkippedInputs(f"wrote {self.done} outputs to {out}; skipped {len(self.skipped)} unreadable input(s), "
                            f"listed in {out / 'skipped.json'}: {names}")
