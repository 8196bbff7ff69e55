"""Data: COCO-panoptic / ADE20K formats, synthetic scenes, bit encoding, transforms, datasets."""
