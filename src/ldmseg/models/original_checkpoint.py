"""The authors' released checkpoints (segments-ai/latent-diffusion-segmentation) mapped onto ldmseg's models.

Their files are torch pickles: an AE file {step, epoch, vae, opt, p, scaler} (weights under `vae`) and an LDM file
{step, epoch, vae_image, vae_semseg, unet, ema, opt, p, scaler}. They are read with `torch.load(weights_only=True)`,
which rebuilds tensors and plain containers only and refuses anything that needs code. Their UNet is SD's with a
12-channel conv_in (stored twice, as `conv_in.*` and `new_conv.*`) and without cross-attention (every attn2 / norm2
of the transformer blocks deleted); here those come back as a zeroed attn2, which adds exactly nothing
(`denoiser.bypass_cross_attention`), so the UNet stays a plain diffusers `UNet2DConditionModel`.
Every problem is one line naming the file and the key; nothing here writes files.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from ldmseg.errors import LDMSegError
from ldmseg.models.original_autoencoder import OriginalMaskAutoencoder

ORIGINAL_MASK_SCALE = 0.18215  # their tools/scripts/eval.sh (base.vae_model_kwargs.scaling_factor)
AE_KEYS, LDM_KEYS = ("vae",), ("unet", "vae_semseg")
BYPASSED = re.compile(r"\.transformer_blocks\.\d+\.(attn2|norm2)\.")  # what their remove_cross_attention deletes


def read_checkpoint(path: str | Path, kind: str) -> dict:
    """A checkpoint file as a dict, tensors and plain values only; `kind` 'ae' or 'ldm' is checked by its keys."""
    path = Path(path)
    if not path.is_file():
        raise LDMSegError(f"{path}: checkpoint file not found")
    data = _load(path)
    if not isinstance(data, dict):
        raise LDMSegError(f"{path}: not a checkpoint dict (a {type(data).__name__})")
    wanted, other = (AE_KEYS, LDM_KEYS) if kind == "ae" else (LDM_KEYS, AE_KEYS)
    if not all(k in data for k in wanted):
        looks = " (it looks like the other file: an LDM)" if kind == "ae" and all(k in data for k in other) else (
            " (it looks like the other file: a mask AE)" if all(k in data for k in other) else "")
        keys = ", ".join(sorted(map(str, data))[:8])
        raise LDMSegError(f"{path}: not the authors' {'mask-AE' if kind == 'ae' else 'LDM'} checkpoint: missing "
                          f"key(s) {', '.join(k for k in wanted if k not in data)}{looks}; it has {keys}")
    return data


def _load(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it references {found.group(1)}" if found else "not only tensors and plain containers"
        raise LDMSegError(f"{path}: refused, the pickle needs code to load ({what}); only weights are read") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        if "mmap" in str(e):  # an old (non-zip) torch file: no memory map, read it whole
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e2:
                raise LDMSegError(f"{path}: refused, the pickle needs code to load") from e2
            except Exception as e2:  # noqa: BLE001 - any decoding failure is a broken file
                raise LDMSegError(f"{path}: not a readable torch checkpoint ({type(e2).__name__})") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LDMSegError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {first[:160]})") from None


def tensor_dict(data: dict, key: str, source: Path) -> dict[str, torch.Tensor]:
    """`data[key]` as a state dict without DDP's `module.` prefixes, every tensor checked (`check_tensor`);
    anything but name -> tensor is an error."""
    state = data.get(key)
    if not isinstance(state, dict) or not state:
        raise LDMSegError(f"{source}: entry {key!r} is not a state dict of tensors")
    out = {}
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise LDMSegError(f"{source}: entry {key!r}, key {name!r}: not a named tensor")
        out[name.removeprefix("module.")] = check_tensor(value, f"{source}: entry {key!r}, tensor {name!r}")
    return out


WEIGHT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(value: torch.Tensor, where: str) -> torch.Tensor:
    """A weight as a checkpoint may hold one: real floating point, not empty, every value finite. Anything else
    (integers, complex, zero-size, NaN or infinity) is one line naming it: it would load, and serve nonsense."""
    if value.dtype not in WEIGHT_DTYPES:
        raise LDMSegError(f"{where}: expected floating-point weights, got {str(value.dtype).removeprefix('torch.')}")
    if value.numel() == 0:
        raise LDMSegError(f"{where}: expected weights, got an empty tensor of shape {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise LDMSegError(f"{where}: expected finite weights, got NaN or infinity")
    return value


def config_of(data: dict, *keys: str) -> dict:
    """A nested entry of their config `p` (a plain dict) or {} when the file has none."""
    node = data.get("p")
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def mask_autoencoder_from_state(state: dict[str, torch.Tensor], source: Path, p_kwargs: dict | None = None
                                ) -> OriginalMaskAutoencoder:
    """Their `GeneralVAESeg` weights in an `OriginalMaskAutoencoder`, its config read off the tensor shapes (and
    the group count from their config where the file has it), checked before the model is built."""
    try:
        model = OriginalMaskAutoencoder(**_mask_autoencoder_config(state, source, p_kwargs or {}))
    except ValueError as e:
        raise LDMSegError(f"{source}: unsupported mask AE ({e})") from None
    load_strict(model, state, source, "mask AE")
    return model.eval()


MAX_NUM_BITS = 24  # ids of a COCO-RGB PNG: the decoder's logits are 2**num_bits channels


def _mask_autoencoder_config(state: dict[str, torch.Tensor], source: Path, p_kwargs: dict) -> dict:
    """The layout their AE's tensors describe (encoder convs, latent width, upscalers, logits), every number in
    range; the group count `norm_num_groups` from their config, a positive integer."""
    convs = [state[k] for k in _ordered(state, "encoder.") if state[k].ndim == 4]
    ups = [state[k] for k in _ordered(state, "decoder.") if state[k].ndim == 4 and state[k].shape[-1] == 2]
    first = state.get("decoder.0.weight")
    if first is None or first.ndim != 4:
        shown = "is missing" if first is None else f"has shape {tuple(first.shape)}"
        raise LDMSegError(f"{source}: mask AE tensor 'decoder.0.weight' {shown}; expected a 4-D conv weight")
    if len(convs) < 5 or (len(convs) - 3) % 2:
        raise LDMSegError(f"{source}: not their mask AE layout ({len(convs)} 4-D encoder.<i>.weight conv weights; "
                          "expected an odd number, at least 5)")
    latent, num_bits = int(first.shape[1]), int(convs[0].shape[1])
    last = [state[k] for k in _ordered(state, "decoder.") if state[k].ndim == 4][-1]  # decoder.0 at least
    if not 1 <= num_bits <= MAX_NUM_BITS or int(last.shape[0]) != 2**num_bits:
        raise LDMSegError(f"{source}: mask AE tensor 'encoder.0.weight' takes {num_bits} bit planes and the last "
                          f"decoder conv gives {int(last.shape[0])} logits; expected 1..{MAX_NUM_BITS} bit planes "
                          "and 2**bits logits")
    if int(convs[-1].shape[0]) not in (latent, 2 * latent):
        raise LDMSegError(f"{source}: mask AE tensor 'decoder.0.weight' takes {latent} latent channels, the "
                          f"encoder gives {int(convs[-1].shape[0])}; expected the same or twice (mean, log-variance)")
    widths = [int(convs[0].shape[0])] + [int(c.shape[0]) for c in convs[2:-2:2]]
    return dict(num_bits=num_bits, block_out_channels=tuple(widths), int_channels=int(convs[-2].shape[0]),
                latent_channels=latent, num_latents=int(convs[-1].shape[0]) // latent, num_upscalers=len(ups),
                upscale_channels=int(ups[0].shape[1]) if ups else int(convs[-2].shape[0]),
                norm_num_groups=_group_count(p_kwargs, source), downsample_factor=2 ** (len(widths) - 1))


def _group_count(p_kwargs: dict, source: Path) -> int:
    """Their config's `norm_num_groups` (32 where it has none): a positive integer; whether it divides the
    widths is the model's check."""
    groups = p_kwargs.get("norm_num_groups", 32)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise LDMSegError(f"{source}: entry 'p', vae_model_kwargs.norm_num_groups: expected a positive integer, "
                          f"got {groups!r}")
    return groups


