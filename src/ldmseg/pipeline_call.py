"""The state of one `LDMSegPipeline` call that its steps share: the resolved settings, the images' sizes, the
sampler, the randomness, the step callback and the inpainting hints (so no helper takes a dozen arguments)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ldmseg.serving import ServingConfig


@dataclass
class PipelineCall:
    """What every step of one call reads: its settings, the images' sizes, the sampler, the randomness (one
    generator, or one per image), the step callback, and inpainting hints."""

    serving: ServingConfig
    sizes: list[tuple[int, int]]
    scheduler: Any
    generator: torch.Generator | list[torch.Generator] | None
    progress: bool = False
    on_step: Callable | None = None
    output_logits: bool = False
    hints: list | None = None

    def noise_generator(self) -> torch.Generator | list[torch.Generator] | None:
        """The generator(s) the initial noise is drawn with: one per image is repeated for its K samples, so an
        image's noise does not depend on the other images of the call."""
        if isinstance(self.generator, (list, tuple)):
            return repeat_each(list(self.generator), self.serving.ensemble_size)
        return self.generator

    def hint_rngs(self) -> list[np.random.Generator]:
        """Per image, the numpy generator that draws the model ids of its given segments."""
        if isinstance(self.generator, (list, tuple)):
            return [np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=g))) for g in self.generator]
        seed = int(torch.randint(0, 2**31, (1,), generator=self.generator)) if self.generator is not None else 0
        return [np.random.default_rng(seed)] * len(self.sizes)


def check_generators(generator: object, num_images: int) -> None:
    """One torch.Generator, one per image, or None; anything else is one line."""
    from ldmseg.errors import LDMSegError

    if isinstance(generator, (list, tuple)):
        if len(generator) != num_images or not all(isinstance(g, torch.Generator) for g in generator):
            raise LDMSegError(f"generator: give one torch.Generator, or a list of one per image ({num_images}), "
                              f"got a list of {len(generator)}")
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise LDMSegError(f"generator: expected a torch.Generator, got {type(generator).__name__}")


def check_memory(num_images: int, serving: ServingConfig) -> None:
    """The call's samples (images x ensemble) at the processing resolution must fit in this machine's memory: one
    line before anything is allocated (the CLI's check, `checks.fits_sampling`, with the API's names)."""
    from ldmseg import checks

    k, res = serving.ensemble_size, serving.processing_resolution
    checks.fits_memory(f"{num_images} image(s) x ensemble_size {k} at processing_resolution {res}", num_images * k,
                       res**2, checks.SAMPLING_BYTES_PER_PIXEL,
                       "lower processing_resolution or ensemble_size, or give fewer images per call")


def repeat_each(items: list, k: int) -> list:
    """Each item k times in a row: [a, b] -> [a, a, b, b] for k = 2."""
    return [item for item in items for _ in range(k)]
