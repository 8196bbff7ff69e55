"""`ldmseg convert-original` on checkpoints in the authors' exact layout (keys, shapes, nesting, extra entries) with
random values: every tensor lands where it belongs, nothing is left over, the result serves predict / inpaint / the
app, the components compute what the authors' model code computes, and broken files are refused with one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image

from ldmseg.cli import main
from ldmseg.conversion import ORIGINAL_SERVING, autoencoder_from_original
from ldmseg.diffusion.schedule import make_sampler
from ldmseg.errors import LDMSegError
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.pipeline import LDMSegPipeline

# Their GeneralVAESeg at the released defaults (7 bit planes, widths 32/64/128/256, bottleneck 256, 4 latents x
# (mean, log-variance), two 256-wide upscalers, 128 logits): nn.Sequential indices -> shapes, written out by hand
# from their vae.py so that the test does not lean on our own class.
AE_LAYOUT = {
    "encoder.0.weight": (32, 7, 3, 3), "encoder.0.bias": (32,),
    "encoder.2.weight": (32, 32, 3, 3), "encoder.2.bias": (32,), "encoder.3.weight": (64, 32, 3, 3),
    "encoder.3.bias": (64,), "encoder.5.weight": (64, 64, 3, 3), "encoder.5.bias": (64,),
    "encoder.6.weight": (128, 64, 3, 3), "encoder.6.bias": (128,), "encoder.8.weight": (128, 128, 3, 3),
    "encoder.8.bias": (128,), "encoder.9.weight": (256, 128, 3, 3), "encoder.9.bias": (256,),
    "encoder.11.weight": (256, 256, 3, 3), "encoder.11.bias": (256,), "encoder.13.weight": (256,),
    "encoder.13.bias": (256,), "encoder.15.weight": (8, 256, 3, 3), "encoder.15.bias": (8,),
    "decoder.0.weight": (256, 4, 3, 3), "decoder.0.bias": (256,), "decoder.2.weight": (256, 256, 2, 2),
    "decoder.2.bias": (256,), "decoder.3.weight": (256,), "decoder.3.bias": (256,),
    "decoder.5.weight": (256, 256, 2, 2), "decoder.5.bias": (256,), "decoder.6.weight": (256,),
    "decoder.6.bias": (256,), "decoder.8.weight": (256,), "decoder.8.bias": (256,),
    "decoder.10.weight": (128, 256, 3, 3), "decoder.10.bias": (128,),
}
# A small SD-shaped UNet: their modify_encoder asserts a 320-wide conv_in
UNET_CONFIG = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(320, 320), layers_per_block=1,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
                   norm_num_groups=32)


def random_state(layout: dict, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) * 0.05 for k, shape in layout.items()}


def their_unet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """What their trainer saves: SD's UNet, conv_in widened to 12 (as conv_in.* and new_conv.*), attn2 / norm2 of
    every transformer block deleted."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    state = {}
    for name, value in unet.state_dict().items():
        if ".attn2." in name or (".transformer_blocks." in name and ".norm2." in name):
            continue
        state[name] = value + 0.01 * torch.randn_like(value)  # not the init: every tensor distinct
    conv = torch.randn(320, 12, 3, 3) * 0.05
    state["conv_in.weight"], state["new_conv.weight"] = conv, conv
    state["new_conv.bias"] = state["conv_in.bias"]
    return state


