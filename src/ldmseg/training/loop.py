"""The one training loop both stages share: accelerate (DDP / mixed precision / accumulation),
AdamW + warmup schedule, EMA, TensorBoard, safetensors checkpoints and exact resume.

A stage plugs in as a `Task`: the trainable module, the training dataset, a loss function,
validation and export. Exact resume rests on three things: the data a step sees is a pure
function of (seed, step, rank), the torch RNG state is checkpointed per process, and
validation runs inside `torch.random.fork_rng` so it never shifts the training RNG.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ldmseg.errors import LDMSegError
from ldmseg.models.layers import attention_kernels
from ldmseg.training import checkpoint
from ldmseg.training.config import LoopConfig
from ldmseg.training.validation import LogImage


class Task(Protocol):
    model: torch.nn.Module
    train_dataset: Dataset

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]: ...

    def validate(self, model: torch.nn.Module, step: int, log_image: LogImage) -> dict[str, float]: ...

    def save_model(self, model: torch.nn.Module, directory: Path) -> None: ...


class StepBatchSampler(Sampler):
    """Yields micro-batches of (item index, sample seed) keys from micro-batch `start` on.

    Global sample number g = (micro * world + rank) * batch + b; a finite dataset is walked in a
    fresh seeded permutation per epoch, an unbounded one (synthetic) uses g itself.
    """

    def __init__(self, length: int | None, batch_size: int, seed: int, start: int, rank: int, world: int):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.start, self.rank, self.world = start, rank, world
        self._perm: tuple[int, np.ndarray] | None = None

    def _index(self, g: int) -> int:
        if self.length is None:
            return g
        epoch, pos = divmod(g, self.length)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.length))
        return int(self._perm[1][pos])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        micro = self.start
        while True:
            first = (micro * self.world + self.rank) * self.batch_size
            yield [(self._index(g), g) for g in range(first, first + self.batch_size)]
            micro += 1

    def __len__(self) -> int:
        return 2**62


def _dataset_length(ds: Dataset) -> int | None:
    n = len(ds)
    return None if n >= 2**62 else n


def _save(out: Path, step: int, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any,
          scheduler: Any, ema: EMAModel | None, cfg: LoopConfig) -> None:
    root = out / "checkpoints"
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    rank_dir = root / f"step_{step:08d}.rng"
    rank_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.save_tree(rank_dir, f"rng_{accelerator.process_index}", rng)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        parts: dict[str, Any] = {
            "model": accelerator.unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": {"step": step, "scheduler": scheduler.scheduler.state_dict(),
                      "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None},
        }
        if ema is not None:
            parts["ema"] = ema.state_dict()
        checkpoint.write_checkpoint(root / f"step_{step:08d}", parts, sorted(rank_dir.iterdir()))
        rank_dir.rmdir()
        checkpoint.prune_checkpoints(root, cfg.checkpoints_total_limit)
    accelerator.wait_for_everyone()


def _read(path: Path, process: int, run: checkpoint.RunShape) -> dict[str, Any]:
    """Every part of a checkpoint, read and checked against the run (`checkpoint.check_parts`) before anything is
    applied."""
    parts = {name: checkpoint.load_tree(path, name) for name in ("model", "optimizer", "state")}
    if run.ema_params is not None:
        parts["ema"] = checkpoint.load_tree(path, "ema")
    if not (path / f"rng_{process}.safetensors").exists():
        raise LDMSegError(f"{path}: no RNG state for process {process} (was it written by a run with another "
                          "number of processes?)")
    parts["rng"] = checkpoint.load_tree(path, f"rng_{process}")
    checkpoint.check_parts(path, parts, run)
    return parts


def _run_shape(model: torch.nn.Module, optimizer: Any, scheduler: Any, ema: EMAModel | None
               ) -> checkpoint.RunShape:
    """What this run's checkpoints hold (`checkpoint.RunShape`), from the live model, optimizer, schedule and EMA."""
    return checkpoint.RunShape(model={k: tuple(v.shape) for k, v in model.state_dict().items()},
                               groups=[len(g["params"]) for g in optimizer.param_groups],
                               scheduler_keys=frozenset(scheduler.state_dict()),
                               ema_params=len(ema.shadow_params) if ema is not None else None)


