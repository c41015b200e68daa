"""Detection and landmarks on real photos: the demo face, rotated copies, a face-free image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceflex.face.align import align_face, template_landmarks
from faceflex.face.detect import DetectSettings, detect_faces, working_scale
from faceflex.io.images import load_image


def test_demo_face_is_found_once_with_landmarks_in_the_box(demo_faces):
    assert len(demo_faces) == 1
    face = demo_faces[0]
    assert face.score > 0.5
    left, top, right, bottom = face.box
    margin = 0.15 * face.size
    inside = (
        (face.landmarks[:, 0] >= left - margin)
        & (face.landmarks[:, 0] <= right + margin)
        & (face.landmarks[:, 1] >= top - margin)
        & (face.landmarks[:, 1] <= bottom + margin)
    )
    assert inside.all()
    assert face.landmarks.shape == (68, 2)


def test_demo_face_aligns_eyes_onto_the_template(demo_rgb, demo_faces):
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    for eye in (slice(36, 42), slice(42, 48)):
        np.testing.assert_allclose(aligned.landmarks[eye].mean(axis=0), template_landmarks()[eye].mean(axis=0), atol=2.5)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_copies_give_the_same_face(tmp_path, demo_rgb, demo_faces, orientation):
    """A copy stored sideways with an EXIF orientation tag is detected as the upright photo."""
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = Image.fromarray(demo_rgb).transpose(undo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"rot{orientation}.jpg"
    stored.save(path, exif=exif, quality=97)
    image = load_image(path)
    assert image.size == (demo_rgb.shape[1], demo_rgb.shape[0])
    faces = detect_faces(image.rgb)
    assert len(faces) == 1
    error = np.linalg.norm(faces[0].landmarks - demo_faces[0].landmarks, axis=1).mean()
    assert error < 3.0


def test_no_face_image_gives_no_faces():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:400]
    sky = np.stack([x * 0.3 + 80, y * 0.2 + 120, 200 + 0 * x], axis=2) + rng.normal(0, 3, (300, 400, 3))
    assert detect_faces(np.clip(sky, 0, 255).astype(np.uint8)) == []


def test_two_faces_side_by_side_are_both_found_largest_first(demo_rgb):
    small = np.full_like(demo_rgb[:, :300], 90)
    small[150:450] = np.asarray(Image.fromarray(demo_rgb).resize((300, 351)))[:300]
    canvas = np.concatenate([small, demo_rgb], axis=1)  # a small copy beside the photo
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].size > faces[1].size
    assert faces[0].box[0] > 300 > faces[1].box[2]


def test_min_face_and_threshold_filter(demo_rgb):
    assert detect_faces(demo_rgb, DetectSettings(min_face=1000)) == []
    assert detect_faces(demo_rgb, DetectSettings(threshold=5.0)) == []


def test_small_faces_are_found_thanks_to_the_working_scale(demo_rgb):
    """A ~45 px face in a small photo: found by the rule, missed without enlarging."""
    tiny = np.asarray(Image.fromarray(demo_rgb).resize((150, 128), Image.Resampling.LANCZOS))
    canvas = np.full((300, 400, 3), 128, dtype=np.uint8)
    canvas[80:208, 120:270] = tiny
    assert len(detect_faces(canvas)) == 1
    assert detect_faces(canvas, DetectSettings(max_upscale=1.0)) == []


def test_working_scale_rule():
    s = DetectSettings()
    assert working_scale(500, 375, s) == 2.0  # small photos: enlarged 2x, faces from ~40 px
    assert working_scale(800, 600, s) == pytest.approx(1024 / 800)
    assert working_scale(1024, 768, s) == pytest.approx(800 / 1024)  # large: shrunk to max_side
    assert working_scale(4000, 3000, s) == pytest.approx(0.2)
    assert working_scale(2000, 100, DetectSettings(max_side=4000)) == 1.0


def test_cnn_detector_finds_the_demo_face(demo_rgb):
    faces = detect_faces(demo_rgb, DetectSettings(detector="cnn", max_side=400, upscale_side=400))
    assert len(faces) == 1 and faces[0].score > 0.5


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="detector"):
        DetectSettings(detector="haar")
    with pytest.raises(ValueError):
        DetectSettings(upsample=9)
