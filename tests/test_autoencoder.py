"""Stage 1: the mask AE, its losses and point sampler, the SD-VAE variant."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ldmseg.data.bits import ids_to_bits
from ldmseg.errors import LDMSegError
from ldmseg.models import mask_losses as L
from ldmseg.models.loading import load_mask_autoencoder
from ldmseg.models.mask_autoencoder import MaskAutoencoder
from ldmseg.models.vae_mask_autoencoder import VAEMaskAutoencoder


def perfect_logits(ids: torch.Tensor, n: int, scale: float = 30.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(ids, n).permute(0, 3, 1, 2).float() * 2 * scale - scale


def blocks(b: int = 2, size: int = 32) -> torch.Tensor:
    ids = torch.zeros(b, size, size, dtype=torch.long)
    ids[:, : size // 2] = 5
    ids[:, size // 2:, : size // 2] = 9
    ids[:, size // 2:, size // 2:] = 3
    ids[:, :4, :4] = 0  # VOID corner
    return ids


def test_shapes_parameters_and_round_trip(tmp_path: Path) -> None:
    ae = MaskAutoencoder()  # the paper's widths
    n_params = sum(p.numel() for p in ae.parameters())
    assert 1.5e6 < n_params < 3e6
    ids = blocks()
    z = ae.encode_ids(ids)
    assert z.shape == (2, 4, 4, 4)
    assert ae.decode(z).shape == (2, 128, 16, 16)  # logits at H/2
    assert ae.decode(z, size=(32, 32)).shape == (2, 128, 32, 32)
    assert ae.reconstruct(ids).shape == ids.shape
    ae.save_pretrained(tmp_path / "ae")
    assert (tmp_path / "ae" / "diffusion_pytorch_model.safetensors").exists()
    again = load_mask_autoencoder(tmp_path / "ae")
    assert torch.equal(again.encode_ids(ids), z)
    f16 = MaskAutoencoder(downsample_factor=16, encoder_channels=(8, 8, 8, 8, 8), decoder_channels=16)
    assert f16.encode_ids(blocks()).shape[-1] == 2 and f16.decode(f16.encode_ids(blocks())).shape[-1] == 16
    with pytest.raises(ValueError):
        MaskAutoencoder(downsample_factor=6)


def test_unreadable_or_foreign_config_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(LDMSegError, match=r"bad/config.json: cannot read the model config \(.*not a valid JSON"):
        load_mask_autoencoder(tmp_path / "bad")
    AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4).save_pretrained(tmp_path / "kl")
    with pytest.raises(LDMSegError, match="not a mask autoencoder"):
        load_mask_autoencoder(tmp_path / "kl")


def test_point_head_equals_sampled_logits_and_options_build() -> None:
    """Training's point logits are the dense logits sampled at the points (exact for a linear head)."""
    torch.manual_seed(0)
    ids, coords = blocks(), torch.rand(2, 50, 2)
    for options in ({}, {"decoder_refine": True, "head_hidden": 32}, {"input_stem": "unshuffle"}):
        ae = MaskAutoencoder(encoder_channels=(8, 16, 16, 16), decoder_channels=32, **options)
        z = ae.encode_ids(ids)
        assert z.shape == (2, 4, 4, 4)
        dense = L.sample_at(ae.decode(z), coords)
        if not options.get("head_hidden"):  # linear head: sampling commutes with it
            assert torch.allclose(ae.point_logits(ae.decode_features(z), coords), dense, atol=1e-5)
        else:  # nonlinear head: equal at pixel centres
            centres = (torch.randint(0, 16, (2, 50, 2)) + 0.5) / 16
            assert torch.allclose(ae.point_logits(ae.decode_features(z), centres),
                                  L.sample_at(ae.decode(z), centres), atol=1e-5)
    with pytest.raises(ValueError, match="input_stem"):
        MaskAutoencoder(input_stem="fold")


