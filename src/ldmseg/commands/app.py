"""`ldmseg app`: an interactive Gradio page for segmentation and brush-stroke mask inpainting.

Upload an image (or pick a bundled synthetic scene) and press Segment; paint rough strokes, each
palette colour one segment id, and press Complete for the inpainted panoptic map; Resample draws
another seed. Results download as a COCO-panoptic PNG + JSON. The page binds 127.0.0.1 unless told
otherwise, caps uploads, and reports bad input in the page instead of failing.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ldmseg.commands.predict import AGNOSTIC_CATEGORIES, model_domain
from ldmseg.data import formats
from ldmseg.errors import LDMSegError
from ldmseg.tasks import task_spec
from ldmseg.viz import (
    blend,
    class_colours,
    colorize_depth,
    colorize_semantic,
    overlay,
    with_depth_bar,
    with_legend,
)

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#9a6324", "#800000"]  # palette colour k paints segment id k + 1
MAX_SIDE = 4096
MAX_UPLOAD_MB = 20
MAX_UPLOAD = f"{MAX_UPLOAD_MB}mb"
KEEP_RESULTS = 32  # result folders kept on disk at a time
TIME_LIMIT = 120.0  # seconds one request may run (checked after every sampling step)


def palette_rgb() -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in PALETTE], np.int64)


def strokes_to_partial(layers: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Painted RGBA layers -> partial id map (0 = not painted): each opaque pixel takes the id of the
    nearest palette colour (strokes are anti-aliased at their edges); later layers paint over earlier."""
    partial = np.zeros(shape, np.int64)
    colours = palette_rgb()
    for layer in layers:
        if layer is None:
            continue
        layer = np.asarray(layer)
        if layer.shape[:2] != shape or layer.ndim != 3 or layer.shape[2] < 4:
            raise LDMSegError(f"stroke layer of shape {layer.shape} does not match the image ({shape[0]}x{shape[1]})")
        painted = layer[..., 3] >= 128
        rgb = layer[painted][:, :3].astype(np.int64)
        nearest = ((rgb[:, None, :] - colours[None]) ** 2).sum(-1).argmin(1)
        partial[painted] = nearest + 1
    return partial


class Segmenter:
    """The model side of the app: holds the pipeline, turns editor values into results on disk."""

    def __init__(self, model: str = "demo", steps: int | None = None, precision: str | None = None,
                 time_limit: float = TIME_LIMIT, device: str = "auto"):
        from ldmseg.commands.predict import serve

        self.pipe, self.serving = serve(model, device=device, num_inference_steps=steps, precision=precision)
        self.pipe.set_progress_bar_config(disable=True)
        self.time_limit = time_limit
        self.root = Path(tempfile.mkdtemp(prefix="ldmseg-app-"))  # every result below it, removed at exit
        atexit.register(shutil.rmtree, self.root, True)
        self._results = 0
        # One request at a time on the pipeline: its scheduler and step callback are per-call state, and two
        # events (Segment, Complete) running at once made DPM-Solver index past its sigmas.
        self._lock = threading.Lock()

    def result_folder(self) -> Path:
        """A fresh folder for one request's files; only the newest KEEP_RESULTS stay (downloads in flight)."""
        self._results += 1
        folder = self.root / f"{self._results:08d}"
        folder.mkdir()
        for old in sorted(self.root.iterdir())[:-KEEP_RESULTS]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def run(self, editor: dict | None, seed: int, use_strokes: bool, task: str | None = None
            ) -> tuple[np.ndarray, list[str], str]:
        """(picture, files to download, status line) for the editor's image (and strokes) and a task of the model
        (default: its own, ldmseg.tasks)."""
        import torch

        image = _background(editor)
        serving = self.serving.replace(task=task)
        spec = task_spec(serving.task)
        partial = strokes_to_partial(editor.get("layers") or [], image.shape[:2]) if use_strokes else None
        if use_strokes and not partial.any():
            raise LDMSegError("paint at least one stroke before pressing Complete")
        if use_strokes and not spec.inpaints:
            inpainting = " or ".join(t for t in self.pipe.tasks if task_spec(t).inpaints)
            raise LDMSegError(f"strokes complete segments: choose the task {inpainting}, not {spec.name}")
        with self._lock:
            out = self.pipe(image, generator=torch.Generator().manual_seed(int(seed)), partial_mask=partial,
                            serving=serving, callback_on_step_end=_stop_after(self.time_limit))
            folder = self.result_folder()
        return self.pictures(image, out, spec, folder, f"seed {int(seed)}", partial is not None)

    def pictures(self, image: np.ndarray, out, spec, folder: Path, seed_note: str, inpainted: bool
                 ) -> tuple[np.ndarray, list[str], str]:
        """(picture, files written to `folder`, status line) of one result, by what the task outputs."""
        main_output = spec.outputs[0]
        if main_output == "semantic":
            labels = out.semantic[0]
            formats.write_png(folder / "semantic.png", labels.astype(np.uint8))
            names = {c["id"]: c["name"] for c in self.pipe.categories}
            found = ", ".join(names.get(int(c), str(int(c))) for c in np.unique(labels))
            picture = blend(image, colorize_semantic(labels, self.pipe.categories))
            return (with_legend(picture, class_colours(labels, self.pipe.categories)), [str(folder / "semantic.png")],
                    f"classes: {found}; {seed_note}")
        if main_output == "depth":
            formats.write_depth_png(folder / "depth.png", out.depth[0])
            return (with_depth_bar(colorize_depth(out.depth[0])), [str(folder / "depth.png")],
                    f"relative depth (uint16 PNG = depth x 65535); {seed_note}")
        ids, segments = out.panoptic[0], out.segments_info[0]
        formats.write_panoptic_png(folder / "panoptic.png", ids)
        categories = self.pipe.categories if spec.class_aware else AGNOSTIC_CATEGORIES
        formats.write_json(folder / "panoptic.json", {
            "annotations": [{"image_id": 0, "file_name": "panoptic.png", "segments_info": segments}],
            "categories": categories})
        status = f"{len(segments)} segments, {seed_note}"
        if inpainted:
            status += f"; {100 * out.known_agreement[0]:.0f}% of painted pixels kept by the model itself"
        return overlay(image, ids), [str(folder / "panoptic.png"), str(folder / "panoptic.json")], status


