"""The gender-and-age network on dlib's features: dlib's blocks copied exactly, its cache of
features, its training on a synthetic face set, its figures and how classify reports it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceflex.face.dlib_models import face_descriptor_net
from faceflex.models.face_descriptor_net import GenderAgeConfig, GenderAgeNet, stage_shape
from faceflex.models.labels import ATTRIBUTES
from faceflex.train.face_sets import LabelledSet, seeded_split


def test_it_starts_as_dlibs_top_blocks_and_reads_the_stage_dlib_features_give(demo_rgb, demo_faces):
    from faceflex.face.identity import dlib_features, face_chip

    net = face_descriptor_net()
    model = GenderAgeNet.from_descriptor_net(net).eval()
    tap = model.config.tap
    descriptors, stages = dlib_features([demo_rgb], [demo_faces[0].landmarks], tap)
    assert stages.shape == (1, *stage_shape(tap)) == (1, 64, 17, 17) and stages.dtype == np.float32
    assert dlib_features([demo_rgb], [demo_faces[0].landmarks], 9)[1].shape == (1, *stage_shape(9)) == (1, 128, 8, 8)
    chip = torch.from_numpy(face_chip(demo_rgb, demo_faces[0].landmarks)).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        (tapped,), descriptor = net.features(chip, taps=(tap,))
        top = model.blocks(torch.from_numpy(stages)).mean(dim=(2, 3))  # dlib's blocks from the tap on, copied
        outputs = model(torch.from_numpy(stages))
        projected = net.project(top)
    assert np.allclose(tapped.numpy(), stages, atol=1e-4) and np.allclose(descriptor.numpy(), descriptors, atol=1e-5)
    assert np.allclose(projected.numpy(), descriptors, atol=1e-4)
    assert outputs["male"].shape == (1,) and outputs["age"].shape == (1, GenderAgeConfig().age_max + 1)


def test_the_feature_cache_holds_each_chip_and_its_mirror_image_and_nan_without_landmarks(demo_rgb, demo_faces, tmp_path):
    from faceflex.face.align import align_face
    from faceflex.face.identity import face_chip
    from faceflex.train.face_sets import cached_dlib_stages

    face = align_face(demo_rgb, demo_faces[0].landmarks)
    faces = np.stack([face.image, face.image])
    landmarks = np.stack([face.landmarks, np.full((68, 2), np.nan)])
    stages = cached_dlib_stages(faces, landmarks, tmp_path / "s.npy", 9)
    assert stages.shape == (2, 2, 128, 8, 8) and stages.dtype == np.float16 and np.isnan(stages[1]).all()
    chip = torch.from_numpy(face_chip(face.image, face.landmarks)).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        (mirrored,), _ = face_descriptor_net().features(chip.flip(3), taps=(9,))
    assert np.allclose(stages[0, 1].astype(np.float32), mirrored[0].numpy(), atol=2e-2, rtol=1e-2)
    assert not np.allclose(stages[0, 0], stages[0, 1], atol=1e-2)
    np.save(tmp_path / "s.npy", np.zeros((2, 2, 128, 8, 8), np.float16))
    assert (cached_dlib_stages(faces, landmarks, tmp_path / "s.npy", 9) == 0).all()  # read from the cache, not recomputed


def synthetic_faces(n: int = 240) -> tuple[LabelledSet, np.ndarray]:
    """A face set whose dlib features (block 9's shape) carry gender in channel 0 and age in channel 1: half
    CelebA-HQ-like rows (Male, no age), half UTKFace-like (Male and age, races 0-4)."""
    rng = np.random.default_rng(0)
    male = rng.integers(0, 2, n)
    years = rng.uniform(1, 80, n).astype(np.float32)
    stages = rng.normal(0, 0.3, (n, 2, 128, 8, 8)).astype(np.float16)
    stages[:, :, 0] += np.where(male, 1.0, -1.0)[:, None, None, None].astype(np.float16)
    stages[:, :, 1] += (years / 40.0)[:, None, None, None].astype(np.float16)
    stages = np.maximum(stages, 0)  # dlib's features follow a ReLU
    utk = np.arange(n) >= n // 2
    attributes = np.full((n, len(ATTRIBUTES)), np.nan, np.float32)
    attributes[:, ATTRIBUTES.index("Male")] = male
    targets = {
        "attributes": attributes,
        "age": np.where(utk, years, np.nan).astype(np.float32),
        "race": np.where(utk, np.arange(n) % 5, -1),
        "source": utk.astype(np.int64),
    }
    stages[7] = np.nan  # a face dlib found no landmarks on
    return LabelledSet(np.zeros((n, 64, 64, 3), np.uint8), targets, seeded_split(n, 0)), stages


def test_training_learns_gender_and_age_and_the_export_carries_a_temperature(tmp_path):
    from faceflex.inference.classifiers import load_gender_age_model
    from faceflex.train.gender_age_trainer import GenderAgeSettings, GenderAgeTrainer, gender_age_metrics, gender_age_outputs, known_rows

    data, stages = synthetic_faces()
    settings = GenderAgeSettings(epochs=8, batch_size=32, lr=3e-3, from_block=10)
    trainer = GenderAgeTrainer(data, stages, face_descriptor_net(), settings, tmp_path, torch.device("cpu"))
    assert 7 not in trainer.train_rows and 7 not in known_rows(data, stages, "test")
    trainer.run()
    after = gender_age_metrics(*trainer.part("test"))
    assert after["gender"]["utkface"] >= 0.9 and after["gender"]["celeba_hq"] >= 0.9
    train_ages, test_ages = (data.targets["age"][known_rows(data, stages, part)] for part in ("train", "test"))
    guess = np.nanmean(np.abs(test_ages - np.nanmean(train_ages)))  # always the training faces' mean age
    assert after["age_mae"] < 0.7 * guess
    model, meta = load_gender_age_model(tmp_path / "gender_age.pt")
    assert 0.05 <= meta["temperatures"]["male"] <= 20 and len(trainer.history) == 8
    rows = known_rows(data, stages, "test")
    exported = gender_age_outputs(model, stages, rows, torch.device("cpu"))["male"]
    assert np.allclose(exported, gender_age_outputs(trainer.model, stages, rows, torch.device("cpu"))["male"], atol=0.05)


def test_figures_per_source_age_band_race_and_calibration_on_a_tiny_set():
    from faceflex.train.gender_age_trainer import gender_age_metrics

    male = np.array([1, 0, 1, 0, 1, 0], np.float32)
    attributes = np.full((6, len(ATTRIBUTES)), np.nan, np.float32)
    attributes[:, ATTRIBUTES.index("Male")] = male
    targets = {
        "attributes": attributes,
        "age": np.array([np.nan, np.nan, 10, 30, 50, 70], np.float32),
        "race": np.array([-1, -1, 0, 1, 2, 2]),
        "source": np.array([0, 0, 1, 1, 1, 1]),
    }
    male_logits = np.array([3.0, -3.0, -3.0, -3.0, 3.0, 3.0])  # wrong on the 10-year-old and the 70-year-old
    age_logits = np.full((6, 101), -50.0)
    age_logits[np.arange(6), [0, 0, 12, 30, 50, 60]] = 0.0  # 2 years off at 10, 10 off at 70
    report = gender_age_metrics({"male": male_logits, "age": age_logits}, targets, temperature=2.0)
    assert report["gender"]["celeba_hq"] == 1.0 and report["gender"]["utkface"] == 0.5
    assert report["gender"]["utkface_by_age"] == {"<20": 0.0, "20-40": 1.0, "40-60": 1.0, "60+": 0.0}
    assert report["gender"]["utkface_by_race"]["Asian"] == 0.5 and report["gender"]["utkface_by_race"]["White"] == 0.0
    assert report["age_mae"] == pytest.approx(3.0, abs=1e-3) and report["age_mae_by_band"]["60+"] == pytest.approx(10.0, abs=1e-3)
    assert report["count"] == {"celeba_hq": 2, "utkface": 4} and "gender_ece_calibrated" in report