def test_slot_head_decodes_normalised_mixtures_equal_at_points_and_dense() -> None:
    torch.manual_seed(0)
    ae = MaskAutoencoder(encoder_channels=(8, 16, 16, 16), decoder_channels=32, head="slots", slots=3).eval()
    assert ae.outputs_log_probs and not MaskAutoencoder().outputs_log_probs
    z = ae.encode_ids(blocks())
    dense = ae.decode(z)  # log-probabilities at H/2
    assert dense.shape == (2, 128, 16, 16)
    assert torch.allclose(dense.exp().sum(1), torch.ones(2, 16, 16), atol=1e-5)
    centres = (torch.randint(0, 16, (2, 50, 2)) + 0.5) / 16
    assert torch.allclose(ae.point_logits(ae.decode_for_loss(z), centres), L.sample_at(dense, centres), atol=1e-5)
    full = ae.decode(z, size=(32, 32))
    assert full.shape == (2, 128, 32, 32) and torch.allclose(full.exp().sum(1), torch.ones(2, 32, 32), atol=1e-4)
    with pytest.raises(ValueError, match="unknown head"):
        MaskAutoencoder(head="mlp")


def test_slot_mixture_only_decodes_ids_of_the_3x3_cells_around_a_pixel() -> None:
    """Sharp slots: whatever the weights, a pixel's argmax is one of its 3x3 cells' slot ids, never a third id
    (the boundary fragments of a per-pixel N-way head cannot occur)."""
    from ldmseg.models.mask_autoencoder import slot_mixture

    torch.manual_seed(0)
    b, k, n, h, w, r = 2, 2, 16, 4, 5, 4
    slot_ids = torch.randint(1, n, (b, k, h, w))
    log_slots = F.one_hot(slot_ids, n).permute(0, 1, 4, 2, 3).float().mul(40).log_softmax(2)
    probs = slot_mixture(log_slots, torch.randn(b, 9 * k, h * r, w * r) * 3)
    assert probs.shape == (b, n, h * r, w * r)
    assert torch.allclose(probs.sum(1), torch.ones(b, h * r, w * r), atol=1e-5)
    winners = probs.argmax(1)
    for i in range(b):
        for y in range(h * r):
            for x in range(w * r):
                cy, cx = y // r, x // r
                around = slot_ids[i, :, max(cy - 1, 0):cy + 2, max(cx - 1, 0):cx + 2]
                assert winners[i, y, x] in around
    centre_only = torch.full((b, 9 * k, h * r, w * r), -30.0)
    centre_only[:, 4 * k] = 30.0  # all weight on the own cell's first slot
    assert torch.equal(slot_mixture(log_slots, centre_only).argmax(1),
                       slot_ids[:, 0].repeat_interleave(r, 1).repeat_interleave(r, 2))


def test_slot_loss_reads_probabilities_as_binary_logits() -> None:
    lp = torch.tensor([0.9, 0.5, 1e-4]).log()
    assert torch.allclose(L.binary_logits(lp).sigmoid(), torch.tensor([0.9, 0.5, 1e-4]), atol=1e-6)
    ids = blocks()
    probs = perfect_logits(ids, 128).softmax(1)

    def log_probs_at(p: torch.Tensor) -> L.PointLogits:  # probabilities sampled, then logged, as the slot head does
        return lambda coords: L.sample_at(p, coords).clamp_min(1e-30).log()
    loss, logs = L.mask_autoencoder_loss(log_probs_at(probs), ids, 200, importance_ratio=0.0, log_probs=True)
    assert logs["ce"] < 0.05 and logs["bce"] < 0.05 and logs["dice"] < 0.05
    wrong, _ = L.mask_autoencoder_loss(log_probs_at(probs.roll(1, dims=1)), ids, 200, importance_ratio=0.0,
                                       log_probs=True)
    assert wrong > 10 * loss


