"""The shared runner under faults: bad inputs, interrupted and concurrent runs, failed writes, limits.

Each test here pins one fault found by a bad-input/fault/load run of detect, classify and edit.
They run through ``detect`` (no model: fast) unless the fault is specific to another command;
every command shares the runner, so the behaviour is the same for each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceflex.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def names(document: dict, status: str | None = None) -> list[str]:
    return [Path(r["file"]).name for r in document["inputs"] if status is None or r["status"] == status]


@pytest.fixture
def wall(tmp_path) -> Path:
    path = tmp_path / "wall.png"
    Image.fromarray(np.full((90, 120, 3), 120, np.uint8)).save(path)
    return path


# -- inputs that used to hang, crash or stop the batch -------------------------------------------
def test_a_fifo_among_the_inputs_fails_alone_instead_of_hanging(tmp_path, demo_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = run("detect", str(fifo), str(demo_path))  # would block forever on open()
    assert result.exit_code == 1
    assert "pipe.jpg: not a regular file (a named pipe (FIFO))" in result.stderr
    assert names(json.loads(result.stdout), "ok") == ["grace_hopper.jpg"]


def test_a_symlink_loop_named_on_the_command_line_is_one_line(tmp_path, demo_path):
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    result = run("detect", str(tmp_path / "loop.jpg"), str(demo_path))
    assert result.exit_code == 1 and "loop.jpg: symbolic link loop" in result.stderr
    assert "Traceback" not in result.output and names(json.loads(result.stdout), "ok") == ["grace_hopper.jpg"]


def test_an_unreadable_file_named_on_the_command_line_fails_alone(tmp_path, demo_path, monkeypatch):
    import faceflex.io.images

    secret = tmp_path / "secret.jpg"
    shutil.copy(demo_path, secret)
    # what a user without read permission meets (root reads everything, so it is simulated):
    # the access check says no, and opening fails
    real_access, real_open = os.access, faceflex.io.images.Image.open
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(secret) else real_access(p, mode, **kw))

    def deny(path, *args, **kwargs):
        if str(path) == str(secret):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(faceflex.io.images.Image, "open", deny)
    result = run("detect", str(secret), str(demo_path))
    assert result.exit_code == 1, result.output  # a per-file error, not a usage error (2)
    assert "secret.jpg: cannot read: permission denied" in result.stderr


def test_multi_frame_images_say_that_only_the_first_frame_is_used(tmp_path, demo_rgb):
    frames = [Image.fromarray(np.roll(demo_rgb, 20 * i, axis=1)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = run("detect", str(tmp_path / "anim.gif"))
    assert result.exit_code == 0
    assert "anim.gif: note: 3 frames in this file; only the first is used" in result.stderr
    assert json.loads(result.stdout)["inputs"][0]["note"] == "3 frames in this file; only the first is used"


def test_pillow_bomb_guard_does_not_undercut_the_documented_limit(tmp_path, monkeypatch, wall):
    from PIL import Image as PILImage

    from faceflex.io.images import load_image

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # Pillow's own guard far below input.max_pixels
    assert load_image(wall).size == (120, 90)
    assert PILImage.MAX_IMAGE_PIXELS == 1000  # restored
    config = tmp_path / "c.yaml"
    config.write_text("input:\n  max_pixels: 5000\n")
    result = run("--config", str(config), "detect", str(wall))
    assert result.exit_code == 1 and "image too large (120x90 = 0 MP, limit input.max_pixels = 0 MP)" in result.stderr


def test_very_long_file_names_get_shortened_outputs(tmp_path, demo_path):
    long_name = "a" * 211 + "é" * 20 + ".jpg"  # 255 bytes, the most a file system allows
    shutil.copy(demo_path, tmp_path / long_name)
    out = tmp_path / "out"
    result = run("detect", str(tmp_path / long_name), "-o", str(out), "--plot-landmarks")
    assert result.exit_code == 0, result.output
    (picture,) = out.glob("*.landmarks.png")
    assert len(os.fsencode(picture.name)) <= 255 and picture.name.startswith("a" * 100) and "~" in picture.name


def test_out_dir_equal_to_the_input_folder_is_refused(tmp_path, demo_path):
    shutil.copy(demo_path, tmp_path / "x.jpg")
    result = run("detect", str(tmp_path), "-o", str(tmp_path), "--plot-landmarks")
    assert result.exit_code == 2 and "the next run would read these outputs as photos" in result.stderr
    assert not (tmp_path / "x.landmarks.png").exists()


# -- writing the manifest ------------------------------------------------------------------------
def test_a_manifest_that_cannot_be_written_is_a_usage_error_before_any_work(tmp_path, demo_path):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file")
    result = run("detect", str(demo_path), "--manifest", str(blocker / "d.json"))
    assert result.exit_code == 2 and "cannot write here (not a folder)" in result.stderr
    same = run("detect", str(demo_path), "--manifest", str(demo_path))
    assert same.exit_code == 2 and "would overwrite an input file" in same.stderr


def test_read_only_output_folder_is_one_line_exit_2(tmp_path, demo_path, monkeypatch):
    import faceflex.pipeline.manifest as manifest

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(manifest, "open", refuse, raising=False)
    result = run("detect", str(demo_path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2 and "cannot write the manifest here (permission denied)" in result.stderr
    assert not list((tmp_path / "out").glob("*.json*"))


def test_a_full_disk_at_the_final_write_keeps_the_records(tmp_path, demo_path, monkeypatch):
    import faceflex.pipeline.manifest as manifest

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest, "write_atomic", full)
    out = tmp_path / "out"
    result = run("detect", str(demo_path), "-o", str(out))
    assert result.exit_code == 1 and "no space left on device" in result.stderr and "the records are in" in result.stderr
    journal = [json.loads(line) for line in (out / "detect.json.partial").read_text().splitlines()]
    assert journal[0]["command"] == "detect" and journal[1]["status"] == "ok"


def test_csv_with_a_file_name_that_is_not_utf8(tmp_path, demo_path):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg"))
    shutil.copy(demo_path, odd)
    target = tmp_path / "faces.csv"
    result = run("detect", str(odd), "--format", "csv", "--manifest", str(target))
    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert b"caf\xe9.jpg" in data  # the name's own bytes
    as_json = run("detect", str(odd))
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["inputs"][0]["file"] == str(odd)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_every_format_describes_every_input(tmp_path, demo_path, wall, fmt):
    target = tmp_path / f"m.{fmt}"
    result = run("detect", str(demo_path), str(wall), str(tmp_path / "gone.jpg"), "--format", fmt, "--manifest", str(target))
    assert result.exit_code == 1
    text = target.read_text()
    if fmt == "json":
        document = json.loads(text)
        assert names(document) == ["gone.jpg", "grace_hopper.jpg", "wall.png"] and document["complete"] is True
    elif fmt == "jsonl":
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["schema"] == 1 and [Path(r["file"]).name for r in lines[1:-1]] == ["gone.jpg", "grace_hopper.jpg", "wall.png"]
        assert lines[-1]["summary"]["failed"] == 1 and lines[-1]["complete"] is True
    else:
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(text)))
        assert [(Path(r["file"]).name, r["status"]) for r in rows] == [
            ("gone.jpg", "failed"),
            ("grace_hopper.jpg", "ok"),
            ("wall.png", "ok"),
        ]
        assert rows[1]["index"] == "0" and rows[2]["face_count"] == "0"
    assert not Path(f"{target}.partial").exists()


# -- interrupted, resumed and concurrent runs ----------------------------------------------------
def _folder_of_copies(tmp_path: Path, demo_path: Path, count: int) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(count):
        shutil.copy(demo_path, folder / f"p{i:02d}.jpg")
    return folder


def _start(args: list[str]) -> subprocess.Popen:
    code = "import sys; from faceflex.cli import main; sys.argv = ['faceflex'] + sys.argv[1:]; main()"

    def default_sigint() -> None:  # a background job (as CI may run us) inherits SIGINT ignored; a terminal's Ctrl-C is not
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )


def _wait_for_journal(journal: Path, records: int, proc: subprocess.Popen, limit: float = 60) -> None:
    start = time.time()
    while time.time() - start < limit:
        if journal.is_file() and len(journal.read_text().splitlines()) > records:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no progress in the journal")


@pytest.mark.parametrize(
    "signum, name, workers",
    [(signal.SIGTERM, "SIGTERM", 1), (signal.SIGINT, "SIGINT", 1), (signal.SIGTERM, "SIGTERM", 2), (signal.SIGINT, "SIGINT", 2)],
)
def test_sigterm_and_ctrl_c_finish_the_manifest_and_leave_no_partial_files(tmp_path, demo_path, signum, name, workers):
    folder = _folder_of_copies(tmp_path, demo_path, 30)
    out = tmp_path / "out"
    proc = _start(["detect", str(folder), "-o", str(out), "--plot-landmarks", "--workers", str(workers)])
    _wait_for_journal(out / "detect.json.partial", 3, proc)
    proc.send_signal(signum)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    document = json.loads((out / "detect.json").read_text())
    assert document["complete"] is False and document["interrupted"] == name
    done = names(document, "ok")
    assert 3 <= len(done) < 30
    assert sorted(p.name for p in out.glob("*.landmarks.png")) == sorted(n.replace(".jpg", ".landmarks.png") for n in done)
    assert not list(out.glob(".faceflex-*")) and not (out / "detect.json.partial").exists()


def test_kill_9_leaves_a_journal_that_skip_existing_resumes(tmp_path, demo_path):
    folder = _folder_of_copies(tmp_path, demo_path, 30)
    out = tmp_path / "out"
    proc = _start(["detect", str(folder), "-o", str(out), "--plot-landmarks", "--workers", "2"])
    _wait_for_journal(out / "detect.json.partial", 4, proc)
    proc.kill()
    proc.communicate(timeout=60)  # returns only when no worker outlives the batch (they hold its pipes)
    journal = [json.loads(line) for line in (out / "detect.json.partial").read_text().splitlines()]
    finished = [Path(r["file"]).name for r in journal[1:] if r.get("status") == "ok"]
    assert journal[0]["command"] == "detect" and len(finished) >= 3  # the interrupted run is describable
    (out / ".faceflex-0123456789ab.tmp").write_bytes(b"half a png")  # as kill -9 mid-write leaves
    resumed = run("detect", str(folder), "-o", str(out), "--plot-landmarks", "--skip-existing")
    assert resumed.exit_code == 0, resumed.output
    document = json.loads((out / "detect.json").read_text())
    assert document["summary"]["skipped"] >= len(finished) - 1 and document["summary"]["inputs"] == 30
    assert sorted(names(document)) == sorted(f"p{i:02d}.jpg" for i in range(30))
    assert len(list(out.glob("*.landmarks.png"))) == 30 and not list(out.glob(".faceflex-*.tmp"))


def test_skip_existing_skips_finished_inputs(tmp_path, demo_path, wall):
    out = tmp_path / "out"
    first = run("detect", str(demo_path), str(wall), "-o", str(out), "--plot-landmarks")
    assert first.exit_code == 0
    picture = out / "grace_hopper.landmarks.png"
    stamp = picture.stat().st_mtime_ns
    second = run("detect", str(demo_path), str(wall), "-o", str(out), "--plot-landmarks", "--skip-existing")
    document = json.loads((out / "detect.json").read_text())
    assert second.exit_code == 0 and document["summary"]["skipped"] == 2 and picture.stat().st_mtime_ns == stamp
    picture.unlink()  # an output gone: that input is done again
    third = run("detect", str(demo_path), str(wall), "-o", str(out), "--plot-landmarks", "--skip-existing")
    assert third.exit_code == 0 and json.loads((out / "detect.json").read_text())["summary"]["skipped"] == 1 and picture.is_file()
    assert run("detect", str(demo_path), "--skip-existing").exit_code == 2  # stdout manifest: nothing to resume from


def test_two_runs_into_one_folder_cannot_overlap(tmp_path, demo_path):
    from faceflex.io.files import FolderLock

    out = tmp_path / "out"
    with FolderLock(out):  # another faceflex run is writing here
        result = run("detect", str(demo_path), "-o", str(out))
    assert result.exit_code == 2 and f"pid {os.getpid()}" in result.stderr and "is writing into this folder" in result.stderr
    assert run("detect", str(demo_path), "-o", str(out)).exit_code == 0  # free again


# -- models, devices and weight files --------------------------------------------------------------
def test_device_cuda_without_a_gpu_is_one_line_exit_2(demo_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for command in (["classify"], ["edit"], ["evaluate", "vae", "--limit", "1"]):
        result = run("--device", "cuda", *command)
        assert result.exit_code == 2 and "--device cuda was asked for" in result.stderr and "Traceback" not in result.output


def test_weight_files_that_hold_code_are_refused_in_one_line(tmp_path):
    import torch

    class Payload:
        def __reduce__(self):
            return (print, ("ran code",))

    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "state_dict": {}, "x": Payload()}, evil)
    result = run("edit", "--weights", str(evil))
    assert result.exit_code == 2 and "refused: it holds Python objects other than tensors" in result.stderr
    assert "weights_only" not in result.output and "ran code" not in result.output
    (tmp_path / "text.pt").write_text("not a weight file")
    assert "not a faceflex weight file" in run("edit", "--weights", str(tmp_path / "text.pt")).stderr


def test_vectors_of_the_wrong_kind_or_for_other_weights_are_one_line(tmp_path, demo_path):
    (tmp_path / "v.npz").write_text("not numpy")
    result = run("edit", "--vectors", str(tmp_path / "v.npz"))
    assert result.exit_code == 2 and "not an attribute-vector file" in result.stderr
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    assert "not an attribute-vector file" in run("edit", "--vectors", str(tmp_path / "other.npz")).stderr
    from faceflex.inference.attribute_vectors import load_vectors

    shipped = load_vectors()
    mismatched = type(shipped)(shipped.names, shipped.vectors, shipped.samples, {**shipped.meta, "vae_fingerprint": "0" * 16}).save(
        tmp_path / "m.npz"
    )
    result = run("edit", "--vectors", str(mismatched), str(demo_path))
    assert result.exit_code == 2 and "were made for VAE weights 0000000000000000" in result.stderr


def test_the_shipped_vectors_belong_to_the_shipped_vae():
    from faceflex.inference.attribute_vectors import load_vectors
    from faceflex.models.weights import fingerprint
    from faceflex.shipped import shipped

    assert load_vectors().vae_fingerprint == fingerprint(shipped("vae.pt"))


# -- edit limits -----------------------------------------------------------------------------------
def test_huge_strengths_are_refused(demo_path):
    result = run("edit", "--range", "0", "1e30", "1e29", str(demo_path))
    assert result.exit_code == 2 and "strengths must lie between -20 and 20" in result.stderr


def test_a_long_range_draws_a_bounded_contact_sheet(tmp_path, demo_path):
    out = tmp_path / "out"
    result = run("-q", "edit", "--range", "0", "4", "0.05", "-o", str(out), str(demo_path))  # 81 strengths
    assert result.exit_code == 0, result.output
    document = json.loads((out / "edit.json").read_text())
    outputs = document["inputs"][0]["outputs"]
    assert sum("strength" in o for o in outputs) == 81
    (sheet,) = [o for o in outputs if o["product"].endswith(".sheet")]
    assert sheet["note"] == "the sheet shows 12 of 81 columns, evenly spaced"
    assert Image.open(sheet["path"]).width < 12 * 260


# -- README promises -------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["png", "webp", "tiff"])
def test_edit_keeps_transparency_in_formats_that_carry_it(tmp_path, demo_rgb, ext):
    alpha = np.tile(np.linspace(40, 255, demo_rgb.shape[1]).astype(np.uint8), (demo_rgb.shape[0], 1))
    photo = tmp_path / f"hopper.{ext}"
    options = {"lossless": True} if ext == "webp" else {}
    Image.fromarray(np.dstack([demo_rgb, alpha]), "RGBA").save(photo, **options)
    out = tmp_path / "out"
    result = run("-q", "edit", "--range", "0", "1", "1", "--versions", "0", "-o", str(out), str(photo))
    assert result.exit_code == 0, result.output
    for strength in ("0.0", "1.0"):
        written = Image.open(out / f"hopper.Smiling.v0.{strength}.{ext}")
        assert written.mode == "RGBA" and np.array_equal(np.asarray(written)[..., 3], alpha)


def test_jpeg_quality_is_applied_and_strength_zero_is_the_decoded_photo_re_encoded(tmp_path, demo_path):
    sizes, errors = {}, {}
    for quality in (10, 95):
        config = tmp_path / f"q{quality}.yaml"
        config.write_text(f"output:\n  jpeg_quality: {quality}\n")
        out = tmp_path / f"q{quality}"
        assert (
            run(
                "-q", "--config", str(config), "edit", "--range", "0", "0", "1", "--versions", "0", "-o", str(out), str(demo_path)
            ).exit_code
            == 0
        )
        written = out / "grace_hopper.Smiling.v0.0.0.jpg"
        sizes[quality] = written.stat().st_size
        source = np.asarray(Image.open(demo_path).convert("RGB"), np.float64)
        errors[quality] = np.abs(np.asarray(Image.open(written), np.float64) - source).mean()
        reencoded = tmp_path / f"ref{quality}.jpg"
        Image.fromarray(source.astype(np.uint8)).save(reencoded, quality=quality)
        assert written.read_bytes() == reencoded.read_bytes()  # exactly the decoded photo, re-encoded
    assert sizes[10] < sizes[95] / 3 and errors[10] > 2 * errors[95]


def test_evaluate_vae_writes_nothing_without_out_dir(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    n = 4
    np.save(cache / "faces.npy", np.full((n, 128, 128, 3), 100, np.uint8))
    np.save(cache / "attributes.npy", np.ones((n, 1), np.int8))
    np.save(cache / "landmarks.npy", np.zeros((n, 68, 2), np.float32))
    np.save(cache / "ids.npy", np.arange(28001, 28001 + n))
    (cache / "meta.json").write_text(json.dumps({"attribute_names": ["Smiling"]}))
    monkeypatch.chdir(tmp_path)
    result = run("evaluate", "vae", "--cache", str(cache), "--limit", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["held_out_faces"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    with_grid = run("evaluate", "vae", "--cache", str(cache), "--limit", "2", "-o", str(tmp_path / "grid"))
    assert with_grid.exit_code == 0 and (tmp_path / "grid" / "vae_reconstructions.png").is_file()


def test_a_new_step_joins_the_runner_as_docs_architecture_shows(tmp_path, demo_rgb):
    """The example step of docs/ARCHITECTURE.md: a step module is all a new command needs."""
    from dataclasses import dataclass

    from PIL import ImageFilter

    from faceflex.face.detect import DetectSettings
    from faceflex.face.masks import region_mask
    from faceflex.io.inputs import iter_inputs
    from faceflex.pipeline.flow import Layer, StepOutput, Variant
    from faceflex.pipeline.jobs import PhotoJob
    from faceflex.pipeline.runner import Runner, RunSettings

    @dataclass
    class BlurStep:
        radius: float = 8.0
        command = "blur"
        aligned_size = 128
        writes_variants = True
        picture_format = None

        def settings(self) -> dict:
            return {"radius": self.radius}

        def __call__(self, photo, crops):
            def layers():
                blurred = [np.asarray(Image.fromarray(c.aligned.image).filter(ImageFilter.GaussianBlur(self.radius))) for c in crops]
                return [Layer(c.index, b, region_mask(c.aligned.landmarks, "face")) for c, b in zip(crops, blurred)]

            return StepOutput([{} for _ in crops], [Variant("blurred", layers)])

    photo = tmp_path / "hopper.png"
    Image.fromarray(demo_rgb).save(photo)
    out = tmp_path / "out"
    items = [entry for entry in iter_inputs([photo])]
    runner = Runner({"faceflex": "test", "command": "blur", "settings": {}}, RunSettings(out, str(out / "blur.json")), writes_files=True)
    result = runner.run(items, [], PhotoJob(BlurStep(), DetectSettings()))
    assert result.exit_code == 0 and result.outputs == 1
    blurred = np.asarray(Image.open(out / "hopper.blurred.png"))
    assert not np.array_equal(blurred, demo_rgb) and np.array_equal(blurred[:60], demo_rgb[:60])  # the face only
    assert json.loads((out / "blur.json").read_text())["inputs"][0]["outputs"][0]["product"] == "blurred"
