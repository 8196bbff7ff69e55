"""Mask inpainting (Algorithm 3): the sampler, given-id handling, mask generators, pipeline and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_diffusion import tiny_pipeline

from ldmseg.cli import main
from ldmseg.data import formats
from ldmseg.data.masks import MASK_TYPES, make_mask
from ldmseg.diffusion.inpainting import given_ids_mask, latent_mask, match_given_ids, to_model_ids
from ldmseg.diffusion.postprocess import logits_to_panoptic
from ldmseg.diffusion.sampling import sample_latents
from ldmseg.diffusion.schedule import output_for_x0, predicted_x0, training_scheduler
from ldmseg.errors import LDMSegError


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_output_for_x0_inverts_predicted_x0(prediction_type: str) -> None:
    ac = training_scheduler(prediction_type).alphas_cumprod
    z_t, x0 = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    t = torch.tensor([10, 500, 990])
    out = output_for_x0(x0, z_t, t, ac, prediction_type)
    assert torch.allclose(predicted_x0(out, z_t, t, ac, prediction_type), x0, atol=1e-4)


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler"])
def test_sampler_pastes_known_latents_into_every_x0_estimate(name: str) -> None:
    pipe = tiny_pipeline("epsilon")
    pipe.use_sampler(name)
    den = pipe._denoise("instances")
    seen = []

    def recording(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(x[:, -4:].clone())  # self-conditioning channels: the previous (edited) x0 estimate
        return den(x, t)

    known = torch.randn(2, 4, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1.0
    z = sample_latents(recording, pipe.scheduler, torch.randn(2, 8, 4, 4), 4, 4, True,
                       torch.Generator().manual_seed(0), known=known, known_mask=mask)
    for x0 in seen[1:]:
        assert torch.allclose(x0[:, :, :2], known[:, :, :2], atol=1e-4)
    assert torch.equal(z[:, :, :2], known[:, :, :2]) and not torch.allclose(z[:, :, 2:], known[:, :, 2:])


def test_latent_mask_rules() -> None:
    valid = torch.zeros(1, 16, 16, dtype=torch.bool)
    valid[0, :8, :8] = True  # cell (0, 0) fully known
    valid[0, 8:12, 0:8] = True  # cell (1, 0): top half known
    valid[0, 3, 12] = True  # cell (0, 1): one pixel
    grids = {rule: latent_mask(valid, (2, 2), rule)[0, 0].tolist() for rule in ("all", "any", "nearest")}
    assert grids["all"] == [[1.0, 0.0], [0.0, 0.0]]
    assert grids["any"] == [[1.0, 1.0], [1.0, 0.0]]
    assert grids["nearest"][0][0] == 1.0 and grids["nearest"][1][1] == 0.0
    with pytest.raises(ValueError):
        latent_mask(valid, (2, 2), "some")


def test_given_ids_are_kept_and_new_segments_get_fresh_ids() -> None:
    partial = np.zeros((6, 6), np.int64)
    partial[:, :2] = 2_000_000  # a COCO-style RGB id
    partial[0, 4] = 7
    valid = partial != 0
    pred = np.ones((6, 6), np.int64)
    pred[:, 3:] = 2  # overlaps the given id 7 at one pixel
    pred[4:, 3:] = 3  # overlaps nothing given: fresh
    pred[5, 0] = 9  # a stray predicted segment on given pixels
    out, agreement = match_given_ids(pred, partial, valid)
    assert (out[:, :2] == 2_000_000).all() and out[0, 4] == 7 and (out[:4, 3:] == 7).all()
    assert (out[4:, 3:] == 2_000_001).all() and out[0, 2] == 2_000_000
    assert agreement == pytest.approx(13 / 13) and (out[valid] == partial[valid]).all()
    pred[0, 4] = 1  # the given pixel of id 7 now inside the big segment: it takes 2_000_000 there
    out2, agreement2 = match_given_ids(pred, partial, valid, keep_known=False)
    assert agreement2 == pytest.approx(12 / 13) and out2[0, 4] == 2_000_000


def test_model_ids_are_distinct_and_bounded() -> None:
    partial = np.arange(64).reshape(8, 8) * 1000
    ids = to_model_ids(partial, np.ones((8, 8), bool), 128, np.random.default_rng(0))
    assert ids[0, 0] == 0 and len(np.unique(ids[ids != 0])) == 63 and ids.max() < 128
    with pytest.raises(LDMSegError, match="at most 15"):
        to_model_ids(partial, np.ones((8, 8), bool), 16, np.random.default_rng(0))


def test_given_ids_survive_id_pruning() -> None:
    logits = torch.full((1, 8, 8, 8), -5.0)
    logits[0, 1] = 5.0
    logits[0, 3, 2:4, 2:4] = 6.0  # a small segment of 4 confident pixels
    given = np.zeros((8, 8), np.int64)
    given[2, 2] = 3  # ... that the user gave
    (pruned, _), = logits_to_panoptic(logits, threshold=0.0, min_core=5)
    assert len(np.unique(pruned)) == 1
    protected = given_ids_mask(given, 8)
    assert protected[0].tolist() == [i == 3 for i in range(8)]
    (kept, _), = logits_to_panoptic(logits, threshold=0.0, min_core=5, protected=protected)
    assert len(np.unique(kept)) == 2 and (kept[2:4, 2:4] != kept[0, 0]).all()
    (absent, _), = logits_to_panoptic(logits, threshold=0.0, min_core=5, protected=given_ids_mask(given * 2, 8))
    assert len(np.unique(absent)) == 1  # protecting an id the decoder never predicts adds nothing


@pytest.mark.parametrize("kind", MASK_TYPES)
@pytest.mark.parametrize("drop", [0.1, 0.5, 0.9])
def test_mask_generators_hit_their_drop_rate(kind: str, drop: float) -> None:
    rng = np.random.default_rng(3)
    for size, block in (((64, 64), 4), ((96, 80), 8)):
        known = make_mask(kind, size, drop, block, rng)
        assert known.shape == size and known.dtype == bool
        hidden = 1 - known.mean()
        if kind == "strokes":
            assert abs(hidden - drop) < 0.03
        else:  # whole blocks: exact in block units
            gh, gw = -(-size[0] // block), -(-size[1] // block)
            blocks = (~known)[::block, ::block]
            assert blocks.sum() == round(drop * gh * gw)
    with pytest.raises(ValueError):
        make_mask(kind, (8, 8), 1.5, 2, rng)


def test_pipeline_inpaints_with_any_ids_and_checks_shapes() -> None:
    pipe = tiny_pipeline()
    image = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    partial = np.zeros((40, 48), np.int64)
    partial[:, :20] = 5_000_000
    partial[:10, 30:] = 12
    out = pipe(image, generator=torch.Generator().manual_seed(0), partial_mask=partial)
    ids = out.panoptic[0]
    assert ids.shape == (40, 48) and (ids[partial != 0] == partial[partial != 0]).all()
    assert set(np.unique(ids).tolist()) - {0, 12, 5_000_000} <= set(range(5_000_001, 5_000_200))
    assert 0.0 <= out.known_agreement[0] <= 1.0
    assert {s["id"] for s in out.segments_info[0]} == set(np.unique(ids[ids != 0]).tolist())
    with pytest.raises(LDMSegError, match="does not match"):
        pipe(image, partial_mask=partial[:30])


@pytest.mark.slow
def test_inpaint_cli_round_trip(synth_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    assert main(["inpaint", "--model", str(tmp_path / "model"), "--images", str(synth_set / "images"),
                 "--gt-json", str(synth_set / "panoptic.json"), "--gt-dir", str(synth_set / "panoptic"),
                 "--out", str(out), "--drop-rate", "0.5", "--block-size", "8", "--steps", "2", "--ensemble-size",
                 "3"]) == 0
    pred = json.loads((out / "panoptic.json").read_text())
    gt = json.loads((synth_set / "panoptic.json").read_text())
    assert [a["image_id"] for a in pred["annotations"]] == [a["image_id"] for a in gt["annotations"]]
    for ann in gt["annotations"]:
        known = formats.read_binary_mask(out / "masks" / ann["file_name"])
        given = formats.read_panoptic_png(synth_set / "panoptic" / ann["file_name"])
        done = formats.read_panoptic_png(out / "panoptic" / ann["file_name"])
        assert abs(known.mean() - 0.5) < 0.1 and (done[known & (given != 0)] == given[known & (given != 0)]).all()
    assert main(["evaluate", "--gt-json", str(synth_set / "panoptic.json"), "--gt-dir", str(synth_set / "panoptic"),
                 "--pred-json", str(out / "panoptic.json"), "--pred-dir", str(out / "panoptic"),
                 "--class-agnostic"]) == 0
    first = gt["annotations"][0]["file_name"]
    image = next((synth_set / "images").glob(Path(first).stem + ".*"))
    assert main(["inpaint", "--model", str(tmp_path / "model"), "--image", str(image), "--partial",
                 str(out / "panoptic" / first), "--valid", str(out / "masks" / first), "--out",
                 str(tmp_path / "one"), "--steps", "2"]) == 0
    assert (tmp_path / "one" / "panoptic.png").exists() and (tmp_path / "one" / "overlay.png").exists()
    formats.write_panoptic_png(tmp_path / "small.png", np.ones((8, 8), np.int64))
    capsys.readouterr()
    assert main(["inpaint", "--model", str(tmp_path / "model"), "--image", str(image), "--partial",
                 str(tmp_path / "small.png"), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "small.png" in err[0] and not (tmp_path / "bad").exists()
