"""The tasks one LDMSeg denoiser can be asked for (paper §3.2, "Task Embeddings"), named once.

- `instances`: class-agnostic panoptic ids (the paper's main setting; every segment category 1);
- `semantic`: a class id per pixel, as bit planes of the class id (no random reassignment);
- `depth`: relative depth in [0, 1];
- `panoptic`: class-aware panoptic, not a token of its own: `instances` and `semantic` merged
  (diffusion.merge).

Each trained task has a learnable embedding and a stage-1 autoencoder of its own; the names are
stored in every exported model's config. No torch import here: the CLI builds its choices from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldmseg.errors import LDMSegError


@dataclass(frozen=True)
class TaskSpec:
    """What a trainable task encodes: the batch key of its target, the kind of autoencoder and the pipeline
    component that holds it."""

    name: str
    target: str  # key of the dataset item the task's AE encodes
    kind: str  # 'ids' (a MaskAutoencoder over label ids) or 'depth' (a DepthAutoencoder)
    component: str  # LDMSegPipeline component (and folder of a saved pipeline)


TRAINABLE: dict[str, TaskSpec] = {
    "instances": TaskSpec("instances", "ids", "ids", "mask_autoencoder"),
    "semantic": TaskSpec("semantic", "semantic", "ids", "semantic_autoencoder"),
    "depth": TaskSpec("depth", "depth", "depth", "depth_autoencoder"),
}
DERIVED: dict[str, tuple[str, ...]] = {"panoptic": ("instances", "semantic")}
TASKS: tuple[str, ...] = (*TRAINABLE, *DERIVED)

# Single-task models saved before multi-task support named their one token 'panoptic' (class-agnostic).
LEGACY_SINGLE_TOKEN = ("panoptic",)


def trained_task_names(tokens: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The trainable tasks of a model from its task-embedding names (legacy single-token models: instances)."""
    tokens = tuple(tokens)
    return ("instances",) if tokens == LEGACY_SINGLE_TOKEN else tokens


def available_tasks(trained: tuple[str, ...]) -> tuple[str, ...]:
    """What a model with these trained tasks can be asked for: them, plus each derived task whose parts it has."""
    return tuple(t for t in TASKS if t in trained or all(p in trained for p in DERIVED.get(t, ("-",))))


def check_task(task: str, trained: tuple[str, ...]) -> None:
    """One line naming the model's tasks when `task` is unknown or not one this model can do."""
    if task not in TASKS:
        raise LDMSegError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    if task not in available_tasks(trained):
        has = ", ".join(available_tasks(trained))
        raise LDMSegError(f"this model was not trained for task {task!r}; it has: {has}")


def parse_tasks(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Training tasks from flags ('instances,semantic' or several words): known, trainable, no repeats."""
    tasks = tuple(n.strip() for name in names for n in name.split(",") if n.strip())
    if not tasks:
        raise LDMSegError("--tasks: give at least one task")
    for t in tasks:
        if t not in TRAINABLE:
            hint = " (it is instances + semantic merged: train those two)" if t in DERIVED else ""
            raise LDMSegError(f"--tasks: {t!r} is not a trainable task{hint}; choose from {', '.join(TRAINABLE)}")
    if len(set(tasks)) != len(tasks):
        raise LDMSegError(f"--tasks: a task is named twice in {','.join(tasks)}")
    return tasks
