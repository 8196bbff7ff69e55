"""Formats, synthetic scenes, readers, transforms and bit encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldmseg.data import formats, transforms
from ldmseg.data.bits import bits_to_ids, ids_to_bits
from ldmseg.data.datasets import ADE20KDataset, PanopticDataset, SampleConfig, SyntheticDataset, prepare_sample
from ldmseg.data.synthetic import SceneConfig, categories, generate_scene, perspective_depth
from ldmseg.errors import LDMSegError


def test_rgb_id_round_trip() -> None:
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 2**24 - 1, 12345]], np.uint32)
    assert (formats.rgb2id(formats.id2rgb(ids)) == ids).all()
    assert formats.rgb2id(np.array([[[1, 2, 3]]], np.uint8))[0, 0] == 1 + 2 * 256 + 3 * 65536
    assert formats.id2rgb(np.array([[1 + 2 * 256 + 3 * 65536]], np.int64)).tolist() == [[[1, 2, 3]]]
    for dtype in (np.int64, np.int32, np.uint16):  # whatever the map's dtype and layout: R, G, B bytes in order
        wide = ids.astype(dtype) if dtype != np.uint16 else (ids & 0xFFFF).astype(dtype)
        rgb = formats.id2rgb(wide.T)  # a transposed (non-contiguous) view
        assert rgb.dtype == np.uint8 and rgb.shape == (4, 2, 3) and rgb.flags.c_contiguous
        assert (formats.rgb2id(rgb) == wide.T).all()


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError), formats.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_scene_is_deterministic_and_consistent() -> None:
    cfg = SceneConfig.preset("default", 96)
    a, b = generate_scene(7, cfg), generate_scene(7, cfg)
    assert (a.image == b.image).all() and (a.ids == b.ids).all()
    assert not (generate_scene(8, cfg).image == a.image).all()
    cats = {c["id"]: c for c in categories()}
    present = set(np.unique(a.ids)) - {0}
    assert present == {s["id"] for s in a.segments}
    for s in a.segments:
        mask = a.ids == s["id"]
        assert s["area"] == mask.sum()
        assert (a.semantic[mask] == s["category_id"]).all()
        x, y, w, h = s["bbox"]
        assert mask[y:y + h, x:x + w].sum() == s["area"]
    assert (a.semantic[a.ids == 0] == 0).all()
    assert 0.0 <= a.depth.min() and a.depth.max() <= 1.0
    things = [s for s in a.segments if cats[s["category_id"]]["isthing"]]
    stuff_depth = a.depth[np.isin(a.ids, [s["id"] for s in a.segments if not cats[s["category_id"]]["isthing"]])]
    for s in things:  # things are nearer than any stuff (occlusion-consistent depth)
        assert a.depth[a.ids == s["id"]].max() < stuff_depth.min()


def test_object_depth_is_readable_from_perspective_cues() -> None:
    """Nearer objects sit lower in the frame and are drawn larger: depth a model can learn from the image,
    not a random number per object."""
    rng = np.random.default_rng(0)
    assert perspective_depth(1.0, 1.0, rng) < perspective_depth(0.5, 0.5, rng) < perspective_depth(0.0, 0.0, rng)
    rows, depths = [], []
    for i in range(12):
        scene = generate_scene(i, SceneConfig.preset("default", 128))
        cats = {c["id"]: c for c in categories()}
        for seg in scene.segments:
            if cats[seg["category_id"]]["isthing"] and seg["area"] > 200:
                ys = np.nonzero(scene.ids == seg["id"])[0]
                rows.append(ys.mean())
                depths.append(scene.depth[scene.ids == seg["id"]].mean())
    assert len(rows) > 30
    assert np.corrcoef(rows, depths)[0, 1] < -0.4  # lower in the frame -> nearer


def test_scene_knobs_and_dataset_diversity() -> None:
    counts = [len(generate_scene(i, SceneConfig.preset("dense", 128)).segments) for i in range(8)]
    easy = [len(generate_scene(i, SceneConfig.preset("easy", 128)).segments) for i in range(8)]
    assert np.mean(counts) > 3 * np.mean(easy)
    assert max(counts) > 40
    cats = {c["id"]: c for c in categories()}
    assert sum(c["isthing"] for c in cats.values()) >= 4 and sum(1 - c["isthing"] for c in cats.values()) >= 3
    seen = {s["category_id"] for i in range(20) for s in generate_scene(i, SceneConfig(size=64)).segments}
    assert len(seen) >= 10
    crowd = sum(s["iscrowd"] for i in range(40) for s in generate_scene(i, SceneConfig(size=64)).segments)
    assert crowd > 0


def test_synth_writer_and_panoptic_reader(synth_set: Path) -> None:
    data = json.loads((synth_set / "panoptic.json").read_text())
    assert len(data["annotations"]) == 6 and data["categories"][0]["isthing"] == 1
    ann = data["annotations"][0]
    ids = formats.read_panoptic_png(synth_set / "panoptic" / ann["file_name"])
    assert {s["id"] for s in ann["segments_info"]} == set(np.unique(ids)) - {0}
    depth = np.asarray(Image.open(synth_set / "depth" / ann["file_name"]))
    assert depth.dtype == np.uint16
    scene = generate_scene([3, 0], SceneConfig.preset("default", 64))
    assert (ids == scene.ids).all()

    ds = PanopticDataset(synth_set / "images", synth_set / "panoptic.json", synth_set / "panoptic",
                         SampleConfig(size=32, num_ids=128))
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["ids"].shape == (32, 32)
    assert -1 <= item["image"].min() and item["image"].max() <= 1
    assert item["ids"].max() < 128
    assert not torch.equal(ds[(0, 1)]["ids"], ds[(0, 2)]["ids"])  # fresh ids per draw
    assert torch.equal(ds[(0, 1)]["ids"], ds[(0, 1)]["ids"])  # ... but deterministic


def test_coco_reader_with_jpg_and_high_category_ids(tmp_path: Path) -> None:
    """COCO layout: .jpg images, category ids up to 200, no colour field, crowd -> VOID in training."""
    (tmp_path / "img").mkdir()
    (tmp_path / "pan").mkdir()
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(tmp_path / "img" / "000000000139.jpg")
    ids = np.zeros((10, 12), np.uint32)
    ids[:5] = 5000000
    ids[5:] = 3
    formats.write_panoptic_png(tmp_path / "pan" / "000000000139.png", ids)
    gt = {"images": [{"id": 139, "file_name": "000000000139.jpg", "width": 12, "height": 10}],
          "annotations": [{"image_id": 139, "file_name": "000000000139.png", "segments_info": [
              {"id": 5000000, "category_id": 200, "area": 60, "bbox": [0, 0, 12, 5], "iscrowd": 0},
              {"id": 3, "category_id": 1, "area": 60, "bbox": [0, 5, 12, 5], "iscrowd": 1}]}],
          "categories": [{"id": 1, "name": "person", "isthing": 1, "supercategory": "person"},
                         {"id": 200, "name": "rug", "isthing": 0, "supercategory": "floor"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    ds = PanopticDataset(tmp_path / "img", tmp_path / "gt.json", tmp_path / "pan", SampleConfig(size=8, num_ids=4))
    item = ds[0]
    assert (item["ids"][4:] == 0).all()  # crowd became VOID
    assert len(torch.unique(item["ids"][:4])) == 1 and item["ids"][0, 0] != 0


def test_ade20k_reduce_zero_label_applied_once(tmp_path: Path) -> None:
    for sub in ("images/validation", "annotations/validation"):
        (tmp_path / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images/validation/a.jpg")
    label = np.array([[0, 1, 150, 2]] * 4, np.uint8)
    Image.fromarray(label).save(tmp_path / "annotations/validation/a.png")
    ds = ADE20KDataset(tmp_path, sample=SampleConfig(size=4))
    sem = ds[0]["semantic"].numpy()
    assert (sem[0] == [255, 0, 149, 1]).all()
    raw = ADE20KDataset(tmp_path, sample=SampleConfig(size=4), reduce_zero_label=False)[0]["semantic"].numpy()
    assert (raw[0] == [0, 1, 150, 2]).all()  # ldmseg's semantic convention (0 = ignore), what training reads
    with pytest.raises(LDMSegError, match="annotation folder not found"):
        ADE20KDataset(tmp_path / "missing")


def test_transforms() -> None:
    ids = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]])
    assert (transforms.resize_labels(ids, (2, 2)) == [[1, 2], [3, 0]]).all()
    batch = np.stack([ids, ids.T])  # [B, H, W]: each map resized as on its own; x2 then /2 is exact
    up = transforms.resize_labels(batch, (8, 8))
    assert up.shape == (2, 8, 8) and (up[1] == transforms.resize_labels(ids.T, (8, 8))).all()
    assert (transforms.resize_labels(up, (4, 4)) == batch).all()
    assert transforms.fit_size((100, 50), 64, "pad") == (64, 32)
    assert transforms.fit_size((100, 50), 64, "squash") == (64, 64)
    segs = [{"id": 1, "area": 4, "iscrowd": 1}, {"id": 2, "area": 4, "iscrowd": 0}, {"id": 3, "area": 2}]
    out = transforms.void_segments(ids, segs, min_area=3)
    assert set(np.unique(out)) == {0, 2}
    flipped, = transforms.hflip(ids)
    assert (flipped[0] == [2, 2, 1, 1]).all()
    rng = np.random.default_rng(0)
    new = transforms.reassign_ids(ids, 8, rng)
    assert (new == 0).sum() == (ids == 0).sum()
    assert len(np.unique(new[new > 0])) == 3 and new.max() < 8
    for k in (1, 2, 3):  # a bijection between old and new ids
        assert len(np.unique(new[ids == k])) == 1


def test_crop_and_colour_augmentation_keep_labels_aligned() -> None:
    """A random crop shows a window of the frame (labels cut with the image, never resampled apart); colour jitter
    changes the photo only; both are deterministic per rng and off by default."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(64)[None], 48, axis=0)  # each column its own label: the crop's columns say where
    image = np.stack([labels * 4] * 3, axis=-1).astype(np.uint8)
    plain = prepare_sample(image, labels + 1, [], SampleConfig(size=64, reassign=False), rng, semantic=labels)
    assert plain["semantic"].unique().numel() == 64
    cfg = SampleConfig(size=64, reassign=False, crop_scale=0.5, color_jitter=0.4)
    a = prepare_sample(image, labels + 1, [], cfg, np.random.default_rng(5), semantic=labels)
    b = prepare_sample(image, labels + 1, [], cfg, np.random.default_rng(5), semantic=labels)
    assert all(torch.equal(a[k], b[k]) for k in a)
    seen = a["semantic"].unique()
    assert 32 <= seen.numel() < 64 and torch.equal(seen, torch.arange(int(seen[0]), int(seen[-1]) + 1))
    assert torch.equal(a["ids"], a["semantic"] + 1)
    brightness = (a["image"] + 1).mean() / (plain["image"] + 1)[:, :, int(seen[0]):int(seen[-1]) + 1].mean()
    assert not torch.isclose(brightness, torch.tensor(1.0), atol=1e-3)
    window = transforms.random_crop_box((48, 64), 0.5, np.random.default_rng(1))
    h, w = window[0].stop - window[0].start, window[1].stop - window[1].start
    assert 24 <= h <= 48 and abs(w / h - 64 / 48) < 0.1
    jittered = transforms.jitter_colors(image, 0.0, np.random.default_rng(2))
    assert np.array_equal(jittered, image)