@pytest.fixture(scope="module")
def stable_diffusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SD directory in diffusers' layout: a tiny VAE (f = 8) and the UNet's config."""
    root = tmp_path_factory.mktemp("sd")
    torch.manual_seed(1)
    vae = AutoencoderKL(block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=8,
                        latent_channels=4, sample_size=32)
    vae.save_pretrained(root / "vae")
    UNet2DConditionModel(**UNET_CONFIG).save_config(root / "unet")
    return root


def write_ae(path: Path, state: dict) -> Path:
    torch.save({"step": 66000, "epoch": 12, "vae": {f"module.{k}": v for k, v in state.items()},
                "opt": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "p": {"vae_model_kwargs": {
                    "norm_num_groups": 32, "scaling_factor": 0.2}}, "scaler": None}, path)
    return path


def write_ldm(path: Path, ae_state: dict, unet_state: dict, ema: object = None) -> Path:
    torch.save({"step": 200000, "epoch": 90, "vae_image": {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)},
                "vae_semseg": ae_state, "unet": unet_state, "ema": ema, "opt": None,
                "p": {"name": "ldmseg", "vae_model_kwargs": {"norm_num_groups": 32}, "num_bits": 7},
                "scaler": {"scale": 65536.0}}, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("original")
    ae_state, unet_state = random_state(AE_LAYOUT, 0), their_unet_state()
    return {"ae_state": ae_state, "unet_state": unet_state, "ae": write_ae(root / "ae.pt", ae_state),
            "ldm": write_ldm(root / "ldmseg.pt", ae_state, unet_state)}


@pytest.fixture(scope="module")
def converted(files: dict, stable_diffusion: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("conv") / "ldmseg-coco"
    assert main(["convert-original", "--ldm", str(files["ldm"]), "--ae", str(files["ae"]),
                 "--stable-diffusion", str(stable_diffusion), "--out", str(out)]) == 0
    return out


def test_the_mask_ae_converts_alone_key_for_key(files: dict, tmp_path: Path, synth_set: Path) -> None:
    out = tmp_path / "ae"
    assert main(["convert-original", "--ae", str(files["ae"]), "--out", str(out)]) == 0
    assert not list(out.glob("*.bin")) and (out / "diffusion_pytorch_model.safetensors").exists()
    ae = load_mask_autoencoder(out)
    own = ae.state_dict()
    assert set(own) == set(AE_LAYOUT)
    for name, value in files["ae_state"].items():
        assert torch.equal(own[name], value), name
    assert abs(sum(p.numel() for p in ae.parameters()) - 2.02e6) < 0.01e6
    assert main(["reconstruct", "--ae", str(out), "--images", str(synth_set / "images"), "--gt-json",
                 str(synth_set / "panoptic.json"), "--gt-dir", str(synth_set / "panoptic"), "--out",
                 str(tmp_path / "rec"), "--resolution", "64"]) == 0
    assert len(json.loads((tmp_path / "rec" / "panoptic.json").read_text())["annotations"]) == 6
    short = ["--resolution", "32", "--batch-size", "2", "--max-steps", "1", "--val-every", "1", "--val-num", "2",
             "--threads", "1"]
    assert main(["train", "--ae", str(out), "--unet", "tiny", "--image-channels", "8", "--val-steps", "1",
                 "--inference-steps", "1", "--out", str(tmp_path / "stage2"), *short]) == 0  # stage 2 on their AE
    assert main(["train-ae", "--init-from", str(out), "--val-resolution", "32", "--out", str(tmp_path / "ft"),
                 *short]) == 0  # their AE fine-tuned
    assert load_mask_autoencoder(tmp_path / "ft" / "model").__class__.__name__ == "OriginalMaskAutoencoder"


def their_ae_forward(state: dict, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Their GeneralVAESeg encode (mean) and decode (logits, bilinear x2), written functionally from vae.py."""
    s = state

    def conv(x, i, part="encoder", stride=1):
        return F.conv2d(x, s[f"{part}.{i}.weight"], s[f"{part}.{i}.bias"], stride=stride, padding=1)

    x = F.silu(conv(bits, 0))
    for same, down in ((2, 3), (5, 6), (8, 9)):
        x = F.silu(conv(conv(x, same), down, stride=2))
    x = conv(x, 11)
    x = F.silu(F.group_norm(x, 32, s["encoder.13.weight"], s["encoder.13.bias"], eps=1e-6))
    mean = conv(x, 15)[:, :4]
    y = F.conv2d(mean, s["decoder.0.weight"], s["decoder.0.bias"], padding=1)
    for up, norm in ((2, 3), (5, 6)):
        y = F.conv_transpose2d(y, s[f"decoder.{up}.weight"], s[f"decoder.{up}.bias"], stride=2)
        u = y.mean(1, keepdim=True)
        var = (y - u).pow(2).mean(1, keepdim=True)
        y = F.silu(s[f"decoder.{norm}.weight"][:, None, None] * (y - u) / torch.sqrt(var + 1e-6)
                   + s[f"decoder.{norm}.bias"][:, None, None])
    y = F.silu(F.group_norm(y, 32, s["decoder.8.weight"], s["decoder.8.bias"]))
    logits = F.conv2d(y, s["decoder.10.weight"], s["decoder.10.bias"], padding=1)
    return mean, F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_ae_latents_and_logits_match_their_model_code(files: dict) -> None:
    ae = autoencoder_from_original(files["ae"])
    bits = torch.randint(0, 3, (2, 7, 64, 48)).float() - 1
    mean, logits = their_ae_forward(files["ae_state"], bits)
    with torch.no_grad():
        ours = ae.encode(bits)
        assert rel_err(ours, mean) < 1e-5
        assert rel_err(ae.decode(mean), logits) < 1e-5


