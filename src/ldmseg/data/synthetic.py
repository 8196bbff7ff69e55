"""Procedural synthetic scenes: the embedded default dataset (no download needed).

A scene is irregular *stuff* regions (sky, ground, water, wall — each with its own texture)
under occluding *things* of seven shape families (solid, holed, star-shaped, thin). Every
object gets a random colour, texture, size and rotation; the difficulty knobs in
`SceneConfig` control how much the image content (not a colour threshold) is needed to
segment it. Per scene we return the image, panoptic ids with categories, a semantic map and
a relative depth map consistent with the occlusion order and readable from the image: a ground plane
nearer towards the bottom, sky at infinity, and objects nearer the lower and the larger they are drawn
(`perspective_depth`).
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

THING_CATEGORIES = ["ellipse", "box", "triangle", "star", "blob", "ring", "stick", "cable"]
STUFF_CATEGORIES = ["sky", "ground", "water", "wall"]
THIN_THINGS = {"stick", "cable"}


def categories() -> list[dict]:
    """COCO-style category list: things first (ids 1..8), then stuff (ids 9..12)."""
    out = []
    names = THING_CATEGORIES + STUFF_CATEGORIES
    for i, name in enumerate(names, start=1):
        hue = (i * 0.61803) % 1.0
        colour = [int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.65, 0.95)]
        out.append({"id": i, "name": name, "supercategory": "shape" if i <= len(THING_CATEGORIES) else "stuff",
                    "isthing": int(i <= len(THING_CATEGORIES)), "color": colour})
    return out


CATEGORY_ID = {c["name"]: c["id"] for c in categories()}


@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the scene generator. Defaults are the benchmark difficulty."""

    size: int = 128
    num_objects: tuple[int, int] = (4, 14)
    object_scale: tuple[float, float] = (0.04, 0.3)  # object radius as a fraction of the image size
    thin_fraction: float = 0.15  # chance that an object is thin (stick / cable)
    stuff_regions: tuple[int, int] = (2, 5)
    texture_strength: float = 0.6  # 0 = flat colours, 1 = strong patterns
    color_similarity: float = 0.35  # 0 = random object colours, 1 = objects take the background colour
    pixel_noise: float = 0.03
    crowd_prob: float = 0.15
    void_prob: float = 0.25
    parts_prob: float = 0.0  # chance that a solid object gets limbs / appendages (articulated, like real masks)

    @staticmethod
    def preset(name: str, size: int = 128) -> SceneConfig:
        """'default' (benchmark), 'easy' (flat colours), 'dense' (many small/thin segments, for the mask AE),
        'coco' (mask statistics of COCO panoptic, for the mask AE: 1-60 objects, log-uniform sizes so that
        ~35 % of objects are under 32^2 px at 512^2, half of the solid ones articulated, few thin ones)."""
        presets: dict[str, dict[str, Any]] = {
            "default": {},
            "easy": {"texture_strength": 0.0, "color_similarity": 0.0, "pixel_noise": 0.0, "num_objects": (2, 6)},
            "dense": {"num_objects": (10, 110), "object_scale": (0.008, 0.25), "thin_fraction": 0.25,
                      "stuff_regions": (2, 7)},
            "coco": {"num_objects": (1, 60), "object_scale": (0.01, 0.35), "thin_fraction": 0.08,
                     "stuff_regions": (1, 6), "parts_prob": 0.5, "crowd_prob": 0.1, "void_prob": 0.3},
        }
        if name not in presets:
            raise ValueError(f"unknown scene preset {name!r}; choose from {sorted(presets)}")
        return replace(SceneConfig(size=size), **presets[name])

    @staticmethod
    def presets(spec: str, size: int = 128) -> list[SceneConfig]:
        """A '+'-separated mix of presets, e.g. 'default+dense' (scenes alternate between them)."""
        return [SceneConfig.preset(name.strip(), size) for name in spec.split("+")]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Scene:
    """One generated scene. `ids`: 0 = VOID; `semantic`: category id, 0 = ignore; `depth` in [0, 1]."""

    image: np.ndarray  # uint8 HxWx3
    ids: np.ndarray  # int32 HxW
    segments: list[dict] = field(default_factory=list)  # COCO segments_info
    semantic: np.ndarray | None = None  # uint8 HxW
    depth: np.ndarray | None = None  # float32 HxW


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled bicubically."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    up = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(up), 0.0, 1.0)


