"""Targets from a teacher for one-step distillation: each training image's target maps are the teacher pipeline's
served predictions (its own steps, sampler and ensemble consensus), so unlabelled images train a one-step model.
This is how a user with the paper's weights distils it on COCO images alone (no panoptic labels needed)."""

from __future__ import annotations

import torch

from ldmseg.tasks import TRAINABLE


class TeacherTargets:
    """Replaces a batch's target maps by the teacher's predictions, task by task (each example its task's map),
    served at the teacher's own settings but at the training images' size (they come resized to it). The teacher
    runs frozen under no_grad with the global torch RNG, which the training loop checkpoints: a resumed run draws
    the same teacher samples."""

    def __init__(self, teacher, model_tasks: tuple[str, ...], resolution: int):
        self.teacher, self.model_tasks = teacher, model_tasks
        self.serving = teacher.serving_config(processing_resolution=resolution)  # the training images' own size
        for module in teacher.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False).eval()
        teacher.set_progress_bar_config(disable=True)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, task_ids = batch["image"], batch["task"]
        self.teacher.to(images.device)
        out = dict(batch)
        for k, task in enumerate(self.model_tasks):
            sel = (task_ids == k).nonzero().flatten()
            if len(sel) == 0:
                continue
            spec = TRAINABLE[task]
            result = self.teacher([images[i].float().cpu() for i in sel.tolist()], serving=self.serving, task=task)
            maps = torch.stack([torch.as_tensor(m) for m in result[spec.outputs[0]]]).to(images.device)
            target = out.get(spec.target)
            if target is None:
                dtype = torch.float32 if spec.kind == "depth" else torch.long
                target = torch.zeros(images.shape[:1] + images.shape[2:], dtype=dtype, device=images.device)
            target = target.clone()
            target[sel] = maps.to(target.dtype)
            out[spec.target] = target
        return out
