"""Pictures people look at: colourised panoptic maps, overlays, grids, plots."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw


def id_colours(ids: np.ndarray) -> np.ndarray:
    """Stable, well-spread colour per id (golden-ratio hues from a hash); id 0 (VOID) is black. Colours are
    computed once per distinct id and looked up (a full-size map has millions of pixels, few ids)."""
    return colour_lookup(ids)(np.asarray(ids))


def colour_lookup(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """id_colours as a function built once for a whole map, so that bands of it can be coloured one at a time."""
    ids = np.asarray(ids)
    if ids.size and ids.min() >= 0 and ids.max() < 1 << 20:
        table = _hashed_colours(np.arange(int(ids.max()) + 1, dtype=np.uint64))
        return lambda part: table[part]
    uniq = np.unique(ids)
    table = _hashed_colours(uniq.astype(np.uint64))
    return lambda part: table[np.searchsorted(uniq, part)]


def row_bands(height: int, width: int, pixels: int = 1 << 20) -> list[tuple[int, int]]:
    """(start, stop) row ranges of about `pixels` each: full-size pictures (81 MP and more) are blended band by
    band, so that their float temporaries stay a few MB instead of several GB."""
    step = max(1, pixels // max(width, 1))
    return [(r, min(r + step, height)) for r in range(0, height, step)]


def _hashed_colours(ids: np.ndarray) -> np.ndarray:
    """[N] uint64 ids -> [N, 3] uint8 colours (HSV from a multiplicative hash)."""
    h = (ids * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    hue = (h.astype(np.float64) / 2**32 + ids.astype(np.float64) * 0.61803398875) % 1.0
    sat = 0.55 + 0.4 * ((h >> np.uint64(8)) % np.uint64(100)).astype(np.float64) / 100
    val = 0.7 + 0.3 * ((h >> np.uint64(16)) % np.uint64(100)).astype(np.float64) / 100
    i = np.floor(hue * 6).astype(int) % 6
    f = hue * 6 - np.floor(hue * 6)
    p, q, t = val * (1 - sat), val * (1 - f * sat), val * (1 - (1 - f) * sat)
    table = [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)]
    rgb = np.zeros(ids.shape + (3,))
    for k, (r, g, b) in enumerate(table):
        sel = i == k
        rgb[sel] = np.stack([r[sel], g[sel], b[sel]], -1)
    rgb[ids == 0] = 0
    return (rgb * 255).round().astype(np.uint8)


def segment_borders(ids: np.ndarray) -> np.ndarray:
    """Boolean map of pixels whose right or lower neighbour has another id."""
    border = np.zeros(ids.shape, bool)
    border[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    border[:-1] |= ids[:-1] != ids[1:]
    return border


def colorize(ids: np.ndarray, borders: bool = True) -> np.ndarray:
    """Panoptic id map -> RGB picture: one colour per id, VOID black, white segment borders."""
    rgb = id_colours(ids)
    if borders:
        rgb[segment_borders(ids)] = 255
    return rgb


def match_ids(reference: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`ids` relabelled for side-by-side pictures: a segment that matches a reference segment (IoU > 0.5, VOID
    left out, PQ's rule) takes that segment's id, hence its colour; the others take ids the reference does not
    use, so no unmatched segment borrows a colour."""
    ref, ids = np.asarray(reference, np.int64), np.asarray(ids, np.int64)
    base = int(ids.max(initial=0)) + 1
    keys, overlap = np.unique(ref.ravel() * base + ids.ravel(), return_counts=True)
    pairs = np.stack([keys // base, keys % base])
    ref_area = dict(zip(*np.unique(ref, return_counts=True), strict=True))
    own_area = dict(zip(*np.unique(ids, return_counts=True), strict=True))
    taken = set(ref_area)
    mapping = {0: 0}
    for (r, s), both in zip(pairs.T.tolist(), overlap.tolist(), strict=True):
        if r and s and both / (ref_area[r] + own_area[s] - both) > 0.5:
            mapping[s] = r
    fresh = (n for n in range(1, 1 << 24) if n not in taken)
    for s in own_area:
        if s not in mapping:
            mapping[s] = s if s not in taken else next(fresh)
            taken.add(mapping[s])
    keys = np.array(sorted(own_area))
    return np.array([mapping[k] for k in keys.tolist()], np.int64)[np.searchsorted(keys, ids)]


def class_palette(labels: np.ndarray, categories: list[dict] | None = None) -> np.ndarray:
    """Class-id map -> RGB: each category's own colour where `categories` gives one, else a stable colour per
    id; 0 (VOID / ignore) black."""
    rgb = id_colours(labels)
    for c in categories or []:
        if "color" in c:
            rgb[labels == c["id"]] = c["color"]
    return rgb


def colorize_semantic(labels: np.ndarray, categories: list[dict] | None = None) -> np.ndarray:
    """`class_palette` with white borders between classes."""
    rgb = class_palette(labels, categories)
    rgb[segment_borders(labels)] = 255
    return rgb


DEPTH_STOPS = np.array([[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]], np.float64)


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Depth in [0, 1] -> RGB along a perceptual ramp (near = dark blue-purple, far = yellow)."""
    x = np.clip(np.asarray(depth, np.float64), 0, 1) * (len(DEPTH_STOPS) - 1)
    lo = np.minimum(np.floor(x).astype(int), len(DEPTH_STOPS) - 2)
    f = (x - lo)[..., None]
    return ((1 - f) * DEPTH_STOPS[lo] + f * DEPTH_STOPS[lo + 1]).round().astype(np.uint8)


def blend(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Colours blended over the image everywhere (semantic maps), band by band."""
    out = np.empty(image.shape, np.uint8)
    for r0, r1 in row_bands(*image.shape[:2]):
        mixed = (1 - alpha) * image[r0:r1].astype(np.float32) + alpha * colours[r0:r1].astype(np.float32)
        out[r0:r1] = mixed.round()
    return out


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Colourised ids blended over the image (VOID left as the image), with white borders; band by band."""
    lookup = colour_lookup(ids)
    out = np.empty(image.shape, np.uint8)
    for r0, r1 in row_bands(*ids.shape):
        part = ids[r0:r1]
        img = image[r0:r1].astype(np.float32)
        mixed = np.where((part != 0)[..., None], (1 - alpha) * img + alpha * lookup(part).astype(np.float32), img)
        mixed[segment_borders(ids[r0:r1 + 1])[:r1 - r0]] = 255  # one row more: the lower neighbours
        out[r0:r1] = mixed.round()
    return out


def grid(panels: list[np.ndarray], titles: list[str] | None = None, pad: int = 4) -> np.ndarray:
    """Panels side by side (resized to the first one's height) with optional titles on top."""
    h = panels[0].shape[0]
    resized = []
    for p in panels:
        p = p if p.ndim == 3 else np.repeat(p[..., None], 3, -1)
        if p.shape[0] != h:
            w = round(p.shape[1] * h / p.shape[0])
            p = np.asarray(Image.fromarray(p).resize((w, h), Image.NEAREST))
        resized.append(p)
    top = 14 if titles else 0
    width = sum(p.shape[1] for p in resized) + pad * (len(resized) + 1)
    canvas = Image.new("RGB", (width, h + top + 2 * pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = pad
    for k, p in enumerate(resized):
        canvas.paste(Image.fromarray(p), (x, top + pad))
        if titles:
            draw.text((x, 1), titles[k], fill=(0, 0, 0))
        x += p.shape[1] + pad
    return np.asarray(canvas)


def class_colours(labels: np.ndarray, categories: list[dict] | None) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of every class present in a class-id map, as `colorize_semantic` paints it; VOID last."""
    names = {c["id"]: c.get("name", str(c["id"])) for c in categories or []}
    present = [int(c) for c in np.unique(labels)]
    swatches = class_palette(np.array(present, dtype=np.int64), categories)
    entries = [(names.get(c, f"class {c}"), tuple(int(v) for v in rgb)) for c, rgb in zip(present, swatches,
                                                                                           strict=True) if c]
    if 0 in present:
        entries.append(("unlabelled / VOID", (0, 0, 0)))
    return entries


def with_legend(picture: np.ndarray, entries: list[tuple[str, tuple[int, int, int]]], row: int = 14) -> np.ndarray:
    """`picture` with a white panel on its right listing each entry as a colour swatch and its name."""
    if not entries:
        return picture
    width = 24 + 7 * max(len(name) for name, _ in entries)
    h = max(picture.shape[0], row * len(entries) + 8)
    canvas = Image.new("RGB", (picture.shape[1] + width, h), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = picture.shape[1] + 4
    for k, (name, rgb) in enumerate(entries):
        y = 4 + k * row
        draw.rectangle([x, y, x + 10, y + 10], fill=rgb, outline=(0, 0, 0))
        draw.text((x + 14, y), name, fill=(0, 0, 0))
    return np.asarray(canvas)


def with_depth_bar(picture: np.ndarray, width: int = 14) -> np.ndarray:
    """`picture` (a `colorize_depth` map or a grid ending in one) with the depth ramp as a bar on its right,
    labelled near (0) at the top and far (1) at the bottom."""
    h = picture.shape[0]
    ramp = colorize_depth(np.linspace(0, 1, h)[:, None].repeat(width, 1))
    canvas = Image.new("RGB", (picture.shape[1] + width + 40, h), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    canvas.paste(Image.fromarray(ramp), (picture.shape[1] + 4, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((picture.shape[1] + width + 6, 0), "near", fill=(0, 0, 0))
    draw.text((picture.shape[1] + width + 6, max(h - 12, 12)), "far", fill=(0, 0, 0))
    return np.asarray(canvas)
