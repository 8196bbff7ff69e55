"""`ldmseg data`: write synthetic scenes, convert COCO instance annotations to COCO-panoptic, hold out a split."""

from __future__ import annotations

import argparse

from ldmseg import checks
from ldmseg.cli_flags import alias
from ldmseg.data import outputs


def _cmd_data_synth(a: argparse.Namespace) -> None:
    from ldmseg.data.synthetic import SceneConfig, write_dataset

    outputs.check_output_place(a.out)
    checks.fits_disk(f"{a.num} scenes of {a.resolution}^2", a.out, a.num * a.resolution**2)
    path = write_dataset(a.out, a.num, SceneConfig.preset(a.preset, a.resolution), seed=a.seed)
    print(f"wrote {a.num} scenes to {path}")


def _cmd_data_instances_to_panoptic(a: argparse.Namespace) -> None:
    from ldmseg.data.coco_instances import check_images, load_instances, write_panoptic

    outputs.check_outputs_apart(a.out, {"JSON": a.json, "IMAGES": a.images})
    instances = load_instances(a.json)
    check_images(instances, a.images)
    n = write_panoptic(instances, a.out, a.class_agnostic)
    print(f"wrote {n} panoptic maps to {a.out} (panoptic.json, panoptic/)")


def _cmd_data_instances_split(a: argparse.Namespace) -> None:
    from ldmseg.data.coco_instances import write_split

    outputs.check_outputs_apart(a.out, {"JSON": a.json, "IMAGES": a.images})
    train, val = write_split(a.json, a.images, a.out, a.val, a.seed)
    print(f"wrote {a.out}/train.json ({train} images) and {a.out}/val.json ({val} images)")


def instances_inputs(parser: argparse.ArgumentParser, images_help: str, out_help: str) -> None:
    """The positional JSON IMAGES OUT of the commands that read a COCO instances set."""
    parser.add_argument("json", help="COCO instances JSON")
    parser.add_argument("images", help=images_help)
    parser.add_argument("out", help=out_help)


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    """The `data` command group and its three subcommands."""
    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("synth", help="write synthetic scenes in COCO-panoptic layout")
    s.add_argument("--out", required=True, help="output folder: images/, panoptic/, panoptic.json, semantic/, depth/")
    s.add_argument("--num", type=checks.positive, default=100, help="scenes to write (default 100)")
    s.add_argument("--resolution", type=checks.resolution, default=128, help="square size in px (default 128)")
    alias(s, "--size", "--resolution", checks.resolution)
    s.add_argument("--seed", type=checks.seed, default=0, help="scene seed (default 0)")
    s.add_argument("--preset", default="default", choices=["default", "easy", "dense", "coco"],
                   help="scene preset (default: default)")
    s.set_defaults(func=_cmd_data_synth)
    ip2p = data.add_parser("instances-to-panoptic", help="COCO instance annotations (polygons, RLE) -> COCO-panoptic "
                                                        "PNGs + JSON (larger objects first, smaller on top)")
    instances_inputs(ip2p, "its image folder (checked: every image there, at its annotated size)",
                     "output folder: panoptic.json and panoptic/")
    ip2p.add_argument("--class-agnostic", action="store_true", help="one category, 'object' (default: the JSON's)")
    ip2p.set_defaults(func=_cmd_data_instances_to_panoptic)
    isp = data.add_parser("instances-split", help="hold out images of a COCO instances set: OUT/train.json, "
                                                 "OUT/val.json and OUT/images (a link)")
    instances_inputs(isp, "its image folder", "output folder")
    isp.add_argument("--val", type=checks.positive, required=True, help="images held out for validation")
    isp.add_argument("--seed", type=checks.seed, default=0, help="which images are held out (default 0)")
    isp.set_defaults(func=_cmd_data_instances_split)