def test_rebuilt_ae_gains_the_slot_head_with_its_latent_space_unchanged() -> None:
    from ldmseg.training.autoencoder import rebuilt

    torch.manual_seed(0)
    ae = MaskAutoencoder(encoder_channels=(8, 16, 16, 16), decoder_channels=32).eval()
    slotted = rebuilt(ae, head="slots", slots=2).eval()
    assert slotted.config.head == "slots" and slotted.slot_head is not None
    assert torch.equal(ae.encode_ids(blocks()), slotted.encode_ids(blocks()))
    old, new = ae.state_dict(), slotted.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder.") and old[k].shape == new[k].shape)
    assert slotted.decode(ae.encode_ids(blocks())).shape == (2, 128, 16, 16)


def test_refinement_added_to_a_trained_ae_starts_as_a_no_op() -> None:
    from ldmseg.training.autoencoder import rebuilt

    torch.manual_seed(0)
    ae = MaskAutoencoder(encoder_channels=(8, 16, 16, 16), decoder_channels=32).eval()
    refined = rebuilt(ae, decoder_refine=True).eval()
    assert len(refined.refine) == 2 and refined.config.decoder_refine
    z = ae.encode_ids(blocks())
    assert torch.equal(ae.decode(z), refined.decode(z))
    torch.nn.init.normal_(refined.refine[0].conv.weight)
    assert not torch.allclose(ae.decode(z), refined.decode(z))


def test_gaussian_posterior() -> None:
    ae = MaskAutoencoder(gaussian=True, encoder_channels=(8, 8, 8, 8), decoder_channels=16)
    mean, logvar = ae.encode_distribution(ids_to_bits(blocks(), 7))
    assert mean.shape == logvar.shape == (2, 4, 4, 4)
    assert torch.equal(ae.encode_ids(blocks()), mean)


def test_losses_near_zero_when_perfect_and_grow_with_error() -> None:
    torch.manual_seed(0)
    ids = blocks()
    good = perfect_logits(ids, 16)
    loss, parts = L.mask_autoencoder_loss(L.dense_point_logits(good), ids, num_points=200)
    assert parts["ce"] < 0.01 and parts["bce"] < 0.01 and parts["dice"] < 0.02  # bilinear blur at borders
    wrong = ids.clone()
    wrong[:, 16:, :16] = 5  # one segment predicted as another
    bad_loss, bad = L.mask_autoencoder_loss(L.dense_point_logits(perfect_logits(wrong, 16)), ids, num_points=200)
    assert bad["ce"] > 1 and bad["bce"] > 0.1 and bad["dice"] > 0.2 and bad_loss > loss + 1


def test_void_is_ignored_by_ce_and_negative_for_masks() -> None:
    ids = blocks()
    pts = torch.rand(2, 300, 2)
    target = L.sample_ids_at(ids, pts)
    logits = perfect_logits(ids, 16)
    garbage = logits.clone()
    garbage[:, :, :4, :4] = torch.randn(2, 16, 4, 4) * 50  # anything on VOID pixels
    ce_void = L.id_cross_entropy(L.sample_at(garbage, pts, mode="nearest"), target)
    assert ce_void < 1e-6  # VOID targets never enter the CE
    on_void = logits.clone()
    on_void[:, 5, :4, :4] = 30.0  # segment 5 claims the VOID corner: its mask loss sees a false positive
    corner = torch.rand(2, 300, 2) * (4 / 32)
    segs = L.present_ids(ids, 16)
    bce, _ = L.segment_bce_dice(L.sample_at(on_void, corner, mode="nearest"), L.sample_ids_at(ids, corner), segs)
    assert bce > 1.0


def test_importance_sampler_picks_uncertain_points() -> None:
    torch.manual_seed(0)
    logits = torch.zeros(1, 4, 64, 64)
    logits[:, 0] = 10.0  # confident everywhere ...
    logits[:, 1, :, 30:34] = 10.0  # ... except a vertical band where two ids tie
    pts = L.importance_points(L.top2_margin_uncertainty, L.dense_point_logits(logits), 1, logits.device,
                              num_points=100, oversample=20, importance_ratio=0.75)
    x = pts[0, :, 0] * 64
    in_band = ((x > 29) & (x < 35)).float()
    assert in_band[:75].mean() > 0.9  # importance points sit on the uncertain band
    assert in_band[75:].mean() < 0.5  # the rest are uniform
    assert L.scaled_num_points(112 * 112, 512, 512) == 12544 and L.scaled_num_points(112 * 112, 256, 256) == 3136


