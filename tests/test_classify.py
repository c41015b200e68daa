"""`faceflex classify` with the shipped classifiers (skipped when the weight files are absent)."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceflex.classify import SHIPPED
from faceflex.cli import cli
from faceflex.models.weights import shipped

pytestmark = pytest.mark.skipif(
    not all(shipped(name).is_file() for name in SHIPPED.values()), reason="shipped classifier weights absent"
)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_demo_face_json_is_plausible():
    result = run("classify", "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["failed"] == [] and len(doc["faces"]) == 1
    face = doc["faces"][0]
    assert face["file"].endswith("grace_hopper.jpg") and face["index"] == 0
    # Grace Hopper at 77, in a naval cap and glasses. The shipped models get the cap, the glasses
    # and her age group right; they call her male (docs/CLASSIFY.md lists this known error).
    assert face["occlusion"]["eyeglasses"]["value"] and face["occlusion"]["hat"]["value"]
    assert face["age"]["group"] == "old" and face["age"]["years"] >= 55
    assert face["gender"]["label"] in ("male", "female") and 0.5 <= face["gender"]["probability"] <= 1
    assert face["pose"]["label"] == "frontal"
    assert abs(sum(face["expression"]["probabilities"].values()) - 1) < 1e-3
    assert set(face["occlusion"]) == {"eyeglasses", "hat", "beard", "mustache", "bangs"}
    assert set(face["makeup"]) == {"heavy_makeup", "lipstick"}
    assert face["illumination"]["label"] in ("bad", "medium", "high")


def test_no_face_gives_empty_list_and_bad_files_are_reported(tmp_path, demo_path):
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    (tmp_path / "broken.jpg").write_bytes(demo_path.read_bytes()[:2000])
    shutil.copy(demo_path, tmp_path / "hopper.jpg")
    result = run("classify", "-q", str(tmp_path))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [f["file"].split("/")[-1] for f in doc["faces"]] == ["hopper.jpg"]
    assert [f["file"].split("/")[-1] for f in doc["failed"]] == ["broken.jpg"]
    only_wall = json.loads(run("classify", "-q", str(tmp_path / "wall.png")).stdout)
    assert only_wall["faces"] == [] and only_wall["failed"] == []


def test_csv_output_and_annotation(tmp_path, demo_path):
    out = tmp_path / "faces.csv"
    result = run("classify", "-q", "--format", "csv", "--out", str(out), "--annotate", str(tmp_path / "ann"), str(demo_path))
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1
    assert {"file", "index", "gender.label", "age.years", "expression.label", "pose.yaw", "illumination.label"} <= set(rows[0])
    annotated = tmp_path / "ann" / "grace_hopper.classified.jpg"
    assert annotated.is_file() and Image.open(annotated).size == Image.open(demo_path).size


def test_video_every_nth_frame(tmp_path, demo_rgb):
    from faceflex.video import VideoWriter

    writer = VideoWriter(tmp_path / "clip.mp4", fps=5)
    for shift in range(6):
        writer.write(np.roll(demo_rgb, shift * 4, axis=1))
    writer.close()
    result = run("classify", "-q", "--every", "2", "--out-dir", str(tmp_path / "out"), "--annotate", str(tmp_path / "ann"), str(tmp_path / "clip.mp4"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["videos"][0]["frames"] == 3 and doc["videos"][0]["faces"] == 3
    lines = [json.loads(line) for line in (tmp_path / "out" / "clip.classified.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 2, 4]
    assert all(len(line["faces"]) == 1 for line in lines)
    assert (tmp_path / "ann" / "clip.classified.mp4").is_file()
