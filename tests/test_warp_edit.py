"""Geometry edits: the thin-plate warp, the latent -> landmarks regressor, and the warp/hybrid edit modes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from faceflex.cli import cli
from faceflex.face.blend import paste_warp
from faceflex.face.warp import ThinPlateSpline, anchor_ring, warp_points
from faceflex.shipped import shipped

needs_models = pytest.mark.skipif(
    not shipped("latent_landmarks.npz").is_file() or not shipped("vae.pt").is_file(), reason="no shipped weights"
)


def test_thin_plate_spline_passes_through_its_points_and_is_affine_without_bending():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 100, (12, 2))
    values = centres + rng.normal(0, 3, (12, 2))
    spline = ThinPlateSpline.fit(centres, values)
    assert np.allclose(spline(centres), values, atol=1e-6)
    affine = centres @ np.array([[1.1, 0.2], [-0.1, 0.9]]) + [3, -4]
    straight = ThinPlateSpline.fit(centres, affine)
    assert np.allclose(
        straight(np.array([[50.0, 50.0], [7.0, 93.0]])), np.array([[50.0, 50.0], [7.0, 93.0]]) @ [[1.1, 0.2], [-0.1, 0.9]] + [3, -4]
    )


def test_the_moves_between_grid_nodes_are_torchs_bicubic_interpolation():
    import torch
    import torch.nn.functional as F

    from faceflex.face.warp import _bicubic_rows

    nodes = torch.randn(2, 9, 7, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(nodes[None], size=(8 * 6 + 1, 6 * 6 + 1), mode="bicubic", align_corners=True)[0]
    assert torch.allclose(_bicubic_rows(9, 49) @ nodes @ _bicubic_rows(7, 37).T, expected, atol=1e-5)


def test_zero_displacement_is_the_identity_bit_for_bit(demo_rgb, demo_faces):
    landmarks = demo_faces[0].landmarks
    assert np.array_equal(paste_warp(demo_rgb, landmarks, landmarks), demo_rgb)
    box = (100, 100, 300, 300)
    same = warp_points(demo_rgb, landmarks, landmarks, anchor_ring(landmarks), box)
    assert np.abs(same - demo_rgb[100:300, 100:300]).max() < 0.01  # float error only: rounds back exactly
    assert np.array_equal(np.rint(same).astype(np.uint8), demo_rgb[100:300, 100:300])


def test_a_warp_moves_content_and_leaves_the_rest_bit_for_bit(demo_rgb, demo_faces):
    landmarks = demo_faces[0].landmarks
    moved = landmarks.copy()
    moved[48] += (-6, -6)  # the left mouth corner up and out
    moved[54] += (6, -6)
    out = paste_warp(demo_rgb, landmarks, moved)
    changed = np.argwhere(np.any(out != demo_rgb, axis=2))
    centre = (landmarks.min(0) + landmarks.max(0)) / 2
    radii = (landmarks.max(0) - landmarks.min(0)) / 2
    rho = np.sqrt((((changed[:, ::-1] - centre) / radii) ** 2).sum(1))
    assert len(changed) > 100 and rho.max() <= 1.31  # nothing beyond 1.3 x the landmarks' extent
    # the pixel that was at the corner now sits at the moved corner
    x, y = np.round(landmarks[48]).astype(int)
    tx, ty = np.round(moved[48]).astype(int)
    assert np.abs(out[ty, tx].astype(int) - demo_rgb[y, x].astype(int)).max() <= 20


@needs_models
def test_the_regressor_reads_landmarks_from_latents_as_dlib_sees_them_on_the_decode(demo_rgb, demo_faces):
    from faceflex.face.align import align_face
    from faceflex.face.detect import predict_landmarks
    from faceflex.inference.latent_landmarks import load_landmark_regressor
    from faceflex.inference.vae_codec import load_vae
    from faceflex.models.weights import fingerprint

    regressor, vae = load_landmark_regressor(), load_vae(device="cpu")
    assert regressor.meta["vae_fingerprint"] == fingerprint(shipped("vae.pt"))
    assert regressor.meta["held_out_error"]["iod"] < 0.035  # measured 0.0323 on 2,000 held-out faces (mean shape: 0.066)
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    latent = vae.encode(aligned.image)
    decoded = vae.decode(latent)[0]
    dlib_points = predict_landmarks(decoded, (*aligned.landmarks.min(0), *aligned.landmarks.max(0)))
    error = np.linalg.norm(regressor(latent)[0] - dlib_points, axis=1).mean() / np.linalg.norm(dlib_points[36] - dlib_points[45])
    assert error < 0.05  # measured 0.028
    smile = regressor.displacement(__import__("faceflex").load_vectors().direction("Smiling"))
    assert smile[48, 0] < -1.5 and smile[54, 0] > 1.5 and smile[48, 1] < -1.5 and smile[54, 1] < -1.5  # corners out and up


@needs_models
@pytest.mark.parametrize("mode", ["residual", "replace", "warp", "hybrid", "prototype"])
def test_strength_zero_is_the_photo_in_every_mode(tmp_path, demo_rgb, mode):
    photo = tmp_path / "hopper.png"
    Image.fromarray(demo_rgb).save(photo)
    out = tmp_path / "out"
    versions = [] if mode == "prototype" else ["--versions", "21"]  # prototype mode uses no vectors
    result = CliRunner().invoke(cli, ["-q", "edit", "--mode", mode, "--range", "0", "2", "2", *versions, "-o", str(out), str(photo)])
    assert result.exit_code == 0, result.output
    version = "mean" if mode == "prototype" else "v21"
    assert np.array_equal(np.asarray(Image.open(out / f"hopper.Smiling.{version}.0.0.png")), demo_rgb)
    assert not np.array_equal(np.asarray(Image.open(out / f"hopper.Smiling.{version}.2.0.png")), demo_rgb)
    outputs = json.loads((out / "edit.json").read_text())["inputs"][0]["outputs"]
    distances = {o["strength"]: o["identity_distance"] for o in outputs if "strength" in o}
    assert distances[0.0] == [0.0] and 0 < distances[2.0][0] < 2


@needs_models
def test_warp_edits_every_face_and_moves_the_mouth_corners_out_and_up(demo_rgb):
    from faceflex import EditSettings, EditStep, run_step
    from faceflex.face.detect import detect_faces

    side = np.concatenate([demo_rgb, demo_rgb], axis=1)
    step = EditStep(EditSettings("Smiling", (0.0, 2.0), (21,), "warp", identity=False))
    result = run_step(side, step)
    (_, before), (_, after) = list(result.images())
    assert np.array_equal(before, side)
    width = demo_rgb.shape[1]
    assert np.any(after[:, :width] != side[:, :width]) and np.any(after[:, width:] != side[:, width:])
    old, new = detect_faces(side), detect_faces(after)
    for a, b in zip(sorted(old, key=lambda f: f.box[0]), sorted(new, key=lambda f: f.box[0])):
        iod = np.linalg.norm(a.landmarks[45] - a.landmarks[36])
        width_gain = (np.linalg.norm(b.landmarks[54] - b.landmarks[48]) - np.linalg.norm(a.landmarks[54] - a.landmarks[48])) / iod
        lift = ((a.landmarks[48, 1] + a.landmarks[54, 1]) - (b.landmarks[48, 1] + b.landmarks[54, 1])) / 2 / iod
        assert width_gain > 0.05 and lift > 0.03  # measured by dlib on the edited photo


@needs_models
def test_edit_to_a_target_probability_reaches_it_and_never_over_edits(tmp_path, demo_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-q", "edit", "--to", "0.8", "--versions", "21", "-o", str(out), str(demo_path)])
    assert result.exit_code == 0, result.output
    (edited,) = [o for o in json.loads((out / "edit.json").read_text())["inputs"][0]["outputs"] if "target" in o]
    assert edited["product"] == "Smiling.v21.to0.8" and edited["strengths"][0] > 0
    assert 0.8 <= edited["probabilities"][0] < 0.85  # just past the target (measured 0.803 at strength 1.09)
    # she already wears glasses (p = 0.998): asked for 0.9, the photo is left as it is
    glasses = CliRunner().invoke(
        cli, ["-q", "edit", "-a", "Eyeglasses", "--to", "0.9", "--versions", "21", "-o", str(tmp_path / "g"), str(demo_path)]
    )
    assert glasses.exit_code == 0, glasses.output
    (kept,) = [o for o in json.loads((tmp_path / "g" / "edit.json").read_text())["inputs"][0]["outputs"] if "target" in o]
    assert kept["strengths"] == [0.0] and kept["identity_distance"] == [0.0]
    bad = CliRunner().invoke(cli, ["edit", "-a", "Big_Nose", "--to", "0.9", str(demo_path)])
    assert bad.exit_code == 2 and "--to needs an attribute the classifier reads" in bad.stderr


def test_harmonic_fill_reproduces_a_plane_from_its_border():
    from faceflex.face.blend import harmonic_fill

    ys, xs = np.mgrid[0:64, 0:64].astype(np.float32)
    plane = (0.5 * xs - 0.25 * ys + 3)[..., None]
    fixed = np.ones((64, 64), bool)
    fixed[8:56, 8:56] = False
    assert np.abs(harmonic_fill(plane, fixed) - plane).max() < 0.05


def test_a_seamless_change_is_zero_where_the_mask_ends_and_keeps_local_detail():
    from faceflex.face.blend import seamless_change
    from faceflex.face.masks import gaussian_blur

    ys, xs = np.mgrid[0:128, 0:128]
    mask = gaussian_blur(((xs - 64) ** 2 + (ys - 64) ** 2 < 40**2).astype(np.float32), 3)
    mask[mask < 1e-4] = 0
    tint = np.full((128, 128, 3), 30.0, np.float32)  # a uniform tone shift: the cause of halos
    bump = np.zeros((128, 128, 3), np.float32)
    bump[60:68, 60:68] = 40.0  # a local change (a shadow, a lip colour)
    change = seamless_change(tint + bump, mask)
    support = mask > 0
    edge = support & ~np.roll(support, 3, 0) | support & ~np.roll(support, -3, 0)
    assert np.abs(change[edge]).max() < 3.0  # no step where the mask ends (the tint alone would give 30)
    assert np.abs(change[40:50, 40:50]).max() < 3.0  # the uniform tint is gone
    assert change[62:66, 62:66].mean() > 30.0  # the local change stays


def test_by_default_edit_renders_the_mean_of_all_vector_versions(tmp_path, demo_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-q", "edit", "--range", "0", "1", "1", "-o", str(out), str(demo_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "edit.json").read_text())
    assert manifest["settings"]["versions"] == "mean of all"
    assert sorted(p.name for p in out.glob("*.Smiling.*.jpg")) == ["grace_hopper.Smiling.mean.0.0.jpg", "grace_hopper.Smiling.mean.1.0.jpg"]