def tiny_sd_vae(path: Path) -> Path:
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=8, sample_size=32)
    vae.save_pretrained(path)
    return path


def test_sd_vae_variant_loads_widens_and_round_trips(tmp_path: Path) -> None:
    src = tiny_sd_vae(tmp_path / "sd-vae")
    ae = VAEMaskAutoencoder.from_sd_vae(str(src), num_bits=4)
    pretrained = AutoencoderKL.from_pretrained(src)
    assert torch.equal(ae.vae.encoder.down_blocks[0].resnets[0].conv1.weight,
                       pretrained.encoder.down_blocks[0].resnets[0].conv1.weight)
    assert ae.vae.encoder.conv_in.in_channels == 4 and ae.vae.decoder.conv_out.out_channels == 16
    ids = blocks(1, 16) % 16
    z = ae.encode_ids(ids)
    logits = ae.decode(z)
    assert logits.shape == (1, 16, 16, 16)
    loss, _ = L.mask_autoencoder_loss(L.dense_point_logits(logits), ids, num_points=64)
    loss.backward()
    ae.save_pretrained(tmp_path / "ft")
    again = load_mask_autoencoder(tmp_path / "ft")
    assert isinstance(again, VAEMaskAutoencoder) and torch.allclose(again.encode_ids(ids), z)


def test_reconstruct_cli_writes_scorable_predictions(synth_set: Path, tmp_path: Path) -> None:
    import json

    from ldmseg.cli import main

    MaskAutoencoder(encoder_channels=(4, 8, 8, 8), decoder_channels=8).save_pretrained(tmp_path / "ae")
    out = tmp_path / "recon"
    assert main(["reconstruct", "--ae", str(tmp_path / "ae"), "--images", str(synth_set / "images"),
                 "--gt-json", str(synth_set / "panoptic.json"), "--gt-dir", str(synth_set / "panoptic"),
                 "--out", str(out), "--resolution", "32", "--latent-noise", "0.1"]) == 0
    pred = json.loads((out / "panoptic.json").read_text())
    gt = json.loads((synth_set / "panoptic.json").read_text())
    assert [(a["image_id"], a["file_name"]) for a in pred["annotations"]] == \
        [(a["image_id"], a["file_name"]) for a in gt["annotations"]]
    stats = json.loads((out / "latent_stats.json").read_text())
    assert len(stats["mean"]) == 4 and stats["std_all"] > 0
    assert main(["evaluate", "--gt-json", str(synth_set / "panoptic.json"), "--gt-dir", str(synth_set / "panoptic"),
                 "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic")]) == 0


def test_reconstruct_demo_without_weights_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import ldmseg.weights as w
    from ldmseg.cli import main

    monkeypatch.setattr(w, "DEMO_DIR", tmp_path / "nothing")
    assert main(["reconstruct", "--ae", "demo", "--images", ".", "--gt-json", "x", "--gt-dir", ".",
                 "--out", str(tmp_path / "o")]) == 2