def _random_colour(rng: np.random.Generator, hue: float | None = None, spread: float = 1.0) -> np.ndarray:
    h = rng.random() if hue is None else (hue + rng.normal(0, 0.04 * spread)) % 1.0
    s, v = rng.uniform(0.3, 0.9), rng.uniform(0.35, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _stuff_texture(rng: np.random.Generator, name: str, yy: np.ndarray, xx: np.ndarray, strength: float
                   ) -> np.ndarray:
    """Full-image texture for one stuff category, HxWx3 float in [0, 1]."""
    size = yy.shape[0]
    base = _random_colour(rng, {"sky": 0.58, "ground": 0.1, "water": 0.5, "wall": 0.03}[name])
    if name == "sky":
        top = _random_colour(rng, 0.6)
        tex = top[None, None] * (1 - yy[..., None]) + base[None, None] * yy[..., None]
        tex = tex + strength * 0.25 * (smooth_noise(rng, size, 5)[..., None] - 0.5)
    elif name == "ground":
        grain = rng.random((size, size)).astype(np.float32) - 0.5
        tex = base[None, None] * (1 + strength * (0.6 * grain + 0.5 * (smooth_noise(rng, size, 9) - 0.5)))[..., None]
    elif name == "water":
        freq, phase = rng.uniform(20, 50), rng.uniform(0, 6.3)
        waves = np.sin(freq * yy + 3 * np.sin(6 * xx + phase))
        tex = base[None, None] * (1 + strength * 0.3 * waves)[..., None]
    else:  # wall: bricks
        rows = rng.integers(6, 16)
        row = np.floor(yy * rows)
        shift = (row % 2) * 0.5 / rows * 2
        mortar = ((yy * rows) % 1 < 0.12) | (((xx + shift) * rows / 2) % 1 < 0.06)
        tex = np.broadcast_to(base, (size, size, 3)).copy()
        tex[mortar] *= 1 - 0.5 * strength
    return np.clip(tex, 0, 1).astype(np.float32)


def _stuff_layout(rng: np.random.Generator, cfg: SceneConfig, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Irregular stuff regions: Voronoi cells on a noise-warped grid. Returns a category id per pixel."""
    size = cfg.size
    k = int(rng.integers(cfg.stuff_regions[0], cfg.stuff_regions[1] + 1))
    amp = rng.uniform(0.05, 0.25)
    wy = yy + amp * (smooth_noise(rng, size, 4) - 0.5)
    wx = xx + amp * (smooth_noise(rng, size, 4) - 0.5)
    seeds = rng.random((k, 2))
    dist = (wy[None] - seeds[:, 0, None, None]) ** 2 + ((wx[None] - seeds[:, 1, None, None]) * 0.6) ** 2
    region = np.argmin(dist, axis=0)
    cats = []
    for sy, _ in seeds:  # sky prefers the top, ground the bottom
        p = np.array([1.5 - sy, 0.5 + sy, 0.6, 0.6])
        cats.append(CATEGORY_ID[STUFF_CATEGORIES[rng.choice(4, p=p / p.sum())]])
    return np.array(cats)[region]


def _shape_polygon(rng: np.random.Generator, family: str, r: float) -> list[np.ndarray]:
    """Polygons (first filled, later ones cut out) of a shape of radius r centred on 0."""
    def ellipse(a: float, b: float, n: int = 48) -> np.ndarray:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([a * np.cos(t), b * np.sin(t)], 1)

    if family == "ellipse":
        return [ellipse(r, r * rng.uniform(0.4, 1.0))]
    if family == "box":
        a, b = r, r * rng.uniform(0.3, 1.0)
        return [np.array([[-a, -b], [a, -b], [a, b], [-a, b]])]
    if family == "triangle":
        t = np.sort(rng.uniform(0, 2 * np.pi, 3))
        t = t if np.ptp(t) > 2.0 else np.array([0.0, 2.1, 4.2]) + t[0]
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]
    if family == "star":
        n = int(rng.integers(4, 8))
        t = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        rad = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.3, 0.6))
        return [np.stack([rad * np.cos(t), rad * np.sin(t)], 1)]
    if family == "blob":
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        bumps = sum(rng.uniform(0, 0.25) * np.cos(k * t + rng.uniform(0, 6.3)) for k in range(2, 6))
        rad = r * (1 + bumps)
        return [np.stack([rad * np.cos(t), rad * np.sin(t)], 1)]
    if family == "ring":
        b = rng.uniform(0.6, 1.0)
        inner = rng.uniform(0.4, 0.75)
        return [ellipse(r, r * b), ellipse(r * inner, r * b * inner)]
    raise ValueError(family)


def _draw_parts(rng: np.random.Generator, draw: ImageDraw.ImageDraw, cy: float, cx: float, r: float) -> None:
    """1-4 limbs from the centre outwards (thick segments), half of them ending in a knob: people, animals,
    furniture legs in the sense of their masks."""
    for _ in range(int(rng.integers(1, 5))):
        angle, length = rng.uniform(0, 2 * np.pi), r * rng.uniform(1.0, 1.9)
        ex, ey = cx + length * np.cos(angle), cy + length * np.sin(angle)
        draw.line([(cx, cy), (ex, ey)], fill=1, width=max(1, int(round(r * rng.uniform(0.15, 0.4)))))
        if rng.random() < 0.5:
            k = r * rng.uniform(0.2, 0.45)
            draw.ellipse([ex - k, ey - k, ex + k, ey + k], fill=1)


def _rasterise(rng: np.random.Generator, family: str, size: int, cy: float, cx: float, r: float,
               parts_prob: float = 0.0) -> np.ndarray:
    """Boolean mask of one rotated object, drawn with PIL (solid ones with limbs at `parts_prob`)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    if family == "stick":
        width = max(1.0, r * rng.uniform(0.04, 0.12))
        end = rot @ np.array([r * 1.5, 0.0])
        draw.line([(cx - end[0], cy - end[1]), (cx + end[0], cy + end[1])], fill=1, width=int(round(width)))
    elif family == "cable":
        n = int(rng.integers(4, 9))
        steps = rng.normal(0, 1, (n, 2)) * r * 0.6 + rot @ np.array([r * 0.5, 0.0])
        pts = np.cumsum(steps, 0) - steps.sum(0) / 2 + [cx, cy]
        width = max(1, int(round(r * rng.uniform(0.03, 0.1))))
        draw.line([tuple(p) for p in pts], fill=1, width=width, joint="curve")
    else:
        for k, poly in enumerate(_shape_polygon(rng, family, r)):
            pts = poly @ rot.T + [cx, cy]
            draw.polygon([tuple(p) for p in pts], fill=1 if k == 0 else 0)
        if parts_prob > 0 and rng.random() < parts_prob:
            _draw_parts(rng, draw, cy, cx, r)
    return np.asarray(canvas, dtype=bool)


def _thing_texture(rng: np.random.Generator, colour: np.ndarray, shape: tuple[int, int], strength: float
                   ) -> np.ndarray:
    """Texture patch for one object: flat, stripes, checker or mottled, with a shading ramp."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(4)
    theta, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.8)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    if kind == 0:
        pattern = np.zeros_like(u)
    elif kind == 1:
        pattern = np.sign(np.sin(u * freq))
    elif kind == 2:
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        pattern = np.sign(np.sin(u * freq * 0.6) * np.sin(v * freq * 0.6))
    else:
        pattern = (rng.random((h, w)) - 0.5) * 2
    shade = 1 + 0.25 * strength * (u / max(h, w, 1) - 0.5)
    tex = colour[None, None] * (shade * (1 + 0.35 * strength * pattern))[..., None]
    return np.clip(tex, 0, 1)


def _paint_object(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, cfg: SceneConfig) -> None:
    """Texture one object into the image: a random colour pulled towards what lies beneath it."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    local_bg = image[mask].mean(0)
    colour = _random_colour(rng)
    colour = (1 - cfg.color_similarity) * colour + cfg.color_similarity * local_bg
    colour = np.clip(colour + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
    tex = _thing_texture(rng, colour, (y1 - y0, x1 - x0), cfg.texture_strength)
    sub = mask[y0:y1, x0:x1]
    image[y0:y1, x0:x1][sub] = tex[sub]


OBJECT_DEPTH = (0.05, 0.58)  # things lie in front of every stuff region (ground starts at 0.62)
DEPTH_JITTER = 0.02  # what the perspective cues leave unexplained (std, in depth units)


def perspective_depth(row: float, scale: float, rng: np.random.Generator) -> float:
    """An object's depth from the cues an image shows: nearer objects sit lower in the frame (`row`, the centre's
    height in [0, 1] from the top) and are drawn larger (`scale`, the size's position in the preset's log-range,
    0..1), half each, plus a little jitter. Objects are painted far to near, so depth agrees with occlusion."""
    nearness = 0.5 * float(np.clip(row, 0.0, 1.0)) + 0.5 * scale
    far, near = OBJECT_DEPTH[1], OBJECT_DEPTH[0]
    return float(np.clip(far - (far - near) * nearness + rng.normal(0, DEPTH_JITTER), near, far))


def generate_scene(seed: int | list[int], cfg: SceneConfig = SceneConfig(), render: bool = True) -> Scene:
    """Generate one scene, deterministically from `seed`.

    render=False builds the masks alone (ids, segments, semantic, depth; a blank image) for the mask AE,
    several times faster. It skips the texture draws, so it is another scene than the rendered one of the
    same seed, drawn from the same distribution.
    """
    rng = np.random.default_rng(seed)
    size = cfg.size
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size

    stuff = _stuff_layout(rng, cfg, yy, xx)
    image = np.zeros((size, size, 3), np.float32)
    depth = np.where(stuff == CATEGORY_ID["sky"], 1.0, 0.62 + 0.33 * (1 - yy)).astype(np.float32)
    labels = np.zeros((size, size), np.int32)  # provisional segment index per pixel
    seg_cat, seg_crowd = [], []
    for cat in np.unique(stuff):
        name = STUFF_CATEGORIES[cat - CATEGORY_ID[STUFF_CATEGORIES[0]]]
        region = stuff == cat
        if render:
            image[region] = _stuff_texture(rng, name, yy, xx, cfg.texture_strength)[region]
        seg_cat.append(int(cat))
        seg_crowd.append(0)
        labels[region] = len(seg_cat)

    n_obj = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    crowd_at = int(rng.integers(n_obj)) if rng.random() < cfg.crowd_prob and n_obj > 0 else -1
    lo, hi = np.log(cfg.object_scale[0] * size), np.log(cfg.object_scale[1] * size)
    placements = []
    for k in range(n_obj):
        thin = rng.random() < cfg.thin_fraction
        family = rng.choice(sorted(THIN_THINGS)) if thin else rng.choice(
            [c for c in THING_CATEGORIES if c not in THIN_THINGS])
        cy, cx = rng.uniform(-0.1, 1.1, 2) * size
        log_r = rng.uniform(lo, hi)
        scale = 0.0 if k == crowd_at else (log_r - lo) / max(hi - lo, 1e-6)
        placements.append((str(family), cy, cx, float(np.exp(log_r)), k == crowd_at,
                           perspective_depth(cy / size, scale, rng)))
    for family, cy, cx, r, crowd, obj_depth in sorted(placements, key=lambda p: -p[-1]):  # far to near
        if crowd:  # a crowd: a tight cluster of small objects of one category, one segment
            mask = np.zeros((size, size), bool)
            for _ in range(int(rng.integers(5, 12))):
                oy, ox = rng.normal(0, 0.06 * size, 2)
                mask |= _rasterise(rng, family, size, cy + oy, cx + ox, size * rng.uniform(0.02, 0.05))
        else:
            mask = _rasterise(rng, family, size, cy, cx, r, cfg.parts_prob)
        if not mask.any():
            continue
        if render:
            _paint_object(rng, image, mask, cfg)
        depth[mask] = obj_depth
        seg_cat.append(CATEGORY_ID[family])
        seg_crowd.append(int(crowd))
        labels[mask] = len(seg_cat)

    semantic = np.zeros((size, size), np.uint8)
    lut_cat = np.array([0] + seg_cat, np.uint8)
    semantic[:] = lut_cat[labels]
    if rng.random() < cfg.void_prob:  # unlabeled blobs: content is visible, the label is VOID
        for _ in range(int(rng.integers(1, 3))):
            vy, vx = rng.uniform(0, 1, 2) * size
            labels[_rasterise(rng, "blob", size, vy, vx, size * rng.uniform(0.03, 0.12))] = 0
        semantic[labels == 0] = 0

    if render:
        ramp = 1 + rng.uniform(-0.15, 0.15) * (xx - 0.5) + rng.uniform(-0.15, 0.15) * (yy - 0.5)
        image = image * ramp[..., None] + rng.normal(0, cfg.pixel_noise, image.shape)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)

    ids, segments = _renumber(labels, seg_cat, seg_crowd)
    return Scene(image=image, ids=ids, segments=segments, semantic=semantic, depth=depth)


def _renumber(labels: np.ndarray, seg_cat: list[int], seg_crowd: list[int]) -> tuple[np.ndarray, list[dict]]:
    """Drop fully hidden segments, number the rest 1..K and build COCO segments_info."""
    counts = np.bincount(labels.ravel(), minlength=len(seg_cat) + 1)
    lut = np.zeros(len(seg_cat) + 1, np.int32)
    segments = []
    for k in range(1, len(seg_cat) + 1):
        if counts[k] == 0:
            continue
        lut[k] = len(segments) + 1
        segments.append({"id": int(lut[k]), "category_id": seg_cat[k - 1], "iscrowd": seg_crowd[k - 1],
                         "area": int(counts[k])})
    ids = lut[labels]
    for seg in segments:
        ys, xs = np.nonzero(ids == seg["id"])
        seg["bbox"] = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
    return ids, segments


def write_dataset(out: str | Path, num: int, cfg: SceneConfig, seed: int = 0, progress: bool = True) -> Path:
    """Write `num` scenes in COCO-panoptic layout (images/, panoptic/, panoptic.json, semantic/, depth/).

    Scene i is `generate_scene([seed, i], cfg)`, the same scene `SyntheticDataset(seed=seed)[i]` draws.
    Every file is written atomically and the JSON last, so an interrupted run leaves no index.
    """
    from tqdm import tqdm

    from ldmseg.data import formats

    out = Path(out)
    images, annotations = [], []
    for i in tqdm(range(num), desc="synthesising", disable=not progress, unit="scene"):
        scene = generate_scene([seed, i], cfg)
        name = f"{i:06d}"
        formats.write_png(out / "images" / f"{name}.png", scene.image)
        formats.write_panoptic_png(out / "panoptic" / f"{name}.png", scene.ids)
        formats.write_png(out / "semantic" / f"{name}.png", scene.semantic)
        formats.write_depth_png(out / "depth" / f"{name}.png", scene.depth)
        images.append({"id": i, "file_name": f"{name}.png", "width": cfg.size, "height": cfg.size})
        annotations.append({"image_id": i, "file_name": f"{name}.png", "segments_info": scene.segments})
    formats.write_json(out / "panoptic.json", {"info": {"description": "ldmseg synthetic scenes", "seed": seed,
                                                         "config": cfg.to_dict()},
                                               "images": images, "annotations": annotations,
                                               "categories": categories()})
    return out