def test_ldm_lands_key_by_key_with_nothing_left_over(files: dict, converted: Path) -> None:
    pipe = LDMSegPipeline.from_pretrained(converted)
    source = {k: v for k, v in files["unet_state"].items() if not k.startswith("new_conv.")}
    own = pipe.unet.state_dict()
    bypass = {k for k in own if ".transformer_blocks." in k and (".attn2." in k or ".norm2." in k)}
    assert bypass and set(own) - bypass == set(source)
    for name, value in source.items():
        assert torch.equal(own[name].float(), value), name
    assert all(not own[k].any() for k in bypass if ".attn2." in k)
    assert pipe.unet.config.in_channels == 12 and pipe.config.self_condition
    ae = pipe.mask_autoencoder.state_dict()
    assert all(torch.equal(ae[k], v) for k, v in files["ae_state"].items())
    assert {k: pipe.config[k] for k in ORIGINAL_SERVING} == ORIGINAL_SERVING
    assert pipe.config.scale_factor == 0.18215 and "COCO" in pipe.config.trained_on


def test_unet_predicts_what_their_unet_without_cross_attention_predicts(files: dict, converted: Path) -> None:
    """Their remove_cross_attention sets attn2 = norm2 = None (diffusers then skips them): our zeroed attn2 must
    give the same noise prediction."""
    pipe = LDMSegPipeline.from_pretrained(converted)
    theirs = UNet2DConditionModel(**{**UNET_CONFIG, "in_channels": 12})
    state = {k: v for k, v in files["unet_state"].items() if not k.startswith("new_conv.")}
    theirs.load_state_dict(state, strict=False)
    for block in theirs.modules():
        if hasattr(block, "attn2") and block.attn2 is not None:
            block.attn2, block.norm2 = None, None
    x, t = torch.randn(2, 12, 8, 8), torch.tensor([999, 19])
    with torch.no_grad():
        ref = theirs(x, t, encoder_hidden_states=torch.randn(2, 1, 32)).sample
        ours = pipe.unet(x.contiguous(memory_format=torch.channels_last), t,
                         encoder_hidden_states=pipe.task_embeddings("instances", 2)).sample
    assert rel_err(ours, ref) < 1e-4


def test_their_timesteps_are_trailing_ddim() -> None:
    """Their set_timesteps_inference: step ratio 1000 // n, offset ratio - 1 (999, 979, ..., 19 for 50)."""
    for n in (50, 20, 4):
        ratio = 1000 // n
        theirs = (np.arange(n) * ratio)[::-1] + ratio - 1
        sampler = make_sampler("ddim", "epsilon", "trailing")
        sampler.set_timesteps(n)
        assert sampler.timesteps.tolist() == theirs.tolist()