def _ordered(state: dict, prefix: str) -> list[str]:
    """Keys `prefix<i>.weight` by Sequential index i."""
    keys = [k for k in state if k.startswith(prefix) and k.endswith(".weight") and k.count(".") == 2]
    return sorted(keys, key=lambda k: int(k.split(".")[1]) if k.split(".")[1].isdigit() else -1)


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, what: str) -> None:
    """Every tensor of `state` to its place in `model`: a missing, extra or wrong-shape tensor is an error naming it."""
    own = model.state_dict()
    for name in own:
        if name not in state:
            raise LDMSegError(f"{source}: {what} tensor {name!r} is missing")
    for name, value in state.items():
        if name not in own:
            raise LDMSegError(f"{source}: unexpected {what} tensor {name!r}")
        if tuple(value.shape) != tuple(own[name].shape):
            raise LDMSegError(f"{source}: {what} tensor {name!r} has shape {tuple(value.shape)}, expected "
                              f"{tuple(own[name].shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)


def unet_state(data: dict, source: Path, weights: str) -> dict[str, torch.Tensor]:
    """The UNet's tensors to serve: `weights` 'ema' (the EMA copy, where the file has one) or 'raw'; the duplicate
    `new_conv.*` entries checked against `conv_in.*` and dropped."""
    state = tensor_dict(data, "unet", source)
    for name in [k for k in state if k.startswith("new_conv.")]:
        twin = "conv_in." + name.removeprefix("new_conv.")
        if twin not in state or not torch.equal(state[twin], state[name]):
            raise LDMSegError(f"{source}: unet tensor {name!r} differs from {twin!r} (their widened conv_in is "
                              "stored under both names)")
        del state[name]
    if weights == "ema":
        ema = data.get("ema")
        if ema is not None:
            state = ema_weights(ema, state, source)
    elif weights != "raw":
        raise LDMSegError(f"weights must be 'ema' or 'raw', got {weights!r}")
    return state


def ema_weights(ema: object, state: dict[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """diffusers' `EMAModel.state_dict()` keeps `shadow_params` as a list in the order of the UNet's parameters,
    which is the order of its state dict (the UNet has no buffers; the duplicate conv is not a second parameter)."""
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    if not isinstance(shadow, list) or not all(isinstance(t, torch.Tensor) for t in shadow):
        raise LDMSegError(f"{source}: entry 'ema' has no list of tensors 'shadow_params' (not diffusers' EMAModel)")
    names = list(state)
    if len(shadow) != len(names):
        raise LDMSegError(f"{source}: entry 'ema' holds {len(shadow)} tensors, the UNet has {len(names)}")
    out = {}
    for name, tensor in zip(names, shadow, strict=True):
        if tuple(tensor.shape) != tuple(state[name].shape):
            raise LDMSegError(f"{source}: entry 'ema' tensor for {name!r} has shape {tuple(tensor.shape)}, expected "
                              f"{tuple(state[name].shape)}")
        out[name] = check_tensor(tensor, f"{source}: entry 'ema' tensor for {name!r}")
    return out


def original_unet(state: dict[str, torch.Tensor], unet_config: dict, source: Path):
    """SD's UNet (its config; conv_in as wide as the checkpoint's) with their weights, attn2 / norm2 of every
    transformer block restored as a bypass (zero attn2, identity norm2)."""
    from accelerate import init_empty_weights
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    conv_in = state.get("conv_in.weight")
    if conv_in is None or conv_in.ndim != 4:
        shown = "is missing" if conv_in is None else f"has shape {tuple(conv_in.shape)}"
        raise LDMSegError(f"{source}: unet tensor 'conv_in.weight' {shown}; expected a 4-D conv weight")
    config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    config["in_channels"] = int(conv_in.shape[1])
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    full = dict(state)
    for name, meta in unet.state_dict().items():
        if name not in full and BYPASSED.search(name):
            full[name] = torch.ones(meta.shape) if ".norm2.weight" in name else torch.zeros(meta.shape)
    present = [k for k in state if BYPASSED.search(k)]
    if present:
        raise LDMSegError(f"{source}: unet tensor {present[0]!r}: this UNet kept its cross-attention (their "
                          "image_descriptors: remove deletes it); not the released class-agnostic model")
    load_strict(unet, full, source, "unet")
    return unet.eval()
