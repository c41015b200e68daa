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
    code = (
        "import sys; from faceflex.cli import main; sys.argv=['faceflex','--help']\ntry: main()\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('torch','numpy','PIL','dlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def by_name(document: dict) -> dict[str, dict]:
    """Input records of a manifest by file name."""
    return {Path(r["file"]).name: r for r in document["inputs"]}


def test_detect_demo_face_prints_the_envelope():
    result = run("detect")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert (document["command"], document["schema"], document["complete"]) == ("detect", 1, True)
    assert document["summary"] == {"inputs": 1, "succeeded": 1, "failed": 0, "skipped": 0, "faces": 1, "outputs": 0}
    (image,) = document["inputs"]
    assert image["file"].endswith("grace_hopper.jpg") and (image["width"], image["height"]) == (512, 600)
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
    assert "2 of 4 inputs failed" in result.stderr
    records = by_name(json.loads((out / "detect.json").read_text()))
    assert {name: r["status"] for name, r in records.items()} == {
        "broken.jpg": "failed",
        "hopper.jpg": "ok",
        "notes.jpg": "failed",
        "wall.png": "ok",
    }
    assert (records["hopper.jpg"]["face_count"], records["wall.png"]["face_count"]) == (1, 0)
    assert records["broken.jpg"]["error"] == "truncated image file"
    assert sorted(p.name for p in out.iterdir()) == [".faceflex.lock", "detect.json", "hopper.landmarks.png", "wall.landmarks.png"]


def test_no_face_photo_exits_0_with_a_message(tmp_path):
    path = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 120, np.uint8)).save(path)
    result = run("detect", str(path))
    assert result.exit_code == 0
    assert "no face found" in result.stderr
    assert json.loads(result.stdout)["inputs"][0]["faces"] == []


def test_quiet_prints_only_errors(tmp_path):
    path = tmp_path / "wall.png"
    Image.fromarray(np.full((100, 100, 3), 120, np.uint8)).save(path)
    result = run("--quiet", "detect", str(path), "--manifest", str(tmp_path / "d.json"))
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""
    assert (tmp_path / "d.json").is_file()


@pytest.mark.parametrize("group", [["train", "vectors"], ["evaluate", "vae"], ["detect"], ["edit"], ["classify"]])
def test_quiet_and_verbose_are_accepted_after_every_command(group):
    for flag in ("-q", "-v"):
        result = run(*group, flag, "--help")
        assert result.exit_code == 0, result.output


def test_missing_input_is_reported_and_exit_1(tmp_path, demo_path):
    result = run("detect", str(demo_path), str(tmp_path / "nope.jpg"))
    assert result.exit_code == 1
    assert "nope.jpg: no such file or folder" in result.stderr
    statuses = [r["status"] for r in json.loads(result.stdout)["inputs"]]
    assert sorted(statuses) == ["failed", "ok"]


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
    assert from_yaml["settings"]["detect"]["threshold"] == 9.0 and from_yaml["inputs"][0]["faces"] == []
    from_cli = json.loads(run("--config", str(config), "detect", str(demo_path), "--threshold", "0.2").stdout)
    assert from_cli["settings"]["detect"]["threshold"] == 0.2 and len(from_cli["inputs"][0]["faces"]) == 1
    default = json.loads(run("detect", str(demo_path)).stdout)
    assert default["settings"]["detect"]["threshold"] == 0.0 and default["settings"]["detect"]["max_side"] == 800


def test_yaml_recursive_is_not_hidden_by_an_absent_flag(tmp_path, demo_path):
    (tmp_path / "in" / "deep").mkdir(parents=True)
    shutil.copy(demo_path, tmp_path / "in" / "deep" / "x.jpg")
    config = tmp_path / "c.yaml"
    config.write_text("input:\n  recursive: true\n")
    document = json.loads(run("--config", str(config), "detect", str(tmp_path / "in")).stdout)
    assert len(document["inputs"]) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("detect:\n  detecter: hog\n", "unknown key 'detect.detecter'; allowed keys: detect.faces, detect.detector"),
        ("detect:\n  detector: haar\n", "detect.detector: 'haar' is not allowed; choose one of hog, cnn, hog+cnn, hog+masked"),
        ("output:\n  jpeg_quality: 150\n", "output.jpeg_quality: 150 is out of range"),
        ("seed: lots\n", "seed: 'lots' is not an integer"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("detect: [unclosed\n", "not valid YAML"),
        ("detect:\n  min_face: .nan\n", "detect.min_face: nan is not a finite number"),
        ("paste:\n  feather: .nan\n", "paste.feather: nan is not a finite number"),
        ("edit:\n  parameter_range: [0, .inf, 1]\n", "edit.parameter_range"),
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
    assert run("detect", "-q", "-v").exit_code == 2


@pytest.mark.parametrize("flags", [["--threshold", "nan"], ["--min-face", "inf"], ["--threshold", "-nan"]])
def test_non_finite_numbers_are_usage_errors(demo_path, flags):
    result = run("detect", str(demo_path), *flags)
    assert result.exit_code == 2 and "is not a finite number" in result.stderr


def test_a_config_file_that_is_not_utf8_is_one_line_exit_2(tmp_path, demo_path):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"detect:\n  threshold: 0.5 # \xff\xfe latin-1 \xe9\n")
    result = run("--config", str(config), "detect", str(demo_path))
    assert result.exit_code == 2 and "not a UTF-8 text file" in result.stderr and "Traceback" not in result.output


def test_output_never_overwrites_an_input(tmp_path, demo_path):
    shutil.copy(demo_path, tmp_path / "x.jpg")
    victim = tmp_path / "x.landmarks.png"
    Image.fromarray(np.full((100, 100, 3), 7, np.uint8)).save(victim)
    before = victim.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(victim, out / "x.landmarks.png")
    result = run("detect", str(tmp_path / "x.jpg"), str(out / "x.landmarks.png"), "-o", str(out), "--plot-landmarks")
    assert result.exit_code == 1
    assert "refusing to overwrite an input file" in result.stderr
    assert (out / "x.landmarks.png").read_bytes() == before


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
        [sys.executable, str(script), "--out_dir", str(tmp_path), "--plot_landmarks", "--config", str(config)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "edit.json").read_text())
    assert manifest["settings"]["attribute"] == "Smiling" and manifest["settings"]["strengths"] == [0.0, 1.0, 2.0]
    products = [o["product"] for o in manifest["inputs"][0]["outputs"]]
    assert sum(p.startswith("Smiling.mean.") for p in products) == 3 and (tmp_path / "grace_hopper.face0.mask.png").is_file()


@pytest.mark.parametrize(
    "section, settings_class",
    [
        ("train_unmask", "faceflex.train.unmask_trainer.UnmaskSettings"),
        ("train_unmask_detail", "faceflex.train.unmask_trainer.UnmaskDetailSettings"),
        ("train_anonymize", "faceflex.train.anonymizer_trainer.AnonymizerSettings"),
        ("train_paint", "faceflex.train.attribute_painter_trainer.PainterSettings"),
    ],
)
def test_every_painting_trainer_is_filled_from_the_default_config(section, settings_class):
    """Each setting a trainer has is a key of its config section (a missing one broke `train painter`)."""
    import importlib

    from faceflex.cli.training import _section_settings
    from faceflex.config import load_config

    module, name = settings_class.rsplit(".", 1)
    settings = _section_settings(getattr(importlib.import_module(module), name), load_config(None)[section], 7)
    assert settings.seed == 7