def test_converted_pipeline_serves_predict_inpaint_and_the_app(converted: Path, tmp_path: Path) -> None:
    modes = {f.stat().st_mode & 0o777 for f in converted.rglob("*") if f.is_file()}
    assert len(modes) == 1 and modes.pop() & 0o044  # weights readable like the configs beside them
    pipe = LDMSegPipeline.from_pretrained(converted)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), np.uint8)  # any size
    out = pipe(image, num_inference_steps=2, processing_resolution=64, generator=torch.Generator().manual_seed(0))
    assert out.panoptic[0].shape == (40, 56)
    partial = np.zeros((40, 56), np.int32)
    partial[5:20, 5:30] = 3
    done = pipe(image, num_inference_steps=2, processing_resolution=64, partial_mask=partial)
    assert done.panoptic[0].shape == (40, 56) and done.known_agreement is not None
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(image).save(images / "a.png")
    assert main(["predict", "--model", str(converted), "--images", str(images), "--out", str(tmp_path / "pred"),
                 "--steps", "2", "--resolution", "64"]) == 0
    assert (tmp_path / "pred" / "panoptic.json").exists()
    from ldmseg.commands.app import Segmenter

    seg = Segmenter(str(converted), steps=2)
    picture, downloads, status = seg.run({"background": image, "layers": []}, 0, False)
    assert picture.shape[:2] == (40, 56) and "segments" in status and len(downloads) == 2


def test_ema_weights_are_served_unless_raw_is_asked(files: dict, stable_diffusion: Path, tmp_path: Path) -> None:
    names = [k for k in files["unet_state"] if not k.startswith("new_conv.")]
    shadow = [files["unet_state"][k] + 1.0 for k in names]
    ema = {"decay": 0.9999, "optimization_step": 1000, "shadow_params": shadow}
    path = write_ldm(tmp_path / "ema.pt", files["ae_state"], files["unet_state"], ema)
    served = LDMSegPipeline.from_original(path, str(stable_diffusion)).unet.state_dict()
    raw = LDMSegPipeline.from_original(path, str(stable_diffusion), weights="raw").unet.state_dict()
    assert torch.equal(served[names[5]], shadow[5]) and torch.equal(raw[names[5]], files["unet_state"][names[5]])
    bad = write_ldm(tmp_path / "short.pt", files["ae_state"], files["unet_state"], {"shadow_params": shadow[:-1]})
    with pytest.raises(LDMSegError, match="'ema' holds"):
        LDMSegPipeline.from_original(bad, str(stable_diffusion))


class NeedsCode:
    """A pickled instance of this needs its class to load: weights_only refuses it."""


def broken_files(files: dict, root: Path) -> dict[str, tuple[list[str], str]]:
    ae, unet = files["ae_state"], files["unet_state"]
    truncated = root / "truncated.pt"
    truncated.write_bytes(files["ldm"].read_bytes()[: 1 << 16])
    torch.save({"vae": NeedsCode()}, root / "code.pt")
    missing = dict(ae)
    del missing["decoder.8.weight"]
    extra = {**unet, "mid_block.extra.weight": torch.zeros(3)}
    shaped = {**unet, "conv_out.weight": torch.zeros(4, 320, 1, 1)}
    return {
        "truncated": (["--ldm", str(truncated)], "not a readable torch checkpoint"),
        "ae as ldm": (["--ldm", str(files["ae"])], "looks like the other file: a mask AE"),
        "ldm as ae": (["--ae", str(files["ldm"])], "looks like the other file: an LDM"),
        "needs code": (["--ae", str(root / "code.pt")], "needs code to load"),
        "missing ae key": (["--ae", str(write_ae(root / "missing.pt", missing))], "'decoder.8.weight' is missing"),
        "extra unet key": (["--ldm", str(write_ldm(root / "extra.pt", ae, extra))], "'mid_block.extra.weight'"),
        "wrong shape": (["--ldm", str(write_ldm(root / "shape.pt", ae, shaped))], "'conv_out.weight' has shape"),
        "no file": (["--ae", str(root / "absent.pt")], "not found"),
    }


def ae_file(name: str, ae: dict, root: Path, p: object = None, **changed: torch.Tensor) -> list[str]:
    """--ae FILE: their AE file with `changed` tensors (and `p` as its norm_num_groups where given)."""
    path = write_ae(root / f"{name}.pt", {**ae, **changed})
    if p is not None:
        torch.save({**torch.load(path, weights_only=True), "p": {"vae_model_kwargs": {"norm_num_groups": p}}}, path)
    return ["--ae", str(path)]


