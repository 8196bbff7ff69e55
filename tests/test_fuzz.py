"""Random corruptions of valid COCO-panoptic files fed to `ldmseg evaluate` and `ldmseg visualize`: whatever the
damage, the answer is a result (exit 0) or one clean line (exit 2), never a traceback or a half-written output. And
generated COCO *instances* records (hypothesis) fed to its reader: a checked, repeatable result or an LDMSegError."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ldmseg.cli import main
from ldmseg.data.coco_instances import (
    RLE_DIGITS,
    annotation_rle,
    load_instances,
    output_names,
    panoptic_from_instances,
    rle_string_counts,
)
from ldmseg.errors import LDMSegError


@pytest.fixture(scope="module")
def valid_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "s"
    assert main(["data", "synth", "--out", str(root), "--num", "2", "--resolution", "32"]) == 0
    return root


def corrupt_bytes(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["truncate", "flip", "splice", "empty"])
    if kind == "truncate":
        return data[: rng.randrange(len(data))]
    if kind == "empty":
        return b""
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    at = rng.randrange(len(buf))
    return bytes(buf[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + buf[at:])


def corrupt_json_values(text: str, rng: random.Random) -> str:
    """Valid JSON with a wrong value somewhere: a type swapped, a key dropped, a list emptied."""
    data = json.loads(text)
    ann = rng.choice(data["annotations"])
    seg = rng.choice(ann["segments_info"]) if ann["segments_info"] else ann
    key = rng.choice(sorted(seg))
    choice = rng.randrange(4)
    if choice == 0:
        seg[key] = rng.choice(["x", None, [], {}, -1, 1e300, True])
    elif choice == 1:
        del seg[key]
    elif choice == 2:
        ann["segments_info"] = rng.choice([None, 7, "many", [1, 2]])
    else:
        data[rng.choice(["annotations", "categories"])] = rng.choice([None, {}, 3, [None]])
    return json.dumps(data)


@pytest.mark.parametrize("seed", range(40))
def test_corrupted_inputs_never_crash(seed: int, valid_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture
                                      ) -> None:
    rng = random.Random(seed)
    work = tmp_path / "s"
    shutil.copytree(valid_set, work)
    target = rng.choice(["json_bytes", "json_values", "png"])
    if target == "png":
        png = rng.choice(sorted((work / "panoptic").glob("*.png")))
        png.write_bytes(corrupt_bytes(png.read_bytes(), rng))
    else:
        j = work / "panoptic.json"
        text = j.read_text()
        j.write_text(corrupt_json_values(text, rng) if target == "json_values" else
                     corrupt_bytes(text.encode(), rng).decode("utf-8", "replace"))
    out = tmp_path / "result.json"
    capsys.readouterr()
    rc = main(["evaluate", "--gt-json", str(valid_set / "panoptic.json"), "--gt-dir", str(valid_set / "panoptic"),
               "--pred-json", str(work / "panoptic.json"), "--pred-dir", str(work / "panoptic"), "--workers", "1",
               "--class-agnostic", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        assert len(err.splitlines()) == 1 and "error" in err and not out.exists()
    rc = main(["visualize", "--images", str(work / "images"), "--gt-json", str(work / "panoptic.json"), "--gt-dir",
               str(work / "panoptic"), "--out", str(tmp_path / "vis")])
    err = capsys.readouterr().err.strip()
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        assert "error" in err.splitlines()[-1]


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.just(2.5), st.just("1"), st.just([1]), st.just({}))
NUMBERS = st.one_of(st.integers(-40, 40), st.floats(allow_nan=True, allow_infinity=True), st.just(3e7),
                    st.just(10**30), st.booleans())


@st.composite
def runs(draw: st.DrawFn, height: int, width: int) -> list[int]:
    """Run lengths that cover height x width pixels exactly (COCO's uncompressed RLE)."""
    cuts = sorted(draw(st.lists(st.integers(0, height * width), max_size=6)))
    edges = [0, *cuts, height * width]
    return [b - a for a, b in zip(edges, edges[1:], strict=False)]


def compressed(counts: list[int], height: int, width: int) -> str:
    from pycocotools import mask as mask_utils

    flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(np.uint8)
    return mask_utils.encode(np.asfortranarray(flat.reshape(width, height).T))["counts"].decode()


@st.composite
def segmentations(draw: st.DrawFn, height: int, width: int, clean: bool) -> object:
    """Valid polygons and RLE (listed or compressed) of the image and, unless `clean`, every way of getting them
    wrong."""
    points = st.lists(st.tuples(st.floats(0, width), st.floats(0, height)), min_size=3, max_size=6)
    good, bad = ["polygon", "rle", "rle-string"], ["bad-polygon", "bad-rle-string", "bad-rle", "junk"]
    kind = draw(st.sampled_from(good if clean else good + 2 * bad))
    if kind == "polygon":
        return [[v for point in draw(points) for v in point] for _ in range(draw(st.integers(1, 2)))]
    if kind == "bad-polygon":
        return draw(st.lists(st.one_of(st.lists(NUMBERS, max_size=10), JUNK), max_size=3))
    counts = draw(runs(height, width))
    if kind == "rle":
        return {"size": [height, width], "counts": counts}
    if kind == "rle-string":
        return {"size": [height, width], "counts": compressed(counts, height, width)}
    if kind == "bad-rle-string":
        text = compressed(counts, height, width)
        cut = draw(st.integers(0, len(text)))
        tail = draw(st.text(st.sampled_from(RLE_DIGITS + " ~"), max_size=3))
        return {"size": [height, width], "counts": text[:cut] + tail}
    if kind == "bad-rle":
        return {"size": draw(st.one_of(st.just([height, width]), st.lists(st.integers(0, 9), max_size=3), JUNK)),
                "counts": draw(st.one_of(st.lists(st.one_of(st.integers(-2, 200), JUNK), max_size=6), JUNK))}
    return draw(JUNK)


@st.composite
def instance_sets(draw: st.DrawFn) -> dict:
    """A small COCO instances JSON: half of them well-formed, the others with a few faults (each field one time in
    eight, most segmentations): ids that repeat, file names that collide, values of any type."""
    clean = draw(st.booleans())

    def pick(valid: object, faulty: st.SearchStrategy) -> object:
        return valid if clean or draw(st.integers(0, 7)) else draw(faulty)

    images, sizes = [], []
    for k in range(draw(st.integers(1, 2))):
        height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        sizes.append((height, width))
        images.append({"id": pick(k + 1, st.integers(1, 3)), "height": pick(height, JUNK), "width": width,
                       "file_name": pick(f"{k}.jpg", st.sampled_from(["0.png", "d/0.jpg", "", "../x.jpg", ".", 7]))})
    categories = [{"id": pick(c, JUNK), "name": pick("car", st.none())} for c in range(1, draw(st.integers(2, 3)))]
    annotations = []
    for j in range(draw(st.integers(0, 5))):
        k = draw(st.integers(0, len(images) - 1))
        annotations.append({"id": pick(j + 1, st.integers(1, 3)), "image_id": pick(images[k]["id"], JUNK),
                            "category_id": pick(1, st.integers(0, 3)), "iscrowd": pick(j % 2, JUNK),
                            "segmentation": draw(segmentations(*sizes[k], clean))})
    return {"images": images, "annotations": annotations, "categories": categories}


def runs_as_mask(counts: list[int], height: int, width: int) -> np.ndarray:
    """The pixels that run lengths paint (column-major, starting with 0s), as COCO defines RLE."""
    flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool)
    return flat.reshape(width, height).T


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance_sets())
def test_instance_records_give_a_checked_result_or_one_error(data: dict) -> None:
    from pycocotools import mask as mask_utils

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "instances.json"
        path.write_text(json.dumps(data))
        try:
            instances = load_instances(path)
            output_names(instances)
        except LDMSegError as e:
            assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
            event("refused")
            return
    event("converted")
    for image in instances.images:
        size = (image.height, image.width)
        for ann in image.annotations:  # every RLE accepted covers the image exactly, as pycocotools decodes it
            seg = ann["segmentation"]
            if isinstance(seg, dict):
                counts = seg["counts"] if isinstance(seg["counts"], list) else rle_string_counts(seg["counts"], path,
                                                                                                  "")
                decoded = mask_utils.decode(annotation_rle(ann, *size)).astype(bool)
                assert sum(counts) == image.height * image.width
                assert np.array_equal(decoded, runs_as_mask(counts, *size))
        ids, segments = panoptic_from_instances(image)
        again, segments_again = panoptic_from_instances(image)
        assert np.array_equal(ids, again) and segments == segments_again and ids.shape == size
        assert [s["area"] for s in segments] == [int((ids == s["id"]).sum()) for s in segments]