def _load(candidates: list[Path], accelerator: Accelerator, model: torch.nn.Module, optimizer: Any,
          scheduler: Any, ema: EMAModel | None) -> tuple[int, Path | None]:
    """Restore the first readable checkpoint of `candidates` (newest first): a corrupt or partial one is skipped
    with a warning. Returns (step, the checkpoint used)."""
    run = _run_shape(accelerator.unwrap_model(model), optimizer, scheduler.scheduler, ema)
    for k, path in enumerate(candidates):
        try:
            parts = _read(path, accelerator.process_index, run)
        except LDMSegError as e:
            if k == len(candidates) - 1:
                raise
            warnings.warn(f"{e}; falling back to the previous checkpoint {candidates[k + 1].name}", stacklevel=2)
            continue
        accelerator.unwrap_model(model).load_state_dict(parts["model"])
        optimizer.load_state_dict(parts["optimizer"])
        _match_layouts(optimizer)
        scheduler.scheduler.load_state_dict(parts["state"]["scheduler"])
        if accelerator.scaler is not None and parts["state"].get("scaler"):
            accelerator.scaler.load_state_dict(parts["state"]["scaler"])
        if ema is not None:
            ema.load_state_dict(parts["ema"])
        torch.set_rng_state(parts["rng"]["torch"])
        if "cuda" in parts["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(parts["rng"]["cuda"])
        return int(parts["state"]["step"]), path
    return 0, None


def _match_layouts(optimizer: Any) -> None:
    """Give each loaded optimizer state tensor its parameter's memory layout (checkpoints store them contiguous;
    with channels_last parameters the fused AdamW kernel's results depend on the layout: resume would not be
    bit-exact)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def _out_of_time(deadline: float, accelerator: Accelerator) -> bool:
    """Whether any process passed the deadline (all processes agree, so they stop at the same step)."""
    if deadline == math.inf:
        return False
    late = time.monotonic() > deadline
    if accelerator.num_processes == 1:
        return late
    return bool(accelerator.gather(torch.tensor([float(late)], device=accelerator.device)).max().item() > 0)


def _scalar_config(cfg: LoopConfig) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in dataclasses.asdict(cfg).items()}


def train(cfg: LoopConfig, make_task: Callable[[LoopConfig], Task]) -> Path:
    """Run (or resume) training; returns the directory of the final exported model. A new run that fails (or is
    interrupted) before its first checkpoint leaves no directory behind."""
    out = Path(cfg.out)
    fresh = not out.exists()
    try:
        return _train(cfg, make_task, out)
    except BaseException:
        if fresh and int(os.environ.get("RANK", "0")) == 0 and not any(out.glob("checkpoints/step_*")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def _train(cfg: LoopConfig, make_task: Callable[[LoopConfig], Task], out: Path) -> Path:
    # Launched as several processes on a machine without CUDA: run them as gloo DDP on the CPU.
    cpu_ddp = not torch.cuda.is_available() and "LOCAL_RANK" in os.environ
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                              log_with="tensorboard", project_dir=str(out), cpu=cpu_ddp)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if torch.cuda.is_available():  # TF32 matmuls/convs: ~2x on Ampere+ at no measurable cost for these models
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    set_seed(cfg.seed)
    task = make_task(cfg)
    # explicit either way: a model taken from a served pipeline (--init-from) arrives in channels_last
    task.model.to(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    params = [p for p in task.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)  # 4x faster step
    world = accelerator.num_processes
    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=cfg.warmup_steps * world,
                              num_training_steps=cfg.max_steps * world)
    model, optimizer, scheduler = accelerator.prepare(task.model, optimizer, scheduler)
    # after prepare: on the device; foreach: one kernel per step instead of one per tensor
    ema = EMAModel(params, decay=cfg.ema_decay, foreach=True) if cfg.ema_decay > 0 else None

    if accelerator.is_main_process:
        checkpoint.remove_leftovers(out / "checkpoints")
    accelerator.wait_for_everyone()
    candidates = checkpoint.resume_candidates(cfg.resume, out / "checkpoints")
    if world > 1:
        accelerator.print(f"ddp processes: {world} ({accelerator.distributed_type})")
    step, resume_from = _load(candidates, accelerator, model, optimizer, scheduler, ema)
    if resume_from is not None:
        accelerator.print(f"resumed from {resume_from} at step {step}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
    accelerator.init_trackers("tensorboard", config=_scalar_config(cfg))
    writer = accelerator.get_tracker("tensorboard", unwrap=True) if accelerator.is_main_process else None

    def log_image(tag: str, image: np.ndarray, at: int) -> None:
        if writer is not None:
            writer.add_image(tag, image, at, dataformats="HWC")

    def validate(at: int) -> None:
        if not accelerator.is_main_process:
            return
        if ema is not None:
            ema.store(params)
            ema.copy_to(params)
        model.eval()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            metrics = task.validate(accelerator.unwrap_model(model), at, log_image)
        model.train()
        if ema is not None:
            ema.restore(params)
        if metrics:
            accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=at)
            tqdm.write(f"step {at}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))

    sampler = StepBatchSampler(_dataset_length(task.train_dataset), cfg.batch_size, cfg.seed,
                               step * cfg.grad_accum, accelerator.process_index, world)
    loader = DataLoader(task.train_dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=cfg.num_workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    deadline = time.monotonic() + 60 * cfg.time_limit_minutes if cfg.time_limit_minutes > 0 else math.inf
    progress = tqdm(total=cfg.max_steps, initial=step, disable=not accelerator.is_main_process,
                    desc="training", unit="step", dynamic_ncols=True)
    model.train()
    running: dict[str, float] = {}
    batches = iter(loader)
    while step < cfg.max_steps:
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in next(batches).items()}
        with accelerator.accumulate(model):
            with accelerator.autocast(), attention_kernels(accelerator.device):
                loss, logs = task.loss(model, batch)
            if not math.isfinite(loss.item()):
                raise LDMSegError(f"{out}: loss became {loss.item()} at step {step + 1}; lower --lr, enable "
                                  "--grad-clip, or check the data (the last checkpoint is intact)")
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        for k, v in {"loss": loss.item(), **logs}.items():
            running[k] = running.get(k, 0.0) + v / cfg.grad_accum
        if not accelerator.sync_gradients:
            continue
        step += 1
        if ema is not None:
            ema.step(params)
        progress.update(1)
        progress.set_postfix(loss=f"{running['loss']:.4f}")
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            accelerator.log({f"train/{k}": v for k, v in running.items()} | {"lr": scheduler.get_last_lr()[0]},
                            step=step)
        running = {}
        last = step == cfg.max_steps or _out_of_time(deadline, accelerator)
        if step % cfg.checkpoint_every == 0 or last:
            _save(out, step, accelerator, model, optimizer, scheduler, ema, cfg)
        if cfg.val_every and (step % cfg.val_every == 0 or last):
            validate(step)
        if last and step < cfg.max_steps:
            accelerator.print(f"time limit of {cfg.time_limit_minutes} min reached at step {step}; "
                              "continue with --resume latest")
            break
    progress.close()
    final = out / "model"
    if accelerator.is_main_process:
        if ema is not None:
            ema.copy_to(params)
        staging = out / "model.tmp"  # the export appears whole or not at all
        shutil.rmtree(staging, ignore_errors=True)
        task.save_model(accelerator.unwrap_model(model), staging)
        checkpoint.replace_directory(staging, final)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final

