"""Random corruptions of valid COCO-panoptic files fed to `ldmseg evaluate` and `ldmseg visualize`: whatever the
damage, the answer is a result (exit 0) or one clean line (exit 2), never a traceback or a half-written output."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from ldmseg.cli import main


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
               "--class-agnostic", "--output", str(out)])
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
