"""Attribute vectors and the edit core on a small untrained VAE: exactness, determinism, all faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceflex.inference.attribute_vectors import AttributeVectors, UnknownAttribute, VectorsError, orthogonalize, vectors_from_file
from faceflex.inference.vae_codec import VAE
from faceflex.models.face_vae import FaceVAE, VAEConfig
from faceflex.pipeline.flow import run_step
from faceflex.steps.edit import EditSettings, EditStep, auto_region, parse_range, strength_name
from faceflex.train.attribute_vectors import compute_vectors


@pytest.fixture(scope="module")
def small_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(FaceVAE(VAEConfig(latent=16, channels=(8, 8, 16, 16, 16))), torch.device("cpu"))


def test_parse_range_includes_end_and_avoids_float_drift():
    assert parse_range(0, 5, 1) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert parse_range(0, 1, 0.1)[3] == 0.3 and parse_range(0, 1, 0.1)[-1] == 1.0
    assert parse_range(0, -3, -1.5) == [0.0, -1.5, -3.0]
    assert parse_range(0, 5, 2) == [0.0, 2.0, 4.0]  # 5 is not reached
    assert [strength_name(v) for v in parse_range(-0.2, 0.2, 0.1)] == ["-0.2", "-0.1", "0.0", "0.1", "0.2"]
    for bad in [(0, 5, 0), (0, 5, -1), (0, float("nan"), 1), (0, 1e6, 1), (0, 1e30, 1e29), (0, 20.5, 0.5), (0, 10, 0.001)]:
        with pytest.raises(ValueError):
            parse_range(*bad)


def test_auto_regions():
    assert auto_region("Smiling") == "mouth" and auto_region("mustache") == "upper-lip"
    assert auto_region("Eyeglasses") == "eyes" and auto_region("Young") == "face"


def test_vectors_are_disjoint_means_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(400, 8))
    labels = np.where(rng.random((400, 2)) < 0.5, 1, -1)
    latents[labels[:, 0] > 0, 0] += 3.0  # attribute A moves dimension 0
    vectors = compute_vectors(latents, labels, ["A", "B"], versions=4, samples_per_version=30, seed=1)
    assert vectors.vectors.shape == (2, 4, 8) and list(vectors.samples) == [30, 30]
    assert np.all(vectors.vectors[0, :, 0] > 2.0)  # every version finds the shift
    again = compute_vectors(latents, labels, ["A", "B"], versions=4, samples_per_version=30, seed=1)
    assert np.array_equal(vectors.vectors, again.vectors)
    loaded = vectors_from_file(vectors.save(tmp_path / "v.npz"))
    assert loaded.names == ["A", "B"] and np.allclose(loaded.vectors, vectors.vectors, atol=1e-2)
    assert loaded.resolve("a") == "A"
    with pytest.raises(UnknownAttribute, match="valid attributes: A, B"):
        loaded.direction("Smiling")
    free = loaded.direction("A", orthogonal_to=["B"])
    assert abs(float(free @ loaded.direction("B"))) < 1e-3 * np.linalg.norm(free) * np.linalg.norm(loaded.direction("B"))
    with pytest.raises(ValueError):
        loaded.direction("A", versions=[7])


def test_rare_attributes_get_smaller_disjoint_samples():
    labels = -np.ones((100, 1), int)
    labels[:8, 0] = 1
    vectors = compute_vectors(np.zeros((100, 4)), labels, ["Rare"], versions=4, samples_per_version=50)
    assert vectors.samples[0] == 2


def test_orthogonalize_removes_the_span():
    others = np.array([[1.0, 0, 0], [1.0, 1.0, 0]])
    assert np.allclose(orthogonalize(np.array([3.0, 4.0, 5.0]), others), [0, 0, 5.0])


def ones_vectors(latent: int = 16, versions: int = 2) -> AttributeVectors:
    return AttributeVectors(["Smiling", "Young"], np.ones((2, versions, latent), np.float32), np.array([10, 10]), {})


def edited(photo, faces_setting, vae, strengths, mode="residual", versions=None):
    step = EditStep(EditSettings("Smiling", tuple(strengths), versions, mode, "face"), vae, ones_vectors())
    result = run_step(photo, step, faces=faces_setting)
    return result, [image for _, image in result.images()]


def test_residual_strength_zero_returns_the_photo_exactly_and_a_face_wide_change_leaves_the_eyes(demo_rgb, demo_faces, small_vae):
    result, images = edited(demo_rgb, "all", small_vae, [0.0, 2.0])
    assert np.array_equal(images[0], demo_rgb)
    assert not np.array_equal(images[1], demo_rgb)
    changed = np.argwhere(np.any(images[1] != demo_rgb, axis=2))
    left, top, right, bottom = demo_faces[0].box
    assert changed[:, 1].min() > left - 0.5 * (right - left) and changed[:, 1].max() < right + 0.5 * (right - left)
    assert [v.info["strength"] for v in result.output.variants] == []  # the variants are consumed once, lazily
    for eye in (demo_faces[0].landmarks[36:42], demo_faces[0].landmarks[42:48]):  # a face-wide change leaves the eyes' colour
        x, y = np.round(eye.mean(axis=0)).astype(int)
        assert np.array_equal(images[1][y - 2 : y + 3, x - 2 : x + 3], demo_rgb[y - 2 : y + 3, x - 2 : x + 3])


def test_each_face_is_encoded_once_for_all_versions_and_strengths(demo_rgb, small_vae, monkeypatch):
    calls = []
    encode = small_vae.encode
    monkeypatch.setattr(small_vae, "encode", lambda images: calls.append(len(images)) or encode(images))
    _, images = edited(demo_rgb, "all", small_vae, [0.0, 1.0, 2.0], versions=(0, 1))
    assert len(images) == 6 and calls == [1]


def test_edits_are_deterministic_and_every_face_is_edited(demo_rgb, small_vae):
    side = np.concatenate([demo_rgb, demo_rgb], axis=1)  # two faces side by side
    first_result, first = edited(side, "all", small_vae, [3.0], mode="replace")
    assert len(first_result.crops) == 2
    _, second = edited(side, "all", small_vae, [3.0], mode="replace")
    assert np.array_equal(first[0], second[0])
    width = demo_rgb.shape[1]
    assert np.any(first[0][:, :width] != demo_rgb) and np.any(first[0][:, width:] != demo_rgb)
    largest_result, _ = edited(side, "largest", small_vae, [3.0], mode="replace")
    assert len(largest_result.crops) == 1


def test_vectors_made_for_other_weights_are_refused(small_vae):
    vectors = AttributeVectors(["Smiling"], np.ones((1, 1, 16), np.float32), np.array([1]), {"vae_fingerprint": "0123456789abcdef"})
    small_vae.fingerprint = "fedcba9876543210"
    try:
        with pytest.raises(VectorsError, match="made for VAE weights 0123456789abcdef"):
            EditStep(EditSettings("Smiling", (1.0,)), small_vae, vectors)
    finally:
        small_vae.fingerprint = None


def test_train_vectors_cli_on_a_tiny_cache(tmp_path):
    import json

    from click.testing import CliRunner

    from faceflex.cli import cli
    from faceflex.models.weights import save_weights

    rng = np.random.default_rng(0)
    n, names = 60, ["Smiling", "Male", "Young"]
    cache = tmp_path / "cache"
    cache.mkdir()
    np.save(cache / "faces.npy", rng.integers(0, 255, (n, 128, 128, 3), dtype=np.uint8))
    np.save(cache / "attributes.npy", np.where(rng.random((n, 3)) < 0.5, 1, -1).astype(np.int8))
    np.save(cache / "landmarks.npy", np.zeros((n, 68, 2), np.float32))
    np.save(cache / "ids.npy", np.concatenate([np.arange(1, n - 9), np.arange(28001, 28011)]))
    (cache / "meta.json").write_text(json.dumps({"attribute_names": names}))
    torch.manual_seed(0)
    model = FaceVAE(VAEConfig(latent=16, channels=(8, 8, 16, 16, 16)))
    save_weights(tmp_path / "vae.pt", model, model.config.to_dict(), {"epochs": 0})
    out = tmp_path / "vectors.npz"
    runner = CliRunner()
    args = [
        "train",
        "vectors",
        "--cache",
        str(cache),
        "--weights",
        str(tmp_path / "vae.pt"),
        "--version-count",
        "3",
        "--samples-per-version",
        "5",
    ]
    result = runner.invoke(cli, [*args, "--attributes", "smiling,YOUNG", "--orthogonal-to", "Male", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    vectors = vectors_from_file(out)
    assert vectors.names == ["Smiling", "Young"] and vectors.vectors.shape == (2, 3, 16)
    assert vectors.meta["orthogonal_to"] == ["Male"] and vectors.meta["faces"] == n - 10  # held-out ids unused
    from faceflex.models.weights import fingerprint

    assert vectors.vae_fingerprint == fingerprint(tmp_path / "vae.pt")
    bad = runner.invoke(cli, [*args, "--attributes", "Smilling", "--out", str(tmp_path / "x.npz")])
    assert bad.exit_code == 2 and "valid attributes: Smiling, Male, Young" in bad.stderr


@pytest.fixture(scope="module")
def random_vectors(tmp_path_factory):
    from faceflex.inference.attribute_vectors import AttributeVectors
    from faceflex.inference.vae_codec import load_vae

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("vectors") / "vectors.npz"
    size = load_vae(device="cpu").latent_size  # as long as the shipped VAE's latent
    vectors = rng.normal(0, 0.15, (3, 4, size)).astype(np.float32)
    return AttributeVectors(["Smiling", "Male", "Young"], vectors, np.array([50] * 3), {}).save(path)


def test_edit_cli_writes_images_sheet_and_manifest(tmp_path, random_vectors, demo_rgb):
    import json

    from click.testing import CliRunner

    from faceflex.cli import cli
    from faceflex.shipped import shipped

    if not shipped("vae.pt").is_file():
        pytest.skip("no shipped VAE weights")
    from PIL import Image

    photo = tmp_path / "hopper.png"
    Image.fromarray(demo_rgb).save(photo)
    out = tmp_path / "out"
    args = [
        "--seed",
        "3",
        "edit",
        "-q",
        "--vectors",
        str(random_vectors),
        "--attribute",
        "young",
        "--range",
        "-2",
        "2",
        "2",
        "--sample-size",
        "2",
        "--mode",
        "residual",  # auto picks prototype mode for Young, which uses no vectors
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(cli, [*args, "--plot-masks", str(photo)])
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((out / "edit.json").read_text())
    settings = manifest["settings"]
    assert settings["attribute"] == "Young" and settings["strengths"] == [-2.0, 0.0, 2.0] and len(settings["versions"]) == 2
    written = [o["path"] for o in manifest["inputs"][0]["outputs"] if "strength" in o]
    assert len(written) == 6 and all(Path(p).is_file() for p in written)
    v = settings["versions"][0]
    assert np.array_equal(np.asarray(Image.open(out / f"hopper.Young.v{v}.0.0.png")), demo_rgb)  # strength 0: the photo itself
    assert not np.array_equal(np.asarray(Image.open(out / f"hopper.Young.v{v}.2.0.png")), demo_rgb)
    assert (out / "hopper.Young.sheet.png").is_file() and (out / "hopper.face0.mask.png").is_file()
    CliRunner().invoke(cli, [*args[:-2], "-o", str(tmp_path / "again"), str(photo)])
    assert json.loads((tmp_path / "again" / "edit.json").read_text())["settings"]["versions"] == settings["versions"]  # seeded choice
    unknown = CliRunner().invoke(cli, ["edit", "--vectors", str(random_vectors), "--attribute", "Smilling"])
    assert unknown.exit_code == 2 and "valid attributes: Smiling, Male, Young" in unknown.stderr
    bad_range = CliRunner().invoke(cli, ["edit", "--vectors", str(random_vectors), "--range", "0", "5", "-1"])
    assert bad_range.exit_code == 2 and "never gets from" in bad_range.stderr


def test_evaluate_edits_reports_rates_for_each_mode(demo_rgb, demo_faces, small_vae):
    from faceflex.evaluation.edits import evaluate_edits
    from faceflex.face.align import align_face
    from faceflex.face.identity import dlib_features
    from faceflex.inference.attribute_vectors import AttributeVectors
    from faceflex.models.labels import ATTRIBUTES
    from faceflex.train.cache import CachedFaces

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    n = 6
    names = ["Smiling", "Male"]
    attributes = np.array([[-1, 1]] * 3 + [[1, -1]] * 3, np.int8)
    cache = CachedFaces(
        np.repeat(aligned.image[None], n, 0),
        attributes,
        np.repeat(aligned.landmarks[None].astype(np.float32), n, 0),
        np.arange(28001, 28001 + n),
        names,
    )
    read = []

    class Lacking:
        """A judge that reads every face as lacking every attribute (as classify would report it)."""

        def dlib_features(self, images, landmarks):
            return dlib_features(images, landmarks, 6)

        def reported_attributes(self, inputs: np.ndarray, stages: np.ndarray | None) -> np.ndarray:
            assert inputs.shape[1:] == (64, 64, 3) and (stages is None or stages.shape == (len(inputs), 64, 17, 17))
            read.append(stages is not None and bool(np.isfinite(stages).all()))
            return np.full((len(inputs), len(ATTRIBUTES)), 0.05)

    vectors = AttributeVectors(names, np.ones((2, 2, 16), np.float32), np.array([10, 10]), {})
    report = evaluate_edits(
        small_vae, vectors, Lacking(), cache, ["smiling", "male"], strengths=(0.0, 5.0), per_side=2, modes=("residual", "replace")
    )
    smiling = report["attributes"]["Smiling"]
    for mode in ("residual", "replace"):
        assert smiling[mode]["faces_lacking"] == 2 and smiling[mode]["faces_having"] == 0
        assert smiling[mode]["success"] == {"0.0": 0.0, "5.0": 0.0}  # the judge keeps every face below 0.5
    # strength 0 is the photo itself in every mode: the person is kept; the untrained decoder's
    # face pasted over the whole face (Male's region) is nobody
    male = report["attributes"]["Male"]
    assert all(report["attributes"][a][m]["identity_kept"]["0.0"] == 1.0 for a in ("Smiling", "Male") for m in ("residual", "replace"))
    assert male["replace"]["identity_kept"]["5.0"] == 0.0
    assert read[0] is False and all(read[1:])  # edited faces are read with their descriptors (the reported gender); Male's before too
    assert smiling["residual"]["leakage"]["Male"]["0.0"] == 0.0 and set(smiling["residual"]["leakage"]) == {
        "Male",
        "Young",
        "Eyeglasses",
        "No_Beard",
    }
