"""Head pose from landmarks, the illumination rule, and the classifier input crops."""

from __future__ import annotations

import numpy as np
import pytest

from faceflex.face.crops import EXPRESSION_SIZE, attribute_input, box_downsample, expression_input
from faceflex.face.illumination import measure_illumination
from faceflex.face.pose import Pose, estimate_pose, face_model, project, rotation_angles, rotation_matrix


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, 0, 0), (-25, 10, 5), (10, -20, -15), (45, 15, 20)])
def test_pose_recovers_known_rotations(angles):
    rotation = rotation_matrix(*angles)
    landmarks = project(face_model(), rotation, 120.0, np.array([400.0, 300.0]))
    pose = estimate_pose(landmarks)
    assert np.allclose((pose.yaw, pose.pitch, pose.roll), angles, atol=0.5)


def test_rotation_angles_round_trip():
    for angles in [(5, -7, 12), (-60, 30, -40)]:
        assert np.allclose(rotation_angles(rotation_matrix(*angles)), angles)


def test_pose_sign_conventions():
    model = face_model()
    turned = project(model, rotation_matrix(30, 0, 0), 100.0, np.zeros(2))
    assert turned[30, 0] > turned[[36, 45], 0].mean()  # yaw > 0: nose towards the image's right
    up = project(model, rotation_matrix(0, 20, 0), 100.0, np.zeros(2))
    frontal = project(model, np.eye(3), 100.0, np.zeros(2))
    assert up[30, 1] - up[8, 1] < frontal[30, 1] - frontal[8, 1]  # pitch > 0: nose rises against the chin


def test_pose_labels():
    assert Pose(5, -5, 30).label == "frontal"
    assert Pose(40, 10, 0).label == "right" and Pose(-40, 10, 0).label == "left"
    assert Pose(5, 30, 0).label == "up" and Pose(5, -30, 0).label == "down"


def test_demo_face_is_frontal(demo_faces):
    pose = estimate_pose(demo_faces[0].landmarks)
    assert pose.label == "frontal" and abs(pose.roll) < 10


def test_illumination_rule_on_darkened_and_brightened_copies(demo_rgb, demo_faces):
    landmarks = demo_faces[0].landmarks
    normal = measure_illumination(demo_rgb, landmarks)
    dark = measure_illumination((demo_rgb * 0.25).astype(np.uint8), landmarks)
    washed = measure_illumination(np.clip(demo_rgb.astype(int) * 3, 0, 255).astype(np.uint8), landmarks)
    assert dark.brightness < normal.brightness < washed.brightness
    assert dark.label == "bad" and washed.label == "bad"
    assert normal.label in ("medium", "high")
    lifted = measure_illumination(np.clip(demo_rgb.astype(int) + 60, 0, 255).astype(np.uint8), landmarks)
    assert lifted.label == "high"


def test_illumination_sees_side_light(demo_rgb, demo_faces):
    landmarks = demo_faces[0].landmarks
    shaded = demo_rgb.astype(float)
    nose_x = int(landmarks[27:31, 0].mean())
    shaded[:, :nose_x] *= 0.35
    assert measure_illumination(shaded.astype(np.uint8), landmarks).asymmetry > 0.35


def test_box_downsample_means_blocks():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    small = box_downsample(image, 2)
    assert small.shape == (2, 2, 3)
    assert small[0, 0, 0] == round(image[:2, :2, 0].mean())
    assert attribute_input(np.zeros((5, 128, 128, 3), np.uint8)).shape == (5, 64, 64, 3)


def test_expression_input_is_a_grey_face_crop(demo_rgb, demo_faces):
    crop = expression_input(demo_rgb, demo_faces[0].landmarks)
    assert crop.shape == (EXPRESSION_SIZE, EXPRESSION_SIZE) and crop.dtype == np.uint8
    assert 40 < crop.mean() < 220 and crop.std() > 20  # a face, not padding
