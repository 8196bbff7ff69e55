"""The fuzz suite's harness (tests/test_fuzz_cases.py): a world of tiny inputs per case, the commands the cases
run, the case registry, and the guards every case runs under (no network, a time limit, digests of files)."""


from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ldmseg.weights import resolve_model_path, resolve_pipeline_path


@dataclass
class World:
    """A copy of the tiny set under `root/in`, the output under `root/out`, env vars for the case, and what its
    error line must name (any one of them: the flag, file or key at fault)."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    named: tuple[str, ...] = ()

    @property
    def gt(self) -> Path:
        return self.root / "in"

    @property
    def images(self) -> Path:
        return self.gt / "images"

    @property
    def pjson(self) -> Path:
        return self.gt / "panoptic.json"

    @property
    def pdir(self) -> Path:
        return self.gt / "panoptic"

    @property
    def out(self) -> Path:
        return self.root / "out" / "result"

    def first(self, folder: str) -> Path:
        return sorted((self.gt / folder).iterdir())[0]

    def edit_json(self, change: Callable[[dict], object]) -> None:
        data = json.loads(self.pjson.read_text())
        change(data)
        self.pjson.write_text(json.dumps(data))

    def model_copy(self, name: str = "demo") -> Path:
        copy = self.root / "in" / "model"
        shutil.copytree(resolve_pipeline_path(name), copy)
        return copy

    def ae_copy(self) -> Path:
        copy = self.root / "in" / "ae"
        shutil.copytree(resolve_model_path("demo", "mask_autoencoder"), copy)
        return copy


def predict(w: World, *extra: str, images: Path | None = None) -> list[str]:
    return ["predict", "--images", str(images or w.images), "--out", str(w.out), "--steps", "1", "--resolution",
            "64", "--threads", "1", *extra]


def predict_gt(w: World, *extra: str) -> list[str]:
    return predict(w, "--gt-json", str(w.pjson), *extra)


def evaluate(w: World, *extra: str) -> list[str]:
    """The GT scored against itself: a fault in the file is a fault on both sides."""
    return ["evaluate", "--gt-json", str(w.pjson), "--gt-dir", str(w.pdir), "--pred-json", str(w.pjson),
            "--pred-dir", str(w.pdir), "--workers", "1", "--out", str(w.out / "scores.json"), *extra]


def visualize(w: World, *extra: str) -> list[str]:
    return ["visualize", "--images", str(w.images), "--gt-json", str(w.pjson), "--gt-dir", str(w.pdir), "--out",
            str(w.out), *extra]


def reconstruct(w: World, *extra: str, ae: str = "demo") -> list[str]:
    return ["reconstruct", "--ae", ae, "--images", str(w.images), "--gt-json", str(w.pjson), "--gt-dir",
            str(w.pdir), "--out", str(w.out), "--resolution", "64", "--threads", "1", *extra]


def inpaint_set(w: World, *extra: str) -> list[str]:
    return ["inpaint", "--images", str(w.images), "--gt-json", str(w.pjson), "--gt-dir", str(w.pdir), "--out",
            str(w.out), "--steps", "1", "--threads", "1", *extra]


def inpaint_one(w: World, *extra: str) -> list[str]:
    return ["inpaint", "--image", str(w.first("images")), "--partial", str(w.first("panoptic")), "--out",
            str(w.out), "--steps", "1", "--threads", "1", *extra]


TINY_AE = ["--resolution", "32", "--val-resolution", "32", "--batch-size", "2", "--val-every", "100",
           "--checkpoint-every", "1", "--threads", "1", "--encoder-channels", "8", "8", "8", "8", "--decoder-channels",
           "8", "--max-steps", "1"]


def train_ae(w: World, *extra: str) -> list[str]:
    return ["train-ae", "--out", str(w.out), *TINY_AE, *extra]


TINY_LDM = ["--resolution", "32", "--batch-size", "2", "--max-steps", "1", "--val-every", "100",
            "--checkpoint-every", "1", "--threads", "1", "--unet", "tiny"]


def train(w: World, *extra: str) -> list[str]:
    return ["train", "--out", str(w.out), *TINY_LDM, *extra]


CASES: dict[str, Callable[[World], list[str]]] = {}


def case(name: str, argv: Callable[[World], list[str]], fault: Callable[[World], object] | None = None,
         names: Callable[[World], tuple[str, ...]] | None = None) -> None:
    """Register a case: `fault` damages the world, then the command `argv` runs on it; `names`, read before the
    damage (a file it deletes still has its name), says what the error line must name."""
    assert name not in CASES, name

    def build(w: World) -> list[str]:
        if names is not None:
            w.named = names(w)
        if fault is not None:
            fault(w)
        return argv(w)

    CASES[name] = build


def first_name(folder: str) -> Callable[[World], tuple[str, ...]]:
    """The name of the first file of `folder` (the one `on_first` damages)."""
    return lambda w: (w.first(folder).name,)


def under(*parts: str) -> Callable[[World], tuple[str, ...]]:
    """A path below the case's root, as commands print it."""
    return lambda w: (str(w.root.joinpath(*parts)),)


