"""Stage 2: denoiser loading / widening, objective, samplers, pipeline, training and `ldmseg predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image

from ldmseg.cli import main
from ldmseg.diffusion.objective import DiffusionObjective, ObjectiveConfig
from ldmseg.diffusion.sampling import sample_latents
from ldmseg.diffusion.schedule import make_sampler, predicted_x0, target, timestep_weights, training_scheduler
from ldmseg.errors import LDMSegError
from ldmseg.models.denoiser import TaskEmbeddings, build_unet, bypass_cross_attention, load_pretrained_unet
from ldmseg.models.image_encoder import LearnedImageEncoder, SDVAEImageEncoder, ViTImageEncoder
from ldmseg.models.mask_autoencoder import MaskAutoencoder
from ldmseg.pipeline import LDMSegOutput, LDMSegPipeline


def tiny_sd_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=8)


def test_widened_unet_matches_pretrained_at_step_zero(tmp_path: Path) -> None:
    sd = tmp_path / "sd"
    tiny_sd_unet().save_pretrained(sd / "unet")  # an SD pipeline layout: unet/ subfolder
    original = UNet2DConditionModel.from_pretrained(sd / "unet").eval()
    widened = load_pretrained_unet(str(sd), in_channels=12).eval()
    assert widened.config.in_channels == 12 and widened.conv_in.weight[:, 4:].abs().sum() == 0
    z, extra = torch.randn(2, 4, 8, 8), torch.randn(2, 8, 8, 8)
    t, hidden = torch.tensor([10, 500]), torch.randn(2, 1, 16)
    with torch.no_grad():
        a = original(z, t, encoder_hidden_states=hidden).sample
        b = widened(torch.cat([z, extra], 1), t, encoder_hidden_states=hidden).sample
    assert torch.equal(a, b)
    widened.save_pretrained(tmp_path / "w")
    assert UNet2DConditionModel.from_pretrained(tmp_path / "w").config.in_channels == 12


def test_bypassed_cross_attention_ignores_the_tokens() -> None:
    unet = tiny_sd_unet().eval()
    bypass_cross_attention(unet)
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([3])
    with torch.no_grad():
        a = unet(x, t, encoder_hidden_states=torch.randn(1, 1, 16)).sample
        b = unet(x, t, encoder_hidden_states=torch.randn(1, 1, 16)).sample
    assert torch.allclose(a, b)
    unet_attn = tiny_sd_unet().eval()
    with torch.no_grad():
        c = unet_attn(x, t, encoder_hidden_states=torch.randn(1, 1, 16)).sample
        d = unet_attn(x, t, encoder_hidden_states=torch.randn(1, 1, 16)).sample
    assert not torch.allclose(c, d)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_targets_invert_to_x0(prediction_type: str) -> None:
    sched = training_scheduler(prediction_type)
    x0, noise, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.tensor([0, 400, 999])
    z_t = sched.add_noise(x0, noise, t)
    tgt = target(x0, noise, t, sched.alphas_cumprod, prediction_type)
    assert torch.allclose(predicted_x0(tgt, z_t, t, sched.alphas_cumprod, prediction_type), x0, atol=1e-3)


def test_timestep_weights() -> None:
    ac = training_scheduler("epsilon").alphas_cumprod
    paper = timestep_weights("paper", ac, "epsilon")
    assert paper[250:].eq(1).all() and paper[125] == pytest.approx(0.5) and paper[0] > 0
    snr = ac / (1 - ac)
    w = timestep_weights("min-snr", ac, "epsilon", gamma=2.0)
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(2.0)) / snr)
    assert w[-1] == pytest.approx(1.0) and w[0] < 0.01


def test_objective_masks_void_and_self_conditions() -> None:
    torch.manual_seed(0)
    obj = DiffusionObjective(ObjectiveConfig(self_condition_prob=1.0, reduction="mean"))
    calls = []

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[1])
        return x[:, :4] * 0
    z0, z_img = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 4, 4)
    loss, logs = obj(denoise, z0, z_img, valid=torch.ones(2, 32, 32, dtype=torch.bool))
    assert calls == [11, 11] and torch.isfinite(loss) and logs
    none_valid = obj(denoise, z0, z_img, valid=torch.zeros(2, 32, 32, dtype=torch.bool))[0]
    assert none_valid == 0  # every latent pixel VOID: nothing to learn


def tiny_pipeline(prediction_type: str = "sample") -> LDMSegPipeline:
    torch.manual_seed(0)
    ae = MaskAutoencoder(num_bits=4, encoder_channels=(8, 8, 8, 8), decoder_channels=16)
    enc = LearnedImageEncoder(out_channels=8, channels=(8, 8, 8))
    unet = build_unet("tiny", 4 + 8 + 4, 4, 4)
    return LDMSegPipeline(unet, enc, ae, make_sampler("ddim", prediction_type), TaskEmbeddings(dim=32),
                          scale_factor=0.5, default_num_inference_steps=3, default_processing_resolution=32)


@pytest.mark.parametrize("name", ["ddim", "dpm++", "unipc", "euler"])
def test_samplers_are_seeded(name: str) -> None:
    pipe = tiny_pipeline()
    pipe.use_sampler(name)
    z_img = torch.randn(2, 8, 4, 4)
    den = pipe._denoise("instances")
    a = sample_latents(den, pipe.scheduler, z_img, 4, 3, True, torch.Generator().manual_seed(1))
    b = sample_latents(den, pipe.scheduler, z_img, 4, 3, True, torch.Generator().manual_seed(1))
    c = sample_latents(den, pipe.scheduler, z_img, 4, 3, True, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.isfinite(a).all()


def test_trailing_spacing_starts_at_pure_noise() -> None:
    lead, trail = make_sampler("ddim", "epsilon", "leading"), make_sampler("ddim", "epsilon", "trailing")
    lead.set_timesteps(1)
    trail.set_timesteps(1)
    assert int(trail.timesteps[0]) == 999 and int(lead.timesteps[0]) == 0


def test_pipeline_outputs_and_round_trip(tmp_path: Path) -> None:
    pipe = tiny_pipeline()
    gray = np.full((20, 30), 100, np.uint8)
    rgba = Image.fromarray(np.zeros((24, 18, 4), np.uint8), "RGBA")
    out = pipe([gray, rgba], generator=torch.Generator().manual_seed(0), output_logits=True)
    assert isinstance(out, LDMSegOutput)
    assert out.panoptic[0].shape == (20, 30) and out.panoptic[1].shape == (24, 18)
    assert out.logits[0].shape == (16, 20, 30)
    for ids, segs in zip(out.panoptic, out.segments_info, strict=True):
        assert {s["id"] for s in segs} == set(np.unique(ids)) - {0}
        assert all(0 <= s["score"] <= 1 for s in segs)
    pipe.save_pretrained(tmp_path / "p")
    again = LDMSegPipeline.from_pretrained(tmp_path / "p")
    for module in (again.unet.conv_in, again.mask_autoencoder.decoder[0]):  # served in channels_last (NHWC)
        assert module.weight.is_contiguous(memory_format=torch.channels_last) and not module.weight.is_contiguous()
    out2 = again([gray, rgba], generator=torch.Generator().manual_seed(0))
    assert all(np.array_equal(a, b) for a, b in zip(out.panoptic, out2.panoptic, strict=True))
    assert again.config.default_num_inference_steps == 3 and again.config.scale_factor == 0.5


def test_sd_vae_image_encoder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8)
    vae.save_pretrained(tmp_path / "sd" / "vae")
    enc = SDVAEImageEncoder.from_sd_vae(str(tmp_path / "sd"))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    expected = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    assert torch.allclose(enc.encode(x), expected, atol=1e-6)
    assert not any(p.requires_grad for p in enc.parameters())


def tiny_vit(path: Path) -> Path:
    """A random 2-layer ViT with 8 px patches saved the way transformers' checkpoints are, with the ImageNet
    normalisation in its preprocessor config (as DINO / in21k checkpoints carry theirs)."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8), add_pooling_layer=False).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.485, 0.456, 0.406],
                                                               "image_std": [0.229, 0.224, 0.225]}))
    return path


