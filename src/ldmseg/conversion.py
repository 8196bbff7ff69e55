"""The paper's own models in ldmseg: the authors' released checkpoints -> the parts of an `LDMSegPipeline` (or a
mask AE) that every command loads, served with the authors' evaluation settings.

Their evaluation (tools/scripts/eval.sh and their base config): 50 DDIM steps on timesteps 999, 979, ..., 19
(diffusers' "trailing" spacing), the last step returning x0, self-conditioning on the previous step's x0, images
squashed to 512 x 512, mask latents x 0.18215, pixels under 0.5 confidence and segments under 512 px VOID, fp32.
Those become the converted pipeline's config; `FAST_PRESET` is one flag away (docs/usage.md).
"""

from __future__ import annotations

from pathlib import Path

from ldmseg.errors import LDMSegError
from ldmseg.models.layers import same_weights
from ldmseg.models.original_checkpoint import (
    ORIGINAL_MASK_SCALE,
    config_of,
    mask_autoencoder_from_state,
    original_unet,
    read_checkpoint,
    tensor_dict,
    unet_state,
)

ORIGINAL_SERVING = {"default_num_inference_steps": 50, "default_processing_resolution": 512,
                    "confidence_threshold": 0.5, "min_area_at_512": 512.0, "min_core_at_512": 0.0,
                    "default_ensemble_size": 1, "default_precision": "fp32", "final_x0": True}
# the documented faster setting: PQ plateaus near 20 DDIM steps in the paper's Fig. 7 (51.4 vs 51.7 at 50);
# bf16 where the hardware has it. Unmeasured on the real weights here (no COCO, no released weights).
FAST_PRESET = {"num_inference_steps": 20, "precision": "auto"}
TRAINED_ON = ("COCO panoptic train2017, class-agnostic (the authors' released LDMSeg; weights CC BY-NC 4.0, "
              "non-commercial use only)")
WEIGHTS = ("ema", "raw")
# The files of Stable Diffusion that the conversion reads (its UNet's config, its VAE): a hub id downloads only these.
SD_FILES = ("model_index.json", "unet/config.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors")


def autoencoder_from_original(ae_file: str | Path):
    """Their mask-AE file (`vae` weights) as an `OriginalMaskAutoencoder`."""
    data = read_checkpoint(ae_file, "ae")
    state = tensor_dict(data, "vae", Path(ae_file))
    return mask_autoencoder_from_state(state, Path(ae_file), config_of(data, "vae_model_kwargs"))


def original_components(ldm_file: str | Path, stable_diffusion: str, ae_file: str | Path | None = None,
                        weights: str = "ema") -> dict:
    """Their LDM file as the components and config of an `LDMSegPipeline` (`LDMSegPipeline.from_original` builds
    it; this module does not import the pipeline, so the two do not import each other): the UNet (`weights`: its
    EMA copy where the file has one, or the raw weights) and the mask AE it was trained with (`vae_semseg`; an
    `ae_file` given beside must hold the same), the image encoder and the UNet's configuration from
    `stable_diffusion` (an SD directory or hub id: their code used CompVis/stable-diffusion-v1-4), served with
    their evaluation settings."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    from ldmseg.diffusion.schedule import make_sampler
    from ldmseg.models.denoiser import TaskEmbeddings
    from ldmseg.models.image_encoder import SDVAEImageEncoder, sd_subfolder
    if weights not in WEIGHTS:
        raise LDMSegError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    check_stable_diffusion(stable_diffusion)
    source = Path(ldm_file)
    data = read_checkpoint(source, "ldm")
    if not Path(stable_diffusion).exists():
        from ldmseg.weights import hub_model

        stable_diffusion = str(hub_model(stable_diffusion, SD_FILES))  # cached or downloaded; one line if not
    ae = mask_autoencoder_from_state(tensor_dict(data, "vae_semseg", source), source,
                                     config_of(data, "vae_model_kwargs"))
    if ae_file is not None and not same_weights(ae, autoencoder_from_original(ae_file)):
        raise LDMSegError(f"{ae_file}: this mask AE differs from the one the LDM was trained with ({source}: "
                          "vae_semseg); convert without --ae, or convert the AE alone")
    try:
        unet_config = UNet2DConditionModel.load_config(stable_diffusion, subfolder=sd_subfolder(stable_diffusion,
                                                                                                 "unet"))
        image_encoder = SDVAEImageEncoder.from_sd_vae(stable_diffusion)
    except (OSError, ValueError) as e:
        raise LDMSegError(f"{stable_diffusion}: cannot read Stable Diffusion's UNet config and VAE "
                          f"({str(e).splitlines()[0][:160]})") from None
    unet = original_unet(unet_state(data, source, weights), unet_config, source)
    d = ae.config.latent_channels
    if unet.config.out_channels != d:
        raise LDMSegError(f"{source}: the UNet predicts {unet.config.out_channels} channels, the mask AE has {d}")
    extra = unet.config.in_channels - d - image_encoder.out_channels
    if extra not in (0, d):
        raise LDMSegError(f"{source}: conv_in takes {unet.config.in_channels} channels; expected "
                          f"{d + image_encoder.out_channels} or, with self-conditioning, "
                          f"{2 * d + image_encoder.out_channels}")
    tokens = TaskEmbeddings(("instances",), 1, unet.config.cross_attention_dim).requires_grad_(False)
    tokens.embeddings.data.zero_()  # cross-attention is bypassed: the token reaches nothing
    return dict(unet=unet, image_encoder=image_encoder, mask_autoencoder=ae,
                scheduler=make_sampler("ddim", "epsilon", "trailing"), task_embeddings=tokens,
                scale_factor=ORIGINAL_MASK_SCALE, scale_factors={"instances": ORIGINAL_MASK_SCALE},
                self_condition=extra == d, trained_on=TRAINED_ON, presets={"fast": FAST_PRESET}, **ORIGINAL_SERVING)


def check_stable_diffusion(path: str) -> None:
    """--stable-diffusion, before any checkpoint is read: a local folder must hold SD's unet/config.json and vae/
    (a component folder such as SD/vae, given for the whole, would be read as the UNet's config); a path that is
    not here must be a hub id (`weights.check_hub_id`)."""
    from ldmseg.weights import check_hub_id

    local = Path(path)
    if not local.exists():
        check_hub_id(path, "Stable Diffusion directory (--stable-diffusion)")
        return
    missing = [name for name in ("unet/config.json", "vae/config.json") if not (local / name).is_file()]
    if missing:
        component = (local / "config.json").is_file()
        hint = "; this looks like one of its subfolders: give the folder above it" if component else ""
        raise LDMSegError(f"--stable-diffusion {path}: expected a Stable Diffusion folder holding unet/config.json "
                          f"and vae/ (diffusers' layout); it has no {' and no '.join(missing)}{hint}")