def public_message(message: str) -> str:
    """An error message for the page: every absolute path cut to its file name (no server paths shown)."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:[\\/][^\s\\/:'\"]+)*[\\/]([^\s\\/:'\"]+)")


def _stop_after(seconds: float):
    """A pipeline step callback that stops the request once it has run `seconds`: one request cannot hold the
    queue (the ones behind it wait at most that long for it)."""
    deadline = time.monotonic() + seconds

    def check(pipe, step: int, timestep, kwargs: dict) -> dict:
        if time.monotonic() > deadline:
            raise LDMSegError(f"stopped after {seconds:g} s (the per-request limit); try a smaller image")
        return kwargs
    return check


def _background(editor: dict | None) -> np.ndarray:
    if not editor or editor.get("background") is None:
        raise LDMSegError("upload an image (or pick an example) first")
    image = np.asarray(editor["background"])
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 8:
        raise LDMSegError(f"not a usable image (shape {image.shape})")
    if max(image.shape[:2]) > MAX_SIDE:
        raise LDMSegError(f"image is {image.shape[1]}x{image.shape[0]}; at most {MAX_SIDE} px per side")
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def example_images(folder: Path, num: int = 3) -> list[str]:
    """A few held-out synthetic scenes to try the app without an image at hand."""
    from ldmseg.data.synthetic import SceneConfig, generate_scene

    paths = []
    for i in range(num):
        path = folder / f"example_{i}.png"
        formats.write_png(path, generate_scene([2024, i], SceneConfig.preset("default", 256)).image)
        paths.append(str(path))
    return paths


def build_app(segmenter: Segmenter, examples: list[str]):
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home unless the user asks for them
    import gradio as gr

    def handle(editor, seed, use_strokes, task):
        try:
            return segmenter.run(editor, seed, use_strokes, task)
        except LDMSegError as err:
            raise gr.Error(public_message(str(err))) from None
        except Exception as err:  # never take the server down on bad input; say what happened
            raise gr.Error(public_message(f"{type(err).__name__}: {err}")) from None

    def refuse_unreadable(preprocess):
        """The editor's preprocess, saying in one plain line (no server path) that an upload is no image it can
        read: Gradio reports a failed decode as its own internals with the upload's temporary path. (Wrapped on
        the instance: a subclass of a Gradio component makes Gradio write a .pyi file beside this module.)"""

        def checked(payload):
            try:
                return preprocess(payload)
            except gr.Error:
                raise
            except Exception as err:
                raise gr.Error(public_message(f"the upload is not an image that can be read ({type(err).__name__}: "
                                              f"{err})")) from None
        return checked

    with gr.Blocks(title="LDMSeg") as app:
        gr.Markdown("# LDMSeg: segmentation and mask inpainting by latent diffusion\n"
                    "Upload an image and press **Segment**. To guide it, paint rough strokes (one palette colour "
                    "per segment; eraser and undo in the toolbar) and press **Complete**. "
                    f"Uploads: PNG, JPEG or WebP images up to {MAX_UPLOAD_MB} MB and {MAX_SIDE} px per side.",
                    elem_id="intro")
        gr.Markdown(f"**This model:** {model_domain(segmenter.pipe)}", elem_id="domain")
        seed = gr.State(0)
        used_strokes = gr.State(False)
        with gr.Row():
            editor = gr.ImageEditor(label="image and strokes", type="numpy", image_mode="RGBA",
                                    brush=gr.Brush(colors=PALETTE, color_mode="fixed", default_size=12),
                                    eraser=gr.Eraser(), sources=("upload", "clipboard"), layers=False,
                                    transforms=(), elem_id="editor")
            editor.preprocess = refuse_unreadable(editor.preprocess)
            result = gr.Image(label="prediction", type="numpy", interactive=False, elem_id="result")
        with gr.Row():
            segment_btn = gr.Button("Segment", variant="primary", elem_id="segment")
            complete_btn = gr.Button("Complete", elem_id="complete")
            resample_btn = gr.Button("Resample", elem_id="resample")
        tasks = list(segmenter.pipe.tasks)
        task = gr.Dropdown(choices=tasks, value=segmenter.pipe.default_task(), label="task", elem_id="task",
                           visible=len(tasks) > 1)
        status = gr.Textbox(label="status", interactive=False, elem_id="status")
        files = gr.File(label="download (COCO-panoptic PNG + JSON)", file_count="multiple", elem_id="files")
        if examples:
            gr.Examples(examples=[[p] for p in examples], inputs=[editor], label="synthetic examples")

        def first(editor, strokes, task):
            return (*handle(editor, 0, strokes, task), 0, strokes)

        def again(editor, seed, strokes, task):
            return (*handle(editor, seed + 1, strokes, task), seed + 1, strokes)

        outputs = [result, files, status, seed, used_strokes]
        one_queue = {"concurrency_id": "pipeline", "concurrency_limit": 1}  # the three events share one worker
        segment_btn.click(lambda e, t: first(e, False, t), [editor, task], outputs, api_name="segment", **one_queue)
        complete_btn.click(lambda e, t: first(e, True, t), [editor, task], outputs, api_name="complete", **one_queue)
        resample_btn.click(again, [editor, seed, used_strokes, task], outputs, api_name="resample", **one_queue)
    return app


def serve(model: str = "demo", host: str = "127.0.0.1", port: int = 7860, steps: int | None = None,
          block: bool = True, precision: str | None = None, time_limit: float = TIME_LIMIT, verbose: bool = False,
          device: str = "auto"):
    """Start the app; returns the Blocks (with block=False the server runs in a background thread). Gradio's own
    start-up lines (among them a `share=True` hint the command has no flag for) only with `verbose`; otherwise
    the command prints the page's address alone.

    Requests wait in one first-come queue and run one at a time (the model uses every core); each costs about
    the same whatever the upload's size, since the model works at its processing resolution. Uploads above
    MAX_SIDE^2 pixels are refused from the image header, before Gradio decodes them."""
    Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE // 2  # Pillow refuses above twice this, when it reads the header
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    if block:  # the command: SIGTERM ends it like Ctrl-C, so the temporary folders are removed (atexit) either way
        import signal
        import sys

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    segmenter = Segmenter(model, steps, precision, time_limit, device)
    folder = Path(tempfile.mkdtemp(prefix="ldmseg-examples-"))
    atexit.register(shutil.rmtree, folder, True)
    examples = example_images(folder)
    app = build_app(segmenter, examples)
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, prevent_thread_lock=True,
               show_error=True, quiet=not verbose, allowed_paths=[str(Path(examples[0]).parent)])
    if block:
        if not verbose:
            print(f"ldmseg app: open {app.local_url} in a browser (Ctrl-C stops it)", flush=True)
        app.block_thread()
    return app