def test_keep_largest_warns_once() -> None:
    ids = np.repeat(np.arange(1, 6), [5, 4, 3, 2, 1])[None]
    with pytest.warns(UserWarning, match="more than the 3"):
        out = transforms.keep_largest(ids, 3)
    assert set(np.unique(out)) == {0, 1, 2, 3}


def test_bits_round_trip_exact() -> None:
    ids = torch.randint(0, 256, (3, 17, 9), generator=torch.Generator().manual_seed(0))
    ids[1, 2:5, 3] = 0  # some VOID for sure
    bits = ids_to_bits(ids, 8)
    assert set(bits.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (bits.permute(0, 2, 3, 1)[ids == 0] == 0).all() and (ids == 0).any()
    assert torch.equal(bits_to_ids(bits), ids)
    assert torch.equal(bits[0, :, 0, 0], torch.tensor([(2 * ((int(ids[0, 0, 0]) >> k) & 1) - 1.0) if ids[0, 0, 0]
                                                       else 0.0 for k in range(8)]))
    with pytest.raises(ValueError):
        ids_to_bits(torch.tensor([[[256]]]), 8)


def test_synthetic_dataset_matches_written_scene() -> None:
    ds = SyntheticDataset(SceneConfig.preset("default", 32), SampleConfig(size=32, reassign=False), seed=3)
    assert (ds[0]["ids"].numpy() == generate_scene([3, 0], SceneConfig.preset("default", 32)).ids).all()


def test_preset_mix_alternates_scene_configs() -> None:
    mix = SceneConfig.presets("default+dense", 32)
    assert [c.num_objects for c in mix] == [SceneConfig.preset(p, 32).num_objects for p in ("default", "dense")]
    ds = SyntheticDataset(mix, SampleConfig(size=32, reassign=False, crowd_to_void=False), seed=3)
    for i in (0, 1, 2, 3):
        assert (ds[i]["ids"].numpy() == generate_scene([3, i], mix[i % 2]).ids).all()
    with pytest.raises(ValueError, match="unknown scene preset"):
        SceneConfig.presets("default+nope")


def test_mask_crops_focus_on_segments_and_are_deterministic() -> None:
    from ldmseg.data.datasets import MaskCrops

    sample = SampleConfig(size=96, num_ids=128)
    sources = [SyntheticDataset(SceneConfig.preset("dense", 96), sample, seed=3, render=False)]
    focused = MaskCrops(sources, crop=32, crops=6, seed=3, focus=1.0)
    item = focused[(5, 11)]["ids"]
    assert item.shape == (6, 32, 32) and torch.equal(item, focused[(5, 11)]["ids"])
    assert not torch.equal(item, focused[(5, 12)]["ids"])  # another sample seed: other crops
    full = sources[0][(5, 11)]["ids"]
    assert set(torch.unique(item).tolist()) <= set(torch.unique(full).tolist())  # crops of the item's own map
    assert all((c != 0).any() for c in item)  # centred on a segment: never an all-VOID crop
    with pytest.raises(LDMSegError, match="smaller than the crop"):
        MaskCrops(sources, crop=128, crops=1)[0]


def test_masks_only_scenes_and_the_coco_preset() -> None:
    cfg = SceneConfig.preset("coco", 256)
    masks_only = generate_scene([0, 1], cfg, render=False)
    assert (masks_only.image == 0).all() and masks_only.ids.max() > 0
    again = generate_scene([0, 1], cfg, render=False)
    assert np.array_equal(masks_only.ids, again.ids)
    small = [s["area"] < 32 * 32 / 4 for i in range(6) for s in generate_scene([0, i], cfg, render=False).segments]
    assert 0.15 < np.mean(small) < 0.7  # many small objects, as in COCO (at 512^2: < 32^2 px)


def test_panoptic_png_decoders_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """libspng (the fast path) and Pillow (the fallback) read the same ids, and a truncated file is one clean
    error on both paths."""
    ids = np.random.default_rng(3).integers(0, 1 << 24, (37, 53)).astype(np.uint32)
    formats.write_panoptic_png(tmp_path / "a.png", ids)
    Image.fromarray(formats.id2rgb(ids)).save(tmp_path / "interlaced.png", interlace=1)
    (tmp_path / "cut.png").write_bytes((tmp_path / "a.png").read_bytes()[:200])
    assert formats._spng is not None
    fast = [formats.read_panoptic_png(tmp_path / n) for n in ("a.png", "interlaced.png")]
    with pytest.raises(LDMSegError, match="cut.png: corrupt"):
        formats.read_panoptic_png(tmp_path / "cut.png")
    monkeypatch.setattr(formats, "_spng", None)
    slow = [formats.read_panoptic_png(tmp_path / n) for n in ("a.png", "interlaced.png")]
    with pytest.raises(LDMSegError, match="cut.png: corrupt"):
        formats.read_panoptic_png(tmp_path / "cut.png")
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype == np.uint32 and np.array_equal(a, b) and np.array_equal(a, ids)
