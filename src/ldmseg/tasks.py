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
    """Everything ldmseg decides by task, in one place: what it samples, encodes, writes and scores.

    A trainable task (`parts == (name,)`) has a learnable embedding and a stage-1 AE: `target` is the dataset key
    its AE encodes, `kind` the AE's kind ('ids': a MaskAutoencoder over label ids, 'depth': a DepthAutoencoder),
    `component` the pipeline component (and saved folder) that holds it. A derived task samples its `parts` and
    merges them. `outputs`: the maps it returns and writes (the first one is drawn as the overlay); `inpaints`:
    it completes partial instance maps (Algorithm 3); `class_aware`: its panoptic segments carry the model's
    categories (else one 'object' category); `metric`: 'pq', 'miou' or 'rmse'; `primary`: the paper's own task,
    whose latent scale is the config's `scale_factor` (models saved before multi-task support)."""

    name: str
    parts: tuple[str, ...]
    outputs: tuple[str, ...]
    metric: str
    title: str
    target: str = ""
    kind: str = ""
    component: str = ""
    inpaints: bool = False
    class_aware: bool = False
    primary: bool = False

    @property
    def trainable(self) -> bool:
        return self.parts == (self.name,)

    @property
    def names_classes(self) -> bool:
        """Its outputs hold class ids of the model's categories (a semantic map, or class-aware panoptic)."""
        return "semantic" in self.outputs or self.class_aware


SPECS: dict[str, TaskSpec] = {s.name: s for s in (
    TaskSpec("instances", ("instances",), ("panoptic",), "pq", "class-agnostic panoptic", target="ids", kind="ids",
             component="mask_autoencoder", inpaints=True, primary=True),
    TaskSpec("semantic", ("semantic",), ("semantic",), "miou", "semantic", target="semantic", kind="ids",
             component="semantic_autoencoder"),
    TaskSpec("depth", ("depth",), ("depth",), "rmse", "relative depth", target="depth", kind="depth",
             component="depth_autoencoder"),
    TaskSpec("panoptic", ("instances", "semantic"), ("panoptic", "semantic"), "pq", "class-aware panoptic",
             inpaints=True, class_aware=True),
)}
TRAINABLE: dict[str, TaskSpec] = {n: s for n, s in SPECS.items() if s.trainable}
DERIVED: dict[str, tuple[str, ...]] = {n: s.parts for n, s in SPECS.items() if not s.trainable}
TASKS: tuple[str, ...] = (*TRAINABLE, *DERIVED)
PRIMARY: str = next(n for n, s in SPECS.items() if s.primary)


def task_spec(name: str) -> TaskSpec:
    """The spec of a task name; an unknown name is one line listing the tasks."""
    if name not in SPECS:
        raise LDMSegError(f"unknown task {name!r}; tasks are {', '.join(TASKS)}")
    return SPECS[name]


# Single-task models saved before multi-task support named their one token 'panoptic' (class-agnostic).
LEGACY_SINGLE_TOKEN = ("panoptic",)


def trained_task_names(tokens: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The trainable tasks of a model from its task-embedding names (legacy single-token models: instances)."""
    tokens = tuple(tokens)
    return (PRIMARY,) if tokens == LEGACY_SINGLE_TOKEN else tokens


def available_tasks(trained: tuple[str, ...]) -> tuple[str, ...]:
    """What a model with these trained tasks can be asked for: them, plus each derived task whose parts it has."""
    return tuple(t for t in TASKS if all(p in trained for p in SPECS[t].parts))


def check_task(task: str, trained: tuple[str, ...]) -> None:
    """One line naming the model's tasks when `task` is unknown or not one this model can do."""
    task_spec(task)
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
            hint = f" (it is {' + '.join(DERIVED[t])} merged: train those)" if t in DERIVED else ""
            raise LDMSegError(f"--tasks: {t!r} is not a trainable task{hint}; choose from {', '.join(TRAINABLE)}")
    if len(set(tasks)) != len(tasks):
        raise LDMSegError(f"--tasks: a task is named twice in {','.join(tasks)}")
    return tasks