def ldm_conv_in(name: str, ae: dict, unet: dict, root: Path, conv_in: torch.Tensor) -> list[str]:
    """--ldm FILE: their LDM file with another conv_in (stored twice, as theirs is)."""
    return ["--ldm", str(write_ldm(root / f"{name}.pt", ae, {**unet, "conv_in.weight": conv_in,
                                                              "new_conv.weight": conv_in}))]


# Tensors of a wrong rank, size or dtype, non-finite weights and config numbers out of range: each refused before a
# model is built (they used to divide by zero, index out of range, or convert into nonsense). name: (flags from
# (ae, unet, root), what the line says)
BAD_TENSORS: dict[str, tuple[Callable[[dict, dict, Path], list[str]], str]] = {
    **{f"groups {g!r}": (lambda ae, u, r, g=g: ae_file("groups", ae, r, g),
                         f"norm_num_groups: expected a positive integer, got {g!r}")
       for g in [0, -1, float("inf"), float("nan"), "32", True]},
    "zero-size": (lambda ae, u, r: ae_file("empty", ae, r, **{"encoder.0.weight": torch.zeros(0, 7, 3, 3)}),
                  "tensor 'module.encoder.0.weight': expected weights, got an empty tensor"),
    "0 latent channels": (lambda ae, u, r: ae_file("latent0", ae, r, **{"decoder.0.weight": torch.zeros(256, 0, 3, 3)}),
                          "tensor 'module.decoder.0.weight': expected weights, got an empty tensor"),
    "1-D decoder.0.weight": (lambda ae, u, r: ae_file("flat", ae, r, **{"decoder.0.weight": torch.zeros(256)}),
                             "'decoder.0.weight' has shape (256,); expected a 4-D conv weight"),
    "complex": (lambda ae, u, r: ae_file("complex", ae, r, **{"encoder.2.weight": ae["encoder.2.weight"].to(
        torch.complex64)}), "tensor 'module.encoder.2.weight': expected floating-point weights, got complex64"),
    "integer": (lambda ae, u, r: ae_file("int", ae, r, **{"encoder.2.bias": torch.zeros(32, dtype=torch.int64)}),
                "expected floating-point weights, got int64"),
    "all-NaN": (lambda ae, u, r: ae_file("nan", ae, r, **{k: torch.full_like(v, float("nan")) for k, v in ae.items()}),
                "expected finite weights, got NaN or infinity"),
    "inf conv_in": (lambda ae, u, r: ldm_conv_in("inf", ae, u, r, torch.full((320, 12, 3, 3), float("inf"))),
                    "tensor 'conv_in.weight': expected finite weights"),
    "1-D conv_in.weight": (lambda ae, u, r: ldm_conv_in("flat", ae, u, r, torch.zeros(320)),
                           "unet tensor 'conv_in.weight' has shape (320,); expected a 4-D conv weight"),
}