def said(*words: str) -> Callable[[World], tuple[str, ...]]:
    """Fixed words: a flag, a key, an environment variable."""
    return lambda w: words


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


CASE_SECONDS = 60  # a bad input is refused quickly: a case that hangs fails instead of stalling the suite


class TooSlow(BaseException):
    """Not an Exception: the error boundary must not swallow it."""


def too_slow(signum: int, frame: object) -> None:
    raise TooSlow(f"no answer within {CASE_SECONDS} s")


# --- faults the cases apply ---
def segment(change: Callable[[dict], object]) -> Callable[[World], object]:
    return lambda w: w.edit_json(lambda d: change(d["annotations"][0]["segments_info"][0]))


def annotation(change: Callable[[dict], object]) -> Callable[[World], object]:
    return lambda w: w.edit_json(lambda d: change(d["annotations"][0]))


def category(change: Callable[[dict], object]) -> Callable[[World], object]:
    return lambda w: w.edit_json(lambda d: change(d["categories"][0]))


def write_text(text: str) -> Callable[[World], object]:
    return lambda w: w.pjson.write_text(text)


def setter(key: str, value: object) -> Callable[[dict], object]:
    return lambda obj: obj.__setitem__(key, value)


def dropper(key: str) -> Callable[[dict], object]:
    return lambda obj: obj.pop(key)


def png16_rgb(path: Path, height: int = 8, width: int = 8) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand: Pillow cannot write one."""
    raw = b"".join(b"\x00" + np.full((width, 3), 4000, ">u2").tobytes() for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def huge_header_png(path: Path) -> None:
    """A PNG whose header claims 100000 x 100000 px (a decompression bomb)."""
    png16_rgb(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def on_first(folder: str, damage: Callable[[Path], object]) -> Callable[[World], object]:
    return lambda w: damage(w.first(folder))


def nan_tiff(w: World) -> None:
    for p in sorted(w.images.iterdir()):
        p.unlink()
    Image.fromarray(np.full((16, 16), np.nan, np.float32)).save(w.images / "nan.tif")


def only_text_files(w: World) -> None:
    for p in sorted(w.images.iterdir()):
        p.unlink()
    (w.images / "notes.txt").write_text("hello")


def out_is(path_of: Callable[[World], Path], make: Callable[[Path], object] | None = None):
    def with_out(command: Callable[..., list[str]], flag: str = "--out") -> Callable[[World], list[str]]:
        def argv(w: World) -> list[str]:
            target = path_of(w)
            if make is not None:
                (w.root / "out").mkdir(exist_ok=True)
                make(target)
            args = command(w)
            if flag in args:
                args[args.index(flag) + 1] = str(target)
            return args
        return argv
    return with_out


def model_fault(damage: Callable[[Path], object]) -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        model = w.model_copy()
        damage(model)
        return predict(w, "--model", str(model))
    return argv


def edit_config(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])


def reshape_first_tensor(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].flatten()[:-1].clone() if tensors[key].numel() > 1 else tensors[key].repeat(2)
    save_file(tensors, path)


WEIGHTS = "diffusion_pytorch_model.safetensors"


def ae_fault(damage: Callable[[Path], object]) -> Callable[[World], list[str]]:
    def argv(w: World) -> list[str]:
        ae = w.ae_copy()
        damage(ae)
        return reconstruct(w, ae=str(ae))
    return argv


def semantic_eval(w: World) -> list[str]:
    return ["evaluate", "--task", "semantic", "--gt-dir", str(w.gt / "semantic"), "--pred-dir",
            str(w.gt / "semantic_pred"), "--num-classes", "13", "--out", str(w.out / "s.json")]


def depth_eval(w: World) -> list[str]:
    return ["evaluate", "--task", "depth", "--gt-dir", str(w.gt / "depth"), "--pred-dir", str(w.gt / "depth_pred"),
            "--out", str(w.out / "d.json")]


def with_pred_copy(kind: str, damage: Callable[[World], object]) -> Callable[[World], object]:
    def fault(w: World) -> None:
        shutil.copytree(w.gt / kind, w.gt / f"{kind}_pred")
        damage(w)
    return fault


def fill_all(folder: str, value: int, dtype: str) -> Callable[[World], object]:
    def fill(w: World) -> None:
        for p in sorted((w.gt / folder).iterdir()):
            Image.fromarray(np.full((64, 64), value, dtype)).save(p)
    return fill
