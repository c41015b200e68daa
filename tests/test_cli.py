"""The command line through Click's runner: outputs, exit codes, config precedence, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceflex.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def mixed_folder(tmp_path, demo_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(demo_path, folder / "hopper.jpg")
    Image.fromarray(np.full((200, 300, 3), 120, np.uint8)).save(folder / "wall.png")
    (folder / "broken.jpg").write_bytes(Path(demo_path).read_bytes()[:3000])
    (folder / "notes.jpg").write_text("not a photo")
    return folder


def test_help_is_fast_and_does_not_import_heavy_modules():
    code = "import sys; from faceflex.cli import main; sys.argv=['faceflex','--help']\ntry: main()\nexcept SystemExit: pass\nprint(sorted(m for m in ('torch','numpy','PIL','dlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_detect_demo_face_prints_json():
    result = run("detect")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["command"] == "detect"
    (image,) = document["images"]
    assert image["path"].endswith("grace_hopper.jpg") and (image["width"], image["height"]) == (512, 600)
    (face,) = image["faces"]
    assert set(face) == {"index", "box", "score", "size", "landmarks"}
    assert len(face["landmarks"]) == 68 and len(face["box"]) == 4


def test_mixed_folder_goes_on_and_exits_1(mixed_folder, tmp_path):
    out = tmp_path / "out"
    result = run("detect", str(mixed_folder), "--out-dir", str(out), "--plot-landmarks")
    assert result.exit_code == 1
    assert "broken.jpg: truncated" in result.stderr
    assert "notes.jpg: not an image" in result.stderr
    assert "wall.png: no face found" in result.stderr
    assert "2 of 4 images failed" in result.stderr
    document = json.loads((out / "detections.json").read_text())
    faces = {Path(r["path"]).name: len(r["faces"]) for r in document["images"]}
    assert faces == {"hopper.jpg": 1, "wall.png": 0}
    assert {Path(f["path"]).name for f in document["failed"]} == {"broken.jpg", "notes.jpg"}
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "hopper.landmarks.png", "wall.landmarks.png"]


def test_no_face_photo_exits_0_with_a_message(tmp_path):
    path = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 120, np.uint8)).save(path)
    result = run("detect", str(path))
    assert result.exit_code == 0
    assert "no face found" in result.stderr
    assert json.loads(result.stdout)["images"][0]["faces"] == []


def test_quiet_prints_only_errors(tmp_path):
    path = tmp_path / "wall.png"
    Image.fromarray(np.full((100, 100, 3), 120, np.uint8)).save(path)
    result = run("--quiet", "detect", str(path), "--json", str(tmp_path / "d.json"))
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""
    assert (tmp_path / "d.json").is_file()


def test_missing_input_is_reported_and_exit_1(tmp_path, demo_path):
    result = run("detect", str(demo_path), str(tmp_path / "nope.jpg"))
    assert result.exit_code == 1
    assert "nope.jpg: no such file or folder" in result.stderr
    assert len(json.loads(result.stdout)["images"]) == 1


def test_same_names_from_two_folders_do_not_collide(tmp_path, demo_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(demo_path, tmp_path / sub / "face.jpg")
    out = tmp_path / "out"
    result = run("detect", str(tmp_path / "a" / "face.jpg"), str(tmp_path / "b" / "face.jpg"), "-o", str(out), "--plot-landmarks")
    assert result.exit_code == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["face-2.landmarks.png", "face.landmarks.png"]


def test_recursive_mirrors_sub_folders(tmp_path, demo_path):
    (tmp_path / "in" / "deep").mkdir(parents=True)
    shutil.copy(demo_path, tmp_path / "in" / "deep" / "x.jpg")
    out = tmp_path / "out"
    flat = run("detect", str(tmp_path / "in"), "-o", str(out))
    assert flat.exit_code == 1 and "no image files in this folder (try --recursive)" in flat.stderr
    assert run("detect", str(tmp_path / "in"), "-r", "-o", str(out), "--plot-landmarks").exit_code == 0
    assert (out / "deep" / "x.landmarks.png").is_file()


def test_config_precedence_cli_over_yaml_over_defaults(tmp_path, demo_path):
    config = tmp_path / "c.yaml"
    config.write_text("detect:\n  threshold: 9.0\n  detector: hog\n")
    from_yaml = json.loads(run("--config", str(config), "detect", str(demo_path)).stdout)
    assert from_yaml["settings"]["threshold"] == 9.0 and from_yaml["images"][0]["faces"] == []
    from_cli = json.loads(run("--config", str(config), "detect", str(demo_path), "--threshold", "0.2").stdout)
    assert from_cli["settings"]["threshold"] == 0.2 and len(from_cli["images"][0]["faces"]) == 1
    default = json.loads(run("detect", str(demo_path)).stdout)
    assert default["settings"]["threshold"] == 0.0 and default["settings"]["max_side"] == 800


def test_yaml_recursive_is_not_hidden_by_an_absent_flag(tmp_path, demo_path):
    (tmp_path / "in" / "deep").mkdir(parents=True)
    shutil.copy(demo_path, tmp_path / "in" / "deep" / "x.jpg")
    config = tmp_path / "c.yaml"
    config.write_text("input:\n  recursive: true\n")
    document = json.loads(run("--config", str(config), "detect", str(tmp_path / "in")).stdout)
    assert len(document["images"]) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("detect:\n  detecter: hog\n", "unknown key 'detect.detecter'; allowed keys: detect.detector"),
        ("detect:\n  detector: haar\n", "detect.detector: 'haar' is not allowed; choose one of hog, cnn"),
        ("output:\n  jpeg_quality: 150\n", "output.jpeg_quality: 150 is out of range"),
        ("seed: lots\n", "seed: 'lots' is not an integer"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("detect: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_is_rejected_with_exit_2(tmp_path, demo_path, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    result = run("--config", str(config), "detect", str(demo_path))
    assert result.exit_code == 2
    assert message in result.stderr and str(config) in result.stderr


def test_unsafe_yaml_is_not_executed(tmp_path, demo_path):
    config = tmp_path / "c.yaml"
    config.write_text("seed: !!python/object/apply:os.system ['echo hacked']\n")
    result = run("--config", str(config), "detect", str(demo_path))
    assert result.exit_code == 2 and "not valid YAML" in result.stderr


def test_bad_flag_values_exit_2(demo_path, tmp_path):
    assert run("detect", str(demo_path), "--upsample", "7").exit_code == 2
    assert run("detect", str(demo_path), "--detector", "haar").exit_code == 2
    assert run("--config", str(tmp_path / "missing.yaml"), "detect").exit_code == 2
    assert run("--quiet", "--verbose", "detect").exit_code == 2


def test_output_never_overwrites_an_input(tmp_path, demo_path):
    shutil.copy(demo_path, tmp_path / "x.jpg")
    victim = tmp_path / "x.landmarks.png"
    Image.fromarray(np.full((100, 100, 3), 7, np.uint8)).save(victim)
    before = victim.read_bytes()
    result = run("detect", str(tmp_path / "x.jpg"), str(victim), "-o", str(tmp_path), "--plot-landmarks")
    assert result.exit_code == 1
    assert "refusing to overwrite an input file" in result.stderr
    assert victim.read_bytes() == before


def test_console_script_runs(tmp_path):
    exe = shutil.which("faceflex", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("faceflex console script not installed in this environment")
    done = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "faceflex" in done.stdout


def test_enhance_py_runs_the_main_job(tmp_path):
    script = Path(__file__).resolve().parents[1] / "enhance.py"
    config = tmp_path / "short.yaml"
    config.write_text("edit:\n  parameter_range: [0, 2, 1]\n")
    done = subprocess.run(
        [sys.executable, str(script), "--out_dir", str(tmp_path), "--plot_landmarks", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "edits.json").read_text())
    assert manifest["attribute"] == "Smiling" and manifest["strengths"] == [0.0, 1.0, 2.0]
    assert len(manifest["images"][0]["outputs"]) == 3 and (tmp_path / "grace_hopper.face0.mask.png").is_file()