def test_vit_image_encoder_loads_a_transformers_checkpoint(tmp_path: Path) -> None:
    from transformers import ViTModel

    enc = ViTImageEncoder.from_vit(str(tiny_vit(tmp_path / "vit")), out_channels=6, downsample_factor=4)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    normalised = ((x + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    reference = ViTModel.from_pretrained(tmp_path / "vit", add_pooling_layer=False).eval()
    enc.eval()
    with torch.no_grad():
        assert torch.allclose(enc.vit(pixel_values=normalised).last_hidden_state,
                              reference(pixel_values=normalised).last_hidden_state, atol=1e-6)
        z = enc.encode(x)
    assert z.shape == (2, 6, 8, 8)  # 4x4 patches of 8 px, resized to the f = 4 latent grid
    assert enc.encode(torch.zeros(1, 3, 48, 64)).shape == (1, 6, 12, 16)  # position embeddings interpolated
    enc.encode(x).square().mean().backward()  # fine-tuned jointly: the ViT itself gets gradients
    assert enc.vit.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    with pytest.raises(LDMSegError, match="divisible by its patch size 8"):
        enc.encode(torch.zeros(1, 3, 36, 32))
    enc.save_pretrained(tmp_path / "enc")
    again = ViTImageEncoder.from_pretrained(tmp_path / "enc").eval()
    with torch.no_grad():
        assert torch.equal(again.encode(x), z)
    with pytest.raises(LDMSegError, match="--pretrained-vit"):
        ViTImageEncoder.from_vit(str(tmp_path / "missing"))


def vit_with_bin(path: Path, weights: dict) -> Path:
    """tiny_vit's folder with `weights` pickled as transformers' old pytorch_model.bin instead of safetensors."""
    tiny_vit(path)
    (path / "model.safetensors").unlink()
    torch.save(weights, path / "pytorch_model.bin")
    return path


def test_a_pretrained_vit_pickle_is_refused_or_read_whole(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A .bin whose pickle needs code was an internal error carrying torch's advice to load it with
    weights_only=False; a .bin without the ViT's tensors trained from random ones, with a warning."""
    from safetensors.torch import load_file

    weights = load_file(tiny_vit(tmp_path / "plain") / "model.safetensors")
    assert ViTImageEncoder.from_vit(str(vit_with_bin(tmp_path / "bin", weights))).vit.config.patch_size == 8
    needs_code = vit_with_bin(tmp_path / "code", {**weights, "extra": np.zeros(3)})
    with pytest.raises(LDMSegError, match=r"--pretrained-vit .*code: refused, its pickle needs code to load"):
        ViTImageEncoder.from_vit(str(needs_code))
    with pytest.raises(LDMSegError, match=r"expected weights for every tensor of its ViT, \d+ missing"):
        ViTImageEncoder.from_vit(str(vit_with_bin(tmp_path / "none", {})))
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "run"), "--unet", "tiny", "--image-encoder", "vit",
                 "--pretrained-vit", str(needs_code), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refused, its pickle needs code" in err and "weights_only" not in err, err
    assert not (tmp_path / "run").exists()


def test_training_with_the_vit_encoder_exports_a_pipeline_that_predicts(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    ae_dir = tmp_path / "ae"
    MaskAutoencoder(encoder_channels=(4, 8, 8, 8), decoder_channels=8).save_pretrained(ae_dir)
    run = tmp_path / "run"
    common = ["train", "--ae", str(ae_dir), "--out", str(run), "--resolution", "32", "--batch-size", "2", "--max-steps",
              "1", "--unet", "tiny", "--image-channels", "8", "--val-every", "1", "--val-num", "1", "--val-steps",
              "1", "--inference-steps", "1", "--threads", "1", "--image-encoder", "vit"]
    assert main(common) == 2
    assert "--image-encoder vit needs --pretrained-vit" in capsys.readouterr().err
    assert main([*common, "--pretrained-vit", str(tiny_vit(tmp_path / "vit"))]) == 0
    pipe = LDMSegPipeline.from_pretrained(run / "model")
    assert isinstance(pipe.image_encoder, ViTImageEncoder)
    out = pipe(np.zeros((32, 32, 3), np.uint8), num_inference_steps=1, ensemble_size=1)
    assert out.panoptic[0].shape == (32, 32)


@pytest.mark.slow
def test_train_export_predict_evaluate(tmp_path: Path) -> None:
    ae_dir = tmp_path / "ae"
    MaskAutoencoder(encoder_channels=(4, 8, 8, 8), decoder_channels=8).save_pretrained(ae_dir)
    run = tmp_path / "run"
    assert main(["train", "--ae", str(ae_dir), "--out", str(run), "--resolution", "32", "--batch-size", "2",
                 "--max-steps", "2", "--unet", "tiny", "--image-channels", "8", "--image-encoder-channels", "8", "8",
                 "8", "--val-every", "2", "--val-num", "2", "--val-steps", "2", "--inference-steps", "2",
                 "--checkpoint-every", "2", "--threads", "1", "--ema-decay", "0.9"]) == 0
    assert (run / "model" / "model_index.json").exists()
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--num", "2", "--resolution", "40"]) == 0
    s = tmp_path / "s"
    Image.open(s / "images" / "000001.png").convert("L").save(s / "images" / "000001.png")  # grayscale input
    assert main(["predict", "--model", str(run / "model"), "--images", str(s / "images"), "--gt-json",
                 str(s / "panoptic.json"), "--out", str(tmp_path / "pred"), "--steps", "2", "--scheduler",
                 "dpm++", "--ensemble-size", "2"]) == 0
    pred = json.loads((tmp_path / "pred" / "panoptic.json").read_text())
    assert [a["image_id"] for a in pred["annotations"]] == [0, 1]
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 2
    assert main(["evaluate", "--gt-json", str(s / "panoptic.json"), "--gt-dir", str(s / "panoptic"), "--pred-json",
                 str(tmp_path / "pred" / "panoptic.json"), "--pred-dir", str(tmp_path / "pred" / "panoptic"),
                 "--class-agnostic"]) == 0


def test_fine_tuning_starts_from_the_saved_pipeline(tmp_path: Path) -> None:
    from ldmseg.training.config import DiffusionConfig
    from ldmseg.training.diffusion import DiffusionTask

    pipe = tiny_pipeline()
    pipe.register_to_config(min_core_at_512=1234.0, confidence_threshold=0.4)
    pipe.save_pretrained(tmp_path / "pipe")
    pipe.mask_autoencoder.save_pretrained(tmp_path / "ae")
    cfg = DiffusionConfig(out=str(tmp_path / "run"), ae=str(tmp_path / "ae"), init_from=str(tmp_path / "pipe"),
                          size=32, self_condition_prob=float(pipe.config.self_condition))
    task = DiffusionTask(cfg)
    assert task.scales["instances"] == pytest.approx(pipe.config.scale_factor)
    saved = pipe.unet.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in task.model.unet.state_dict().items())
    exported = task.pipeline(task.model).config  # its post-processing settings carry over
    assert (exported.min_core_at_512, exported.confidence_threshold) == (1234.0, 0.4)
    bad = DiffusionConfig(**{**cfg.__dict__, "self_condition_prob": 0.0})  # a self-conditioned model keeps it
    with pytest.raises(LDMSegError, match="self-conditioned"):
        DiffusionTask(bad)


def test_fine_tuning_adds_self_conditioning_without_changing_the_model(tmp_path: Path) -> None:
    from ldmseg.training.config import DiffusionConfig
    from ldmseg.training.diffusion import DiffusionTask

    pipe = tiny_pipeline()
    torch.manual_seed(1)
    pipe.unet = build_unet("tiny", 4 + 8, 4, 4)
    pipe.register_to_config(self_condition=False)
    pipe.save_pretrained(tmp_path / "pipe")
    pipe.mask_autoencoder.save_pretrained(tmp_path / "ae")
    cfg = DiffusionConfig(out=str(tmp_path / "run"), ae=str(tmp_path / "ae"), init_from=str(tmp_path / "pipe"),
                          size=32, self_condition_prob=0.5)
    task = DiffusionTask(cfg)
    unet = task.model.unet
    assert unet.config.in_channels == 4 + 8 + 4 and task.pipeline(task.model).config.self_condition
    x, t = torch.randn(2, 12, 4, 4), torch.tensor([10, 900])
    hidden = pipe.task_embeddings("instances", 2)
    with torch.no_grad():
        before = pipe.unet(x, t, encoder_hidden_states=hidden).sample
        after = unet(torch.cat([x, torch.randn(2, 4, 4, 4)], 1), t, encoder_hidden_states=hidden).sample
    assert torch.allclose(before, after, atol=1e-6)  # the new estimate channels start at zero


def test_predict_reports_corrupt_image_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"not a jpeg")
    assert main(["predict", "--model", str(tmp_path / "model"), "--images", str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "corrupt" in err and not (tmp_path / "o").exists()


def test_the_api_people_try_first(tmp_path: Path) -> None:
    """`from ldmseg import LDMSegPipeline`, 'demo' by name, and pickled weights refused."""
    import ldmseg

    assert ldmseg.LDMSegPipeline is LDMSegPipeline
    demo = ldmseg.LDMSegPipeline.from_pretrained("demo")
    assert demo.mask_autoencoder.num_ids == 128
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "p")
    weights = next((tmp_path / "p" / "unet").glob("*.safetensors"))
    weights.rename(weights.with_suffix(".bin"))  # only a (would-be pickled) .bin left
    with pytest.raises((OSError, ValueError, LDMSegError)):
        LDMSegPipeline.from_pretrained(tmp_path / "p")


def test_predict_skips_a_bad_file_and_finishes_the_good_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tiny_pipeline().save_pretrained(tmp_path / "pipe")
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "imgs" / "good.png")
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "o"
    assert main(["predict", "--model", str(tmp_path / "pipe"), "--images", str(tmp_path / "imgs"), "--out",
                 str(out), "--steps", "1", "--task", "instances"]) == 2
    err = capsys.readouterr().err
    assert "bad.jpg" in err and "skipped.json" in err and "Traceback" not in err
    assert (out / "panoptic" / "good.png").exists() and not (out / "panoptic" / "bad.png").exists()
    assert [a["file_name"] for a in json.loads((out / "panoptic.json").read_text())["annotations"]] == ["good.png"]
    skipped = json.loads((out / "skipped.json").read_text())
    assert len(skipped) == 1 and skipped[0]["input"].endswith("bad.jpg") and "corrupt" in skipped[0]["error"]


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ldmseg.data import formats

    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setenv("LDMSEG_MAX_PIXELS", "10000")
    with pytest.raises(LDMSegError, match="200x100 px is over the limit"):
        formats.read_rgb(tmp_path / "big.png")
    monkeypatch.setenv("LDMSEG_MAX_PIXELS", "30000")
    assert formats.read_rgb(tmp_path / "big.png").shape == (100, 200, 3)
