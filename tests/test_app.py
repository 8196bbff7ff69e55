"""`ldmseg app`: the stroke-to-id mapping, and the page end to end in a real browser (Debian's
chromium driven by Playwright; the install steps are in .ci/run)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldmseg.commands.app import PALETTE, palette_rgb, strokes_to_partial
from ldmseg.data import formats
from ldmseg.errors import LDMSegError

CHROMIUM = "/usr/bin/chromium"


def test_strokes_map_to_palette_ids() -> None:
    layer = np.zeros((10, 12, 4), np.uint8)
    layer[2, 1:5] = [*palette_rgb()[0], 255]
    layer[7, 3:9] = [*(palette_rgb()[4] - 6), 200]  # anti-aliased: near colour 5, mostly opaque
    layer[5, 5] = [*palette_rgb()[2], 40]  # faint edge pixel: not painted
    partial = strokes_to_partial([layer], (10, 12))
    assert (partial[2, 1:5] == 1).all() and (partial[7, 3:9] == 5).all()
    assert partial[5, 5] == 0 and (partial != 0).sum() == 10
    assert len(PALETTE) == len(palette_rgb())
    with pytest.raises(LDMSegError, match="does not match"):
        strokes_to_partial([layer], (11, 12))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served():
    from ldmseg.commands.app import serve

    port = _free_port()
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    app = serve("demo", "127.0.0.1", port, steps=4, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()
    Image.MAX_IMAGE_PIXELS = limit  # serve() lowers Pillow's header limit for the app's process


def _result_bytes(page) -> bytes:
    src = page.locator("#result img").get_attribute("src")
    return page.request.get(src).body()


def _upload(page, image: Path, tries: int = 4) -> None:
    """Give the editor an image; a file chosen before its script is ready is dropped, so try again."""
    placeholder = page.locator("#editor").get_by_text("Upload an image")
    placeholder.wait_for(state="visible", timeout=60_000)
    page.wait_for_timeout(1500)  # the page is drawn before its components listen
    for _ in range(tries):
        page.locator("#editor input[type=file]").set_input_files([])
        page.locator("#editor input[type=file]").set_input_files(str(image))
        try:
            placeholder.wait_for(state="hidden", timeout=15_000)
            break
        except Exception:  # playwright's TimeoutError: choose the file again
            continue
    else:
        raise AssertionError(f"the editor never showed {image}")
    page.wait_for_timeout(2000)  # the editor hands its new value to the app just after drawing it


def _wait_for_status(page, text: str, timeout_ms: int = 180_000) -> None:
    page.wait_for_function(f"() => document.querySelector('#status textarea').value.includes({text!r})",
                           timeout=timeout_ms)


def _paint_stroke(page) -> None:
    """Brush a small loop that starts at the canvas centre: the editor centres the image but its zoom
    varies with the layout, and a stroke that starts off the image is dropped."""
    page.locator("#editor button[aria-label='Brush']").click()
    page.wait_for_timeout(500)
    box = page.locator("#editor canvas").last.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    dx, dy = box["width"] * 0.04, box["height"] * 0.04
    page.mouse.move(cx, cy)
    page.mouse.down()
    for x, y in ((cx + dx, cy), (cx + dx, cy + dy), (cx - dx, cy + dy), (cx - dx, cy - dy), (cx, cy - dy)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.wait_for_timeout(1500)  # the editor sends its layers to the app shortly after the stroke ends


def _paint_and_complete(page, tries: int = 3) -> None:
    """Paint a stroke and press Complete; on a slow machine the editor may not have sent the stroke
    yet (the app then answers 'paint at least one stroke'), so paint again and press again."""
    for attempt in range(tries):
        _paint_stroke(page)
        page.locator("#complete").click()
        try:
            _wait_for_status(page, "painted pixels", timeout_ms=90_000)
            return
        except Exception:  # playwright's TimeoutError
            if attempt == tries - 1:
                raise


@pytest.mark.slow
def test_browser_segment_paint_complete(served: str, synth_set: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served)
        _upload(page, synth_set / "images" / "000001.png")
        page.locator("#segment").click()
        _wait_for_status(page, "segments, seed 0")
        unhinted = _result_bytes(page)
        _paint_and_complete(page)
        hinted = _result_bytes(page)
        assert hinted and unhinted and hinted != unhinted
        files = page.locator("#files").inner_text().replace("\n", "")
        assert "panoptic.json" in files and "panoptic.png" in files, files
        page.locator("#complete").click()  # pressing again keeps the server alive and answering
        page.locator("#editor button[aria-label='Clear canvas']").click()
        page.locator("#segment").click()
        page.get_by_text("or pick an example) first").first.wait_for(timeout=30_000)  # error shown in the page
        browser.close()


def _segment_job(client, image: Path):
    from gradio_client import handle_file

    return client.submit({"background": handle_file(str(image)), "layers": [], "composite": None}, "instances",
                         api_name="/segment")


@pytest.mark.slow
def test_queue_holds_20_concurrent_requests_with_a_4096_upload(served: str, tmp_path: Path) -> None:
    """20 requests in flight at once, one of them a 4096^2 upload: every one is answered with its own result."""
    from gradio_client import Client

    from ldmseg.data.synthetic import SceneConfig, generate_scene

    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    formats.write_png(big, np.repeat(np.repeat((rng.random((256, 256, 3)) * 255).astype(np.uint8), 16, 0), 16, 1))
    small = []
    for i in range(19):
        small.append(tmp_path / f"scene_{i}.png")
        formats.write_png(small[-1], generate_scene([77, i], SceneConfig.preset("default", 96)).image)
    client = Client(served, verbose=False)
    jobs = [_segment_job(client, path) for path in small[:3] + [big] + small[3:]]
    results = [job.result(timeout=900) for job in jobs]
    assert len(results) == 20
    for (picture, files, status, *_), path in zip(results, small[:3] + [big] + small[3:], strict=True):
        assert "segments, seed 0" in status
        side = 4096 if path == big else 96
        assert np.asarray(Image.open(picture)).shape[:2] == (side, side)
        assert any(str(f).endswith("panoptic.json") for f in files)


@pytest.mark.slow
def test_upload_above_the_pixel_cap_is_refused_from_its_header(served: str, tmp_path: Path) -> None:
    """A 6000^2 PNG (a few hundred kB: flat colour) is refused before it is decoded; the server keeps answering."""
    from gradio_client import Client

    huge = tmp_path / "huge.png"
    Image.new("RGB", (6000, 6000), (40, 90, 160)).save(huge)
    client = Client(served, verbose=False)
    with pytest.raises(Exception, match="exceeds limit"):
        _segment_job(client, huge).result(timeout=300)
    path = tmp_path / "ok.png"
    Image.new("RGB", (64, 64), (40, 90, 160)).save(path)
    assert "segments, seed 0" in _segment_job(client, path).result(timeout=300)[2]


@pytest.mark.slow
def test_unreadable_uploads_get_one_plain_line_and_the_page_states_its_limits(served: str, tmp_path: Path) -> None:
    """A 0-byte or text upload is answered with one plain line naming the file (not Gradio's internals with the
    server's temporary path); the page says the upload limits before anything is uploaded."""
    import urllib.request

    from gradio_client import Client

    from ldmseg.commands.app import MAX_SIDE, MAX_UPLOAD_MB

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    client = Client(served, verbose=False)
    for name in ("empty.png", "notes.png"):
        with pytest.raises(Exception) as refused:
            _segment_job(client, tmp_path / name).result(timeout=120)
        message = str(refused.value)
        assert message.startswith("the upload is not an image that can be read") and name in message, message
        assert "/tmp" not in message and "preprocess" not in message and "\n" not in message
    with urllib.request.urlopen(served + "config", timeout=30) as answer:
        page = answer.read().decode()
    assert f"up to {MAX_UPLOAD_MB} MB and {MAX_SIDE} px per side" in page
    path = tmp_path / "ok.png"
    Image.new("RGB", (64, 64), (40, 90, 160)).save(path)
    assert "segments, seed 0" in _segment_job(client, path).result(timeout=300)[2]


@pytest.mark.parametrize("verbose", [False, True])
def test_the_command_prints_the_address_not_gradios_hints(verbose: bool, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    """`ldmseg app` prints where the page is, not Gradio's start-up lines (its `share=True` hint names a setting
    the command has no flag for); --verbose gives Gradio's own lines instead."""
    import gradio

    from ldmseg.commands.app import serve

    launched: dict = {}

    def launch(self, **kwargs):
        launched.update(kwargs)
        self.local_url = "http://127.0.0.1:7999/"

    monkeypatch.setattr(gradio.Blocks, "launch", launch)
    monkeypatch.setattr(gradio.Blocks, "block_thread", lambda self: launched.update(blocked=True))
    monkeypatch.setattr("signal.signal", lambda *args: None)  # serve(block=True) installs a SIGTERM handler
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # and lowers Pillow's limit
    serve("demo", "127.0.0.1", 7999, steps=1, block=True, verbose=verbose)
    assert launched["quiet"] is not verbose and launched["blocked"] and launched["prevent_thread_lock"]
    out = capsys.readouterr().out
    assert ("ldmseg app: open http://127.0.0.1:7999/" in out) is not verbose and "share=True" not in out


def test_page_errors_show_no_server_paths() -> None:
    from ldmseg.commands.app import public_message

    assert public_message("/tmp/ldmseg-app-x1/00000003/panoptic.png: corrupt") == "panoptic.png: corrupt"
    assert public_message("OSError: full: '/tmp/gradio/abc/image.png'") == "OSError: full: 'image.png'"
    assert public_message("C:\\Users\\x\\img.png: bad") == "img.png: bad"
    for kept in ("image is 5000x4000; at most 4096 px per side", "choose runs/x/model or 1/2 of it"):
        assert public_message(kept) == kept


def test_a_request_over_its_time_limit_is_stopped_cleanly() -> None:
    """The per-request limit stops a request between sampling steps with one message; the next request runs."""
    from ldmseg.commands.app import Segmenter

    segmenter = Segmenter("demo", steps=2, time_limit=1e-6)
    editor = {"background": np.full((40, 40, 3), 120, np.uint8), "layers": []}
    with pytest.raises(LDMSegError, match="stopped after 1e-06 s"):
        segmenter.run(editor, 0, False, "instances")
    segmenter.time_limit = 600
    assert "segments, seed 0" in segmenter.run(editor, 0, False, "instances")[2]


def test_requests_from_two_events_never_share_the_pipeline_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Segment and Complete are separate events: two requests at once must still run one after the other (the
    scheduler and the step callback are per-call state; overlapping calls made DPM-Solver index past its sigmas)."""
    import threading
    import time

    from ldmseg.commands.app import Segmenter

    segmenter = Segmenter("demo", steps=1)
    call, inside, overlaps = type(segmenter.pipe).__call__, [0], []

    def watched(pipe, *args, **kwargs):
        inside[0] += 1
        overlaps.append(inside[0] > 1)
        time.sleep(0.2)  # hold the pipeline long enough for the other thread to arrive
        try:
            return call(pipe, *args, **kwargs)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(type(segmenter.pipe), "__call__", watched)
    editor = {"background": np.full((40, 40, 3), 120, np.uint8), "layers": []}
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(segmenter.run(editor, 0, False, "instances")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 3 and len(overlaps) == 3 and not any(overlaps)
    assert len({files[0] for _, files, _ in results}) == 3  # each request its own result folder


@pytest.mark.slow
def test_sigterm_removes_the_apps_temporary_folders(tmp_path: Path) -> None:
    """`ldmseg app` stopped by SIGTERM (a service manager, `kill`) cleans up as Ctrl-C does: nothing of it is
    left in the temporary folder. What it printed is the page's address, not Gradio's hints."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import urllib.request

    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    proc = subprocess.Popen([sys.executable, "-m", "ldmseg.cli", "app", "--port", str(port), "--steps", "1",
                             "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        watchdog = threading.Timer(240, proc.kill)  # the app never started: the read below ends
        watchdog.start()
        first = proc.stdout.readline()  # printed once the server is up
        watchdog.cancel()
        assert f"ldmseg app: open http://127.0.0.1:{port}/" in first, first or proc.stderr.read()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30).close()
        assert [p.name for p in tmp_path.glob("ldmseg-*")]  # its folders exist while it runs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (143, -signal.SIGTERM, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(tmp_path.glob("ldmseg-*")), list(tmp_path.glob("ldmseg-*"))
    assert "share=True" not in first + proc.stdout.read()
