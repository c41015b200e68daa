"""Batches on several workers (``--workers``, ``--backend ray``): the same files and manifest as one
worker, resumable, and a dying worker fails only its input."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceflex.cli import cli
from faceflex.config import ConfigError, validate
from faceflex.io.inputs import iter_inputs
from faceflex.pipeline.executors import resolve_workers, threads_per_worker
from faceflex.pipeline.runner import Runner, RunSettings


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def photos_with_a_bad_file(tmp_path: Path, demo_path: Path) -> Path:
    """Three real photos (one mirrored, one smaller PNG) and a file that is not an image."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(demo_path, folder / "a_hopper.jpg")
    image = Image.open(demo_path)
    image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "b_mirrored.jpg", quality=90)
    image.resize((image.width * 2 // 3, image.height * 2 // 3)).save(folder / "c_small.png")
    (folder / "d_broken.jpg").write_bytes(b"not a photo")
    return folder


def produced(out: Path) -> tuple[dict[str, str], dict]:
    """The files a batch wrote (name -> md5) and its manifest without times and folder names."""
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.suffix in (".jpg", ".png")}
    text = (out / "edit.json").read_text().replace(str(out), "OUT")
    manifest = json.loads(text)
    for key in ("started", "finished"):
        manifest.pop(key, None)
    return files, manifest


def test_two_workers_write_the_same_files_and_manifest_as_one(tmp_path, demo_path):
    folder = photos_with_a_bad_file(tmp_path, demo_path)
    results = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        result = run("-q", "edit", str(folder), "--range", "0", "1", "1", "--workers", workers, "-o", str(out))
        assert result.exit_code == 1, result.output  # the broken file fails alone
        assert "d_broken.jpg: not an image" in result.stderr
        results[workers] = produced(out)
    files, manifest = results["1"]
    assert len(files) == 9  # 3 photos x (2 strengths + sheet)
    assert results["2"] == results["1"]  # byte-identical images; same records in the same order
    assert [Path(r["file"]).name for r in manifest["inputs"]] == ["a_hopper.jpg", "b_mirrored.jpg", "c_small.png", "d_broken.jpg"]


def test_skip_existing_resumes_on_two_workers(tmp_path, demo_path):
    folder = photos_with_a_bad_file(tmp_path, demo_path)
    out = tmp_path / "out"
    args = ["-q", "detect", str(folder), "--plot-landmarks", "--workers", "2", "-o", str(out)]
    assert run(*args).exit_code == 1
    (out / "b_mirrored.landmarks.png").unlink()  # one output lost: that input runs again
    again = run(*args, "--skip-existing")
    document = json.loads((out / "detect.json").read_text())
    assert again.exit_code == 1 and document["summary"]["skipped"] == 2 and document["summary"]["succeeded"] == 1
    assert (out / "b_mirrored.landmarks.png").is_file()


class DyingJob:
    """Ends its worker process abruptly on one input (as the kernel's out-of-memory killer would)."""

    def __call__(self, item, outputs) -> dict:
        if item.path.name.startswith("b_"):
            os._exit(9)
        outputs.text("seen", "txt", item.path.name)
        return {"face_count": 0}


def test_a_worker_that_dies_fails_only_its_input(tmp_path, demo_path):
    folder = photos_with_a_bad_file(tmp_path, demo_path)
    items = [entry for entry in iter_inputs([folder])]
    out = tmp_path / "out"
    settings = RunSettings(out, str(out / "seen.json"), workers=2, quiet=True)
    result = Runner({"faceflex": "test", "command": "seen"}, settings, writes_files=True).run(items, [], DyingJob())
    assert [Path(f.path).name for f in result.failures] == ["b_mirrored.jpg"]
    assert "stopped unexpectedly" in result.failures[0].cause
    assert result.succeeded == 3 and sorted(p.name for p in out.glob("*.txt")) == [
        "a_hopper.seen.txt",
        "c_small.seen.txt",
        "d_broken.seen.txt",
    ]


class SlowFirstJob:
    """Takes 3 s on the first input and no time on the others; records when each finished."""

    def __call__(self, item, outputs) -> dict:
        if item.path.name == "p0.jpg":
            time.sleep(3)
        outputs.text("seen", "txt", item.path.name)
        return {"face_count": 0, "done_at": time.time()}


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_slow_input_does_not_hold_back_the_workers(tmp_path, backend):
    """While one worker is on a slow input, the other goes through the rest of the batch; the
    manifest still lists the inputs in order."""
    if backend == "ray":
        ray = pytest.importorskip("ray")
        here = {"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}}  # the actors import this module's job
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False, runtime_env=here)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(10):
        (folder / f"p{i}.jpg").write_text(str(i))
    items = list(iter_inputs([folder]))
    out = tmp_path / "out"
    settings = RunSettings(out, str(out / "seen.json"), workers=2, backend=backend, quiet=True)
    try:
        result = Runner({"faceflex": "test", "command": "seen"}, settings, writes_files=True).run(items, [], SlowFirstJob())
    finally:
        if backend == "ray":
            ray.shutdown()
    assert result.succeeded == 10
    records = json.loads((out / "seen.json").read_text())["inputs"]
    assert [Path(r["file"]).name for r in records] == [f"p{i}.jpg" for i in range(10)]
    assert all(r["done_at"] < records[0]["done_at"] for r in records[1:])


class BlasThreadsJob:
    """Records how many threads numpy's BLAS may use while the job runs."""

    def __call__(self, item, outputs) -> dict:
        from threadpoolctl import threadpool_info

        outputs.text("seen", "txt", item.path.name)
        return {"face_count": 0, "blas_threads": [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]}


def test_in_process_runs_keep_numpys_blas_on_one_thread_and_give_it_back(tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        (folder / f"p{i}.jpg").write_text(str(i))
    out = tmp_path / "out"
    with threadpool_limits(limits=2, user_api="blas"):  # as on a 2-core machine
        Runner({"faceflex": "test", "command": "seen"}, RunSettings(out, str(out / "seen.json"), quiet=True), writes_files=True).run(
            list(iter_inputs([folder])), [], BlasThreadsJob()
        )
        after = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    records = json.loads((out / "seen.json").read_text())["inputs"]
    assert records and all(r["blas_threads"] and set(r["blas_threads"]) == {1} for r in records)
    assert set(after) == {2}  # the limit ends with the batch


def test_workers_split_the_cores_and_auto_means_one_for_a_single_input(monkeypatch):
    assert threads_per_worker(2, cores=2) == 1 and threads_per_worker(1, cores=8) == 8 and threads_per_worker(16, cores=2) == 1
    monkeypatch.setattr("faceflex.pipeline.executors.machine_cores", lambda: 6)
    assert resolve_workers("auto", 100) == 6 and resolve_workers("auto", 1) == 1 and resolve_workers(3, 100) == 3
    with pytest.raises(ValueError):
        resolve_workers(0, 5)
    assert validate({"run": {"workers": "auto", "backend": "ray"}}, "test")["run"] == {"workers": "auto", "backend": "ray"}
    for bad in ({"workers": 0}, {"workers": "many"}, {"backend": "dask"}):
        with pytest.raises(ConfigError):
            validate({"run": bad}, "test")


def test_the_ray_backend_is_a_clear_usage_error_when_ray_is_missing(demo_path):
    if importlib.util.find_spec("ray") is not None:
        pytest.skip("Ray is installed")
    result = run("detect", str(demo_path), "--backend", "ray")
    assert result.exit_code == 2 and "pip install 'faceflex[ray]'" in result.output


def test_ray_backend_writes_what_the_local_runner_writes(tmp_path, demo_path):
    ray = pytest.importorskip("ray")
    folder = photos_with_a_bad_file(tmp_path, demo_path)
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        for backend in ("local", "ray"):
            result = run("-q", "edit", str(folder), "--range", "0", "1", "1", "--backend", backend, "-o", str(tmp_path / backend))
            assert result.exit_code == 1, result.output
    finally:
        ray.shutdown()
    assert produced(tmp_path / "ray") == produced(tmp_path / "local")
    assert np.asarray(Image.open(tmp_path / "ray" / "a_hopper.Smiling.mean.1.0.jpg")).shape[2] == 3
