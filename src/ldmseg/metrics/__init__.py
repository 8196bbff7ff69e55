"""Evaluators in detectron2's reset / process / evaluate style: panoptic, semantic, depth."""
