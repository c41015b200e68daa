"""`faceflex mask`: template anchors on the landmarks, the homography, compositing, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceflex.cli import cli
from faceflex.face.blend import paste_over
from faceflex.face.mask_overlay import anchor_points, apply_homography, fit_homography, load_mask_templates, render_mask, styled
from faceflex.pipeline.flow import run_step
from faceflex.steps.mask import MaskSettings, MaskStep


def test_homography_recovers_a_known_projective_map_from_six_points():
    truth = np.array([[1.2, 0.1, 30.0], [-0.05, 0.9, 12.0], [4e-4, -2e-4, 1.0]])
    source = np.array([[0, 0], [300, 10], [600, 0], [20, 300], [300, 470], [600, 320]], float)
    estimated = fit_homography(source, apply_homography(truth, source))
    np.testing.assert_allclose(estimated, truth, rtol=1e-6, atol=1e-8)


def test_anchors_sit_on_the_lower_face_of_the_demo_face(demo_faces):
    lm = demo_faces[0].landmarks
    a, b, c, d, e, f = anchor_points(lm)
    eye_line = lm[36:48, 1].mean()
    assert eye_line < b[1] < lm[33, 1]  # nose bridge: below the eyes, above the nostrils
    assert np.allclose(e, lm[8])  # chin
    assert a[0] < b[0] < c[0] and d[0] < e[0] < f[0]  # left to right
    assert b[1] < d[1] < e[1] and b[1] < f[1] < e[1]  # lip height between bridge and chin
    for point in (a, c, d, f):  # on the jaw line: within 2 % of the face width of a jaw landmark's segment
        assert np.min(np.linalg.norm(lm[:17] - point, axis=1)) < 0.15 * (lm[16, 0] - lm[0, 0])


def test_the_warped_template_lands_its_anchors_on_the_targets():
    template = load_mask_templates().template("surgical")
    targets = np.array([[40.0, 60.0], [70.0, 52.0], [100.0, 60.0], [44.0, 95.0], [70.0, 118.0], [96.0, 95.0]])
    patch, (x0, y0) = render_mask(template.rgba, template.anchors, targets, (160, 160))
    alpha = np.zeros((160, 160))
    alpha[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch[..., 3]
    assert alpha[int(targets[:, 1].mean()), 70] == 255  # the middle of the face is covered
    assert alpha[20, :].max() == 0 and alpha[:, :20].max() == 0  # nothing above the nose or far left
    assert alpha[60:100, 40:100].mean() > 200


def test_paste_over_changes_nothing_where_the_patch_is_transparent(demo_rgb):
    patch = np.zeros((50, 60, 4), np.uint8)
    patch[10:20, 10:20] = [255, 0, 0, 255]
    out = paste_over(demo_rgb, patch, (100, 80))
    changed = np.any(out != demo_rgb, axis=2)
    assert changed[90:100, 110:120].all() and changed.sum() == 100
    with pytest.raises(ValueError, match="does not fit"):
        paste_over(demo_rgb, patch, (demo_rgb.shape[1] - 10, 0))


def test_recolouring_keeps_the_shading_and_the_alpha():
    template = load_mask_templates().template("surgical")
    navy = styled(template, color=(0, 0, 128))
    assert np.array_equal(navy[..., 3], template.rgba[..., 3])
    inside = template.rgba[..., 3] == 255
    assert navy[..., 2][inside].mean() > 60 and navy[..., 0][inside].max() == 0
    assert np.std(navy[..., 2][inside]) > 2  # folds stay visible


def test_mask_step_covers_the_lower_face_of_both_faces_and_nothing_else(demo_rgb):
    side = np.concatenate([demo_rgb, demo_rgb], axis=1)
    result = run_step(side, MaskStep(MaskSettings("surgical_blue")))
    assert len(result.records) == 2
    assert all(0.45 < r["coverage"] < 0.9 and r["template"].startswith("surgical_blue") for r in result.records)
    ((_, image),) = list(result.images())
    changed = np.any(image != side, axis=2)
    for face in result.faces:
        lm = face.landmarks
        assert changed[int(lm[57, 1]), int(lm[57, 0])]  # the lower lip is covered
        assert not changed[int(lm[37, 1]), int(lm[37, 0])]  # the eyes are not
    near = np.zeros_like(changed)
    for face in result.faces:  # every changed pixel lies near a face (its box grown by half its width)
        x0, y0, x1, y1 = face.box
        grow = 0.5 * (x1 - x0)
        near[max(int(y0 - grow), 0) : int(y1 + grow), max(int(x0 - grow), 0) : int(x1 + grow)] = True
    assert changed.sum() > 1000 and not (changed & ~near).any()


def test_random_masks_follow_the_seed(demo_rgb):
    first = run_step(demo_rgb, MaskStep(MaskSettings("random", texture="random", seed=5))).records
    again = run_step(demo_rgb, MaskStep(MaskSettings("random", texture="random", seed=5))).records
    assert first == again
    others = {run_step(demo_rgb, MaskStep(MaskSettings("random", texture="random", seed=s))).records[0]["texture"] for s in range(6)}
    assert len(others) > 1


def test_mask_command_writes_outputs_keeps_alpha_and_reports_bad_inputs(tmp_path, demo_rgb):
    alpha = np.full(demo_rgb.shape[:2], 200, np.uint8)
    Image.fromarray(np.dstack([demo_rgb, alpha]), "RGBA").save(tmp_path / "hopper.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["-q", "mask", str(tmp_path / "hopper.png"), str(tmp_path / "broken.jpg"), "--color", "navy", "-o", str(out)]
    )
    assert result.exit_code == 1, result.output
    written = Image.open(out / "hopper.masked.png")
    assert written.mode == "RGBA" and np.all(np.asarray(written)[..., 3] == 200)
    records = {Path(r["file"]).name: r for r in json.loads((out / "mask.json").read_text())["inputs"]}
    assert records["hopper.png"]["faces"][0]["color"] == "navy" and records["broken.jpg"]["status"] == "failed"
    bad = CliRunner().invoke(cli, ["mask", "--color", "notacolour", "-o", str(out)])
    assert bad.exit_code == 2 and "colour" in bad.output


def test_the_python_api_masks_every_face_as_the_command_does(demo_rgb):
    import faceflex

    side = np.concatenate([demo_rgb, demo_rgb], axis=1)
    result = faceflex.mask_photo(side, "cloth", color="#1f4e79")
    assert len(result.faces) == 2 and result.image.shape == side.shape
    step = run_step(side, MaskStep(MaskSettings("cloth", "#1f4e79")))
    ((_, image),) = list(step.images())
    assert np.array_equal(result.image, image)


def test_the_masked_face_detector_finds_a_masked_face_that_dlibs_hog_misses(demo_rgb, demo_faces):
    import faceflex
    from faceflex.face.detect import DetectSettings, detect_faces

    masked = faceflex.mask_photo(demo_rgb, "surgical").image
    assert detect_faces(masked, DetectSettings(detector="hog")) == []
    (found,) = detect_faces(masked, DetectSettings(detector="hog+masked"))
    eyes, true_eyes = found.landmarks[36:48], demo_faces[0].landmarks[36:48]
    width = demo_faces[0].box[2] - demo_faces[0].box[0]
    assert np.abs(eyes - true_eyes).max() < 0.06 * width  # the eyes (what alignment uses) are where they were


def test_the_upper_face_detector_boxes_the_whole_face_under_a_mask(demo_rgb):
    import faceflex
    from faceflex.face import dlib_models
    from faceflex.face.detect import _whole_face

    def grey(rgb):
        return np.asarray(Image.fromarray(rgb).convert("L"))

    (bare,) = dlib_models.hog_detector()(grey(demo_rgb), 0)
    for kind in ("surgical", "cloth", "gas"):
        masked = grey(faceflex.mask_photo(demo_rgb, kind).image)
        assert len(dlib_models.hog_detector()(masked, 0)) == 0
        (upper,), _, _ = dlib_models.upper_face_detector().run(masked, 0, -0.2)  # unmask's threshold
        face = _whole_face(upper)  # extended from its upper half to the box dlib's HOG gives the bare face
        shared = face.intersect(bare).area()
        assert shared / (face.area() + bare.area() - shared) > 0.6, kind


def test_every_mask_type_the_command_offers_is_accepted_in_any_case(tmp_path):
    from faceflex.choices import MASK_TYPES
    from faceflex.config import SCHEMA

    for kind in MASK_TYPES:  # the upper-case templates (N95, KN95) were refused by the config check
        assert SCHEMA["mask.type"]("mask.type", kind.lower()) == kind
    result = CliRunner().invoke(cli, ["-q", "mask", "--type", "N95", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "mask.json").read_text())["inputs"][0]["faces"][0]["type"] == "N95"