@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_bad_tensors_and_config_numbers_are_one_line_before_a_model_is_built(
        case: str, files: dict, stable_diffusion: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    build, message = BAD_TENSORS[case]
    out = tmp_path / "out"
    code = main(["convert-original", *build(files["ae_state"], files["unet_state"], tmp_path), "--stable-diffusion",
                 str(stable_diffusion), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("case", ["truncated", "ae as ldm", "ldm as ae", "needs code", "missing ae key",
                                  "extra unet key", "wrong shape", "no file"])
def test_bad_checkpoints_are_one_line_and_write_nothing(case: str, files: dict, stable_diffusion: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flags, message = broken_files(files, tmp_path)[case]
    out = tmp_path / "out"
    code = main(["convert-original", *flags, "--stable-diffusion", str(stable_diffusion), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_out_is_never_an_existing_folder_or_file(files: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["convert-original", "--ae", str(files["ae"]), "--out", str(tmp_path / "full")]) == 2
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    before = files["ae"].read_bytes()
    assert main(["convert-original", "--ae", str(files["ae"]), "--out", str(files["ae"])]) == 2
    assert files["ae"].read_bytes() == before and "already exists" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["convert-original", "--ae", str(files["ae"]), "--out", str(tmp_path / "empty")]) == 0


def test_out_is_never_the_current_folder(files: dict, tmp_path: Path, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty current folder passed the 'new or empty' rule and failed only after the whole conversion."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for out in (".", "./", str(tmp_path / "here")):
        assert main(["convert-original", "--ae", str(files["ae"]), "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "the current folder" in err and f"--out {Path(out)}" in err, err
    assert not list(tmp_path.rglob("*.tmp-*")) and not list((tmp_path / "here").iterdir())


@pytest.mark.parametrize(("given", "message"), [
    ("sd/vae", "--stable-diffusion {sd}/vae: expected a Stable Diffusion folder holding unet/config.json and vae/ "
               "(diffusers' layout); it has no unet/config.json and no vae/config.json; this looks like one of its "
               "subfolders"),
    ("sd/unet", "it has no unet/config.json and no vae/config.json; this looks like one of its subfolders"),
    ("sd/missing", "sd/missing: Stable Diffusion directory (--stable-diffusion) not found (sd/ is a folder here, so "
                   "this names a local path, not a hub id)"),
    ("owner/x/y", "owner/x/y: Stable Diffusion directory (--stable-diffusion) not found"),
])
def test_stable_diffusion_that_is_not_an_sd_folder_is_named(given: str, message: str, files: dict,
                                                            stable_diffusion: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A component folder (SD/vae) was read as the UNet's config and the error blamed the LDM file; a missing
    local path was looked up on the hub."""
    import shutil

    shutil.copytree(stable_diffusion, tmp_path / "sd")
    monkeypatch.chdir(tmp_path)
    assert main(["convert-original", "--ldm", str(files["ldm"]), "--stable-diffusion", given, "--out", "o"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(sd="sd") in err and str(files["ldm"]) not in err, err
    assert not (tmp_path / "o").exists()


def test_a_silent_hub_for_stable_diffusion_is_one_line_within_its_timeouts(files: dict, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture,
                                                                           silent_hub: list) -> None:
    import time

    start = time.perf_counter()
    assert main(["convert-original", "--ldm", str(files["ldm"]), "--stable-diffusion", "owner/silent", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert time.perf_counter() - start < 15 and len(err.splitlines()) == 1 and silent_hub, err
    assert err.startswith("ldmseg: error: owner/silent: cannot download it from http://127.0.0.1:") and \
        "no reply in time" in err, err
    assert not (tmp_path / "o").exists()


def test_authors_defaults_hint_at_the_fast_preset_on_a_cpu(converted: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(images / "a.png")
    common = ["predict", "--model", str(converted), "--images", str(images), "--resolution", "64"]
    assert main([*common, "--out", str(tmp_path / "slow")]) == 0
    err = capsys.readouterr().err
    assert "--preset fast runs 20 steps" in err and "trained on COCO panoptic" in err
    assert main([*common, "--out", str(tmp_path / "fast"), "--preset", "fast"]) == 0
    assert "hint" not in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "bad"), "--preset", "turbo"]) == 2
    assert "no such preset (it has: fast)" in capsys.readouterr().err


def test_the_converted_paper_model_distils_into_a_one_step_model(converted: Path, tmp_path: Path) -> None:
    """`ldmseg distill` on a model in the released layout, from its own predictions on unlabelled images (the
    recipe of scripts/distill_paper_gpu.sh at toy size)."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "one-step"
    teacher_flags = ["--model", str(converted), "--targets", "teacher", "--data", str(images), "--tasks", "instances"]
    assert main(["distill", *teacher_flags, "--out", str(out), "--resolution", "64", "--batch-size", "2",
                 "--max-steps", "1", "--warmup-steps", "1", "--val-every", "1", "--val-num", "1", "--val-steps", "1",
                 "--checkpoint-every", "1", "--threads", "1"]) == 0
    pipe = LDMSegPipeline.from_pretrained(out / "model")
    assert pipe.config.initial_noise == "zeros" and pipe.config.default_num_inference_steps == 1
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    assert pipe(np.zeros((40, 56, 3), np.uint8)).panoptic[0].shape == (40, 56) and len(calls) == 1
