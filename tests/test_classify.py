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

from faceflex.cli import cli
from faceflex.inference.classifiers import SHIPPED
from faceflex.inference.unmasking import SHIPPED_WEIGHTS
from faceflex.shipped import shipped

pytestmark = pytest.mark.skipif(
    not all(shipped(name).is_file() for name in [*SHIPPED.values(), SHIPPED_WEIGHTS]), reason="shipped weights absent"
)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def faces_of(document: dict) -> list[dict]:
    return [dict(face, file=r["file"]) for r in document["inputs"] for face in r.get("faces", [])]


def test_demo_face_json_is_plausible(demo_rgb, demo_faces):
    from faceflex.face.align import align_face
    from faceflex.face.crops import attribute_input, expression_input
    from faceflex.inference.classifiers import load_classifiers

    result = run("classify", "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["summary"]["failed"] == 0 and len(faces_of(doc)) == 1
    face = faces_of(doc)[0]
    assert face["file"].endswith("grace_hopper.jpg") and face["index"] == 0
    # Grace Hopper at 77, in a naval cap and glasses. The shipped models get the cap, the glasses,
    # her age and, since 2026-12-05, her gender (docs/CLASSIFY.md).
    assert face["occlusion"]["eyeglasses"]["value"] and face["occlusion"]["hat"]["value"]
    assert face["gender"]["label"] == "female"
    assert face["age"]["group"] == "old" and 65 <= face["age"]["years"] <= 92
    assert 0 < face["age"]["sd"] < 15  # a sharp, frontal face: a narrow age distribution
    # the reported gender is the networks' own P(male), rounded, with the label on the likelier side
    (landmarks,) = [f.landmarks for f in demo_faces]
    inputs = attribute_input(align_face(demo_rgb, landmarks).image)[None], expression_input(demo_rgb, landmarks)[None]
    models = load_classifiers("cpu")
    male = float(models.predict(*inputs, models.dlib_features([demo_rgb], [landmarks])[1]).male[0])
    assert face["gender"] == {"label": "male" if male >= 0.5 else "female", "probability": round(max(male, 1 - male), 4)}
    assert face["pose"]["label"] == "frontal"
    assert abs(sum(face["expression"]["probabilities"].values()) - 1) < 1e-3
    assert set(face["occlusion"]) == {"eyeglasses", "hat", "beard", "mustache", "bangs", "mask"}
    assert not face["occlusion"]["mask"]["value"] and face["occlusion"]["mask"]["coverage"] < 0.02
    assert set(face["makeup"]) == {"heavy_makeup", "lipstick"}
    assert face["illumination"]["label"] == "high"  # an evenly lit studio portrait


def test_a_face_mask_is_reported_as_an_occlusion(demo_rgb):
    from faceflex.api import DetectSettings, classify_photo, mask_photo

    for kind in ("surgical_blue", "KN95", "cloth", "gas", "N95"):  # N95: HOG boxes this face too large; found in the masked detector's box
        masked = mask_photo(demo_rgb, kind=kind, seed=0).image
        (face,) = classify_photo(masked, detect=DetectSettings(detector="hog+masked"))
        mask = face["occlusion"]["mask"]
        assert mask["value"] and mask["probability"] > 0.9 and 0.25 < mask["coverage"] < 0.8, (kind, mask)


def test_no_face_gives_empty_list_and_bad_files_are_reported(tmp_path, demo_path):
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    (tmp_path / "broken.jpg").write_bytes(demo_path.read_bytes()[:2000])
    shutil.copy(demo_path, tmp_path / "hopper.jpg")
    result = run("classify", "-q", str(tmp_path))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [f["file"].split("/")[-1] for f in faces_of(doc)] == ["hopper.jpg"]
    assert [r["file"].split("/")[-1] for r in doc["inputs"] if r["status"] == "failed"] == ["broken.jpg"]
    only_wall = json.loads(run("classify", "-q", str(tmp_path / "wall.png")).stdout)
    assert faces_of(only_wall) == [] and only_wall["summary"]["failed"] == 0


def test_csv_output_and_annotation(tmp_path, demo_path):
    out = tmp_path / "faces.csv"
    result = run("classify", "-q", "--format", "csv", "--manifest", str(out), "--annotate", "-o", str(tmp_path / "ann"), str(demo_path))
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1
    assert {"file", "status", "index", "gender.label", "age.years", "expression.label", "pose.yaw", "illumination.label"} <= set(rows[0])
    annotated = tmp_path / "ann" / "grace_hopper.classified.jpg"
    assert annotated.is_file() and Image.open(annotated).size == Image.open(demo_path).size


def test_video_every_nth_frame_at_the_source_rate(tmp_path, demo_rgb):
    import av

    from faceflex.io.video import VideoWriter

    writer = VideoWriter(tmp_path / "clip.mp4", 10)
    for shift in range(6):
        writer.write(np.roll(demo_rgb, shift * 4, axis=1))
    writer.close()
    out = tmp_path / "out"
    result = run("classify", "-q", "--every", "2", "--out-dir", str(out), "--annotate", str(tmp_path / "clip.mp4"))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "classify.json").read_text())
    (video,) = doc["inputs"]
    assert (video["kind"], video["frames_sampled"], video["face_count"]) == ("video", 3, 3)
    assert doc["summary"]["faces"] == 3
    lines = [json.loads(line) for line in (out / "clip.frames.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 2, 4]
    assert all(len(line["faces"]) == 1 for line in lines)
    with av.open(str(out / "clip.classified.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 5 and stream.frames == 3  # 10 fps source, every 2nd frame


def test_a_truncated_video_is_a_reported_failure_with_no_outputs(tmp_path, demo_rgb):
    from faceflex.io.video import VideoWriter

    writer = VideoWriter(tmp_path / "clip.mp4", 10)
    for shift in range(12):
        writer.write(np.roll(demo_rgb, shift * 4, axis=1))
    writer.close()
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    result = run("classify", "-q", "--out-dir", str(out), str(tmp_path / "cut.mp4"))
    assert result.exit_code == 1 and "cut.mp4:" in result.stderr
    (record,) = json.loads((out / "classify.json").read_text())["inputs"]
    assert record["status"] == "failed"
    assert not list(out.glob("cut.*"))


def test_expression_probabilities_are_the_logits_scaled_by_the_stored_temperature(demo_rgb, demo_faces):
    import torch

    from faceflex.face.align import align_face
    from faceflex.face.crops import attribute_input, expression_input
    from faceflex.inference.classifiers import load_classifiers
    from faceflex.models.classifier_nets import predict

    models = load_classifiers("cpu")
    (landmarks,) = [f.landmarks for f in demo_faces]
    expression_in = expression_input(demo_rgb, landmarks)[None]
    out = models.predict(attribute_input(align_face(demo_rgb, landmarks).image)[None], expression_in, np.full((1, 128), np.nan))
    raw = predict(models.models["expression"], expression_in[..., None], torch.device("cpu"))["expression"][0]
    t = models.expression_temperature
    assert 0.2 < t < 5 and t != 1.0  # fitted on FER2013's validation part and stored in the shipped weights
    assert np.allclose(out.expressions[0], np.exp(raw / t) / np.exp(raw / t).sum(), atol=1e-5)


def test_reported_attributes_are_at_least_as_accurate_as_the_attribute_model_on_validation_faces(shared_data):
    """classify's attributes blend the attribute and face models (the share chosen on CelebA-HQ's
    validation part): on 400 of those faces (ids 27001-27400, never trained on) the blend must be
    at least as accurate on average as the attribute model alone, and sure of the clear attributes."""
    import io as _io
    import zipfile

    from faceflex.face.crops import attribute_input
    from faceflex.inference.classifiers import load_classifiers, sigmoid
    from faceflex.models.classifier_nets import predict
    from faceflex.models.labels import ATTRIBUTES
    from faceflex.train.cache import RawFace, align_raw, read_attribute_file

    root = shared_data / "celeba_hq"
    names, rows = read_attribute_file(root / "attributes.txt")
    marks = np.load(root / "landmarks68.npz")
    by_id = {int(i): (lm / 2.0, int(flag)) for i, lm, flag in zip(marks["ids"], marks["landmarks"], marks["flags"])}
    wanted = {f"celebahq128/{i}.jpg": i for i in range(27001, 27401)}
    inputs, labels = [], []
    for shard in sorted(root.glob("celebahq128_part*.zip")):
        with zipfile.ZipFile(shard) as archive:
            for member in sorted(set(archive.namelist()) & set(wanted)):
                face_id = wanted[member]
                rgb = np.asarray(Image.open(_io.BytesIO(archive.read(member))).convert("RGB"))
                landmarks, flag = by_id[face_id]
                aligned, _ = align_raw(RawFace(face_id, rgb, rows[f"{face_id}.jpg"], landmarks, prealigned=flag == 3))
                inputs.append(attribute_input(aligned))
                labels.append(rows[f"{face_id}.jpg"][[names.index(a) for a in ATTRIBUTES]] > 0)
    inputs, labels = np.stack(inputs), np.stack(labels)
    assert len(inputs) == 400
    models = load_classifiers("cpu")
    reported = models.predict(inputs, np.zeros((len(inputs), 48, 48), np.uint8), np.full((len(inputs), 128), np.nan)).attributes
    alone = sigmoid(predict(models.models["attributes"], inputs, models.device)["attributes"])
    reported_accuracy, alone_accuracy = ((reported > 0.5) == labels).mean(0), ((alone > 0.5) == labels).mean(0)
    assert reported_accuracy.mean() >= alone_accuracy.mean()
    assert reported_accuracy[ATTRIBUTES.index("Eyeglasses")] >= 0.97 and reported_accuracy[ATTRIBUTES.index("Male")] >= 0.95


def test_the_gender_of_a_masked_face_is_read_from_the_face_painted_under_the_mask(demo_rgb, demo_faces):
    """Behind a mask the classifiers call gender near chance (UTKFace test part, synthetic masks: 68 %);
    from the unmasking network's painting, 81 % (benchmarks/eval_masked_classify.py). Age stays the
    masked face's (the painting makes older faces decades younger)."""
    from faceflex.face.align import align_face
    from faceflex.face.crops import attribute_input
    from faceflex.inference.classifiers import load_classifiers
    from faceflex.pipeline.flow import run_step
    from faceflex.steps.classify import ClassifyStep

    (face,) = demo_faces
    aligned = align_face(demo_rgb, face.landmarks)
    painted_face = aligned.image[::-1, ::-1].copy()  # a face the classifiers read otherwise

    class SeesAMaskPaintsAnotherFace:
        fingerprint = "fake"

        def mask_probabilities(self, faces):
            probabilities = np.zeros(faces.shape[:3], np.float32)
            probabilities[:, 80:120, 30:100] = 1.0
            return probabilities

        def __call__(self, faces):
            return np.repeat(painted_face[None], len(faces), axis=0), self.mask_probabilities(faces)

    models = load_classifiers("cpu")
    (record,) = run_step(demo_rgb, ClassifyStep(models=models, unmasker=SeesAMaskPaintsAnotherFace())).records
    (bare,) = run_step(demo_rgb, ClassifyStep(models=models)).records
    zeros = np.zeros((1, 48, 48), np.uint8)
    _, painted_stages = models.dlib_features([painted_face], [aligned.landmarks])
    painted_male = float(models.predict(attribute_input(painted_face)[None], zeros, painted_stages).male[0])
    assert record["occlusion"]["mask"]["value"]
    assert record["gender"]["probability"] == round(max(painted_male, 1 - painted_male), 4) != bare["gender"]["probability"]
    assert record["age"] == bare["age"]


def test_the_astronaut_and_the_woman_in_the_voc_photo_are_reported_female(shared_data):
    """Both were called male by the 64-px networks (P(male) 0.70 and 0.66); the gender-and-age network
    on dlib's features reads them female."""
    result = run("classify", "-q", str(shared_data / "photos" / "sk_astronaut.png"), str(shared_data / "photos" / "2008_001322.jpg"))
    assert result.exit_code == 0, result.output
    genders = {(face["file"].split("/")[-1], face["index"]): face["gender"]["label"] for face in faces_of(json.loads(result.stdout))}
    assert genders == {
        ("sk_astronaut.png", 0): "female",
        ("2008_001322.jpg", 0): "male",
        ("2008_001322.jpg", 1): "female",
        ("2008_001322.jpg", 2): "male",
    }


def test_reported_gender_is_the_dlib_networks_calibrated_and_the_face_models_without_dlib_features():
    from faceflex.inference.classifiers import REPORTED_MALE, male_probabilities
    from faceflex.models.labels import ATTRIBUTES

    male = ATTRIBUTES.index("Male")
    attribute_logits, face_logits = np.zeros((2, len(ATTRIBUTES))), np.zeros((2, len(ATTRIBUTES)))
    face_logits[:, male] = 2 * np.log(0.8 / 0.2)  # the face model: 0.8 at its temperature 2
    dlib_logits = np.array([np.log(0.1 / 0.9), np.nan])  # the gender-and-age network: 0.1, or no dlib features
    reported = male_probabilities(attribute_logits, face_logits, 2.0, dlib_logits, 1.0)[REPORTED_MALE]
    assert np.allclose(reported, [0.1, 0.8])
    sharper = male_probabilities(attribute_logits, face_logits, 2.0, dlib_logits, 0.5)[REPORTED_MALE]  # its temperature
    assert sharper[0] == pytest.approx(1 / (1 + 9**2)) and sharper[1] == pytest.approx(0.8)