def test_id_pruning_gives_boundary_fragments_to_a_neighbour() -> None:
    from ldmseg.diffusion.postprocess import logits_to_panoptic

    logits = torch.full((1, 8, 8, 8), -5.0)
    logits[0, 1, :, :4] = 5.0  # id 1 on the left, id 2 on the right
    logits[0, 2, :, 4:] = 5.0
    logits[0, 3, 2:4, 3:5] = 6.0  # a 4-pixel spurious id on the boundary, confident enough to win argmax
    logits[0, 1, 2:4, 3] = logits[0, 2, 2:4, 4] = 5.5  # ... with the right neighbour a close second
    (plain, _), = logits_to_panoptic(logits, threshold=0.0)
    assert len(set(plain.ravel().tolist())) == 3
    (pruned, segs), = logits_to_panoptic(logits, threshold=0.0, min_core=5)
    assert len(segs) == 2 and (pruned[:, :4] == pruned[0, 0]).all() and (pruned[:, 4:] == pruned[0, 7]).all()
    (kept, _), = logits_to_panoptic(logits, threshold=0.0, min_core=4)  # 4 confident pixels: a real segment
    assert len(set(kept.ravel().tolist())) == 3
    flat = torch.zeros(1, 8, 4, 4)  # nothing confident anywhere (p ~ 0.19): nothing is pruned
    flat[0, 2] = 0.5
    (ids, _), = logits_to_panoptic(flat, threshold=0.0, min_core=5)
    assert (ids == ids[0, 0]).all() and ids[0, 0] != 0


def test_reconstruction_pq_encodes_at_the_process_size() -> None:
    from ldmseg.training.autoencoder import reconstruction_pq

    ae = MaskAutoencoder(encoder_channels=(4, 8, 8, 8), decoder_channels=8)
    seen, decoded, encode, decode = [], [], ae.encode_ids, ae.decode
    ae.encode_ids = lambda ids: seen.append(tuple(ids.shape[-2:])) or encode(ids)
    ae.decode = lambda z, size=None: decoded.append(size) or decode(z, size)
    items = [{"ids": ids} for ids in blocks(3, 32)]
    r = reconstruction_pq(ae, items, batch_size=2, process_size=64)
    assert seen == [(64, 64)] * 2 and decoded == [(32, 32)] * 2  # encoded at 64^2, decoded straight to 32^2
    assert 0 <= r["pq"] <= 100


def test_batched_mask_losses_equal_the_per_image_definitions() -> None:
    """segment_bce_dice / segment_uncertainty over all segments at once = the per-image, per-segment formulas."""
    torch.manual_seed(0)
    ids = torch.randint(0, 9, (3, 20, 20))
    ids[2] = 0  # an image with VOID only
    logits, target = torch.randn(3, 16, 50) * 3, L.sample_ids_at(ids, torch.rand(3, 50, 2))
    present = L.present_ids(ids, 16)
    bce_sum, dice_sum, n = 0.0, 0.0, 0
    for k in range(3):
        for s in torch.unique(ids[k][ids[k] != 0]):
            tgt = (target[k] == s).float()
            bce_sum += torch.nn.functional.binary_cross_entropy_with_logits(logits[k, s], tgt)
            p = logits[k, s].sigmoid()
            dice_sum += 1 - (2 * (p * tgt).sum() + 1) / (p.sum() + tgt.sum() + 1)
            n += 1
        seg = torch.unique(ids[k][ids[k] != 0])
        expected = (-logits[k, seg].abs()).amax(0) if len(seg) else -logits[k, 0].abs()
        assert torch.allclose(L.segment_uncertainty(present)(logits)[k], expected)
    bce, dice = L.segment_bce_dice(logits, target, present)
    assert torch.allclose(bce, bce_sum / n) and torch.allclose(dice, dice_sum / n)


def test_decoded_distributions_are_resized_as_probabilities() -> None:
    """Between a pixel of id 0 and one of id 1, resizing logits lets id 2 (likely on both sides) win the
    middle: a fragment; resizing the distributions gives their mixture, so only ids 0 and 1 appear."""
    from ldmseg.models.mask_autoencoder import resize_distribution

    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0], [7.0, 7.0]]).view(1, 3, 1, 2)
    assert 2 in F.interpolate(logits, size=(1, 8), mode="bilinear", align_corners=False).argmax(1)
    resized = resize_distribution(logits, (1, 8))
    assert set(resized.argmax(1).flatten().tolist()) == {0, 1}
    assert torch.allclose(resized.exp().sum(1), torch.ones(1, 1, 8))
    assert torch.allclose(resized.softmax(1), resized.exp())  # log-probabilities: softmax gives them back
