"""Anonymizing: the generator never sees the face, seeds fix identities, videos keep one identity
per face, blur and pixelate change the face alone, and the batch behaves as every command's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from faceflex.cli import cli
from faceflex.face.align import align_face, template_landmarks
from faceflex.face.blend import paste_over
from faceflex.face.masks import region_mask, skin_mask
from faceflex.face.obscure import obscure_patch
from faceflex.face.sketch import SKETCH_CHANNELS, anonymizer_input, expression_landmarks, landmark_sketch, region_hole
from faceflex.face.tracking import FaceTracker, box_iou
from faceflex.inference.anonymizing import Anonymizer, load_anonymizer
from faceflex.inference.face_painting import IdentityPrior
from faceflex.models.face_unet import FaceUNet, FaceUNetConfig
from faceflex.train.anonymizer_trainer import CODE_SIZE, IN_CHANNELS, AnonymizerSettings, AnonymizerTrainer, warm_start
from faceflex.train.cache import CachedFaces

TINY = FaceUNetConfig(channels=(8, 8, 16, 16, 16), bottleneck_blocks=1, in_channels=IN_CHANNELS, mask_head=False, code_size=CODE_SIZE)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_generator_input_holds_nothing_of_the_face_inside_the_hole(demo_rgb, demo_faces):
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    x = anonymizer_input(aligned.image, aligned.landmarks)
    assert x.shape == (IN_CHANNELS, 128, 128) and x.dtype == np.float32
    hole = region_hole(aligned.landmarks) > 0
    other = aligned.image.copy()
    other[hole] = 255 - other[hole]  # a different face in the hole, the same surroundings
    assert np.array_equal(anonymizer_input(other, aligned.landmarks), x)
    assert hole[int(aligned.landmarks[30, 1]), int(aligned.landmarks[30, 0])] and not hole[2, 2]  # nose tip in, corner out
    sketch = landmark_sketch(aligned.landmarks)
    assert sketch.shape == (SKETCH_CHANNELS, 128, 128) and sketch.max() > 0.9
    mouth = sketch[4]  # outer lips: drawn where the lips are and nowhere near the eyes
    assert mouth[int(aligned.landmarks[48, 1]) - 2 : int(aligned.landmarks[48, 1]) + 3, int(aligned.landmarks[48, 0])].max() > 0.3
    assert mouth[: int(aligned.landmarks[30, 1])].max() == 0


def test_normalised_shape_takes_the_average_proportions_and_keeps_the_expression(demo_rgb, demo_faces):
    points = align_face(demo_rgb, demo_faces[0].landmarks).landmarks.astype(np.float64)
    smile = points.copy()
    smile[[48, 54]] += [[-3, -2], [3, -2]]  # wider, raised mouth corners
    smile[[61, 62, 63]] -= [0, 2]  # and an open mouth
    template = template_landmarks()
    assert np.array_equal(expression_landmarks(smile, template, 0.0), smile)
    out = expression_landmarks(smile, template, 1.0)
    for eye in (slice(36, 42), slice(42, 48)):
        assert np.allclose(out[eye].mean(axis=0), template[eye].mean(axis=0))
        assert np.allclose(out[eye] - out[eye].mean(axis=0), smile[eye] - smile[eye].mean(axis=0))  # as open as it was
    assert np.allclose(out[17:22] - out[36:42].mean(axis=0), smile[17:22] - smile[36:42].mean(axis=0))  # brow height over the eye
    assert np.allclose(out[48:68] - out[48:68].mean(axis=0), smile[48:68] - smile[48:68].mean(axis=0))  # the smile itself
    assert np.allclose(out[[50, 51, 52]].mean(axis=0), template[[50, 51, 52]].mean(axis=0))
    assert np.allclose(out[27:36].mean(axis=0), template[27:36].mean(axis=0)) and np.array_equal(out[:17], smile[:17])


def test_the_identity_prior_samples_the_training_descriptors_gaussian():
    rng = np.random.default_rng(0)
    descriptors = rng.normal(0.1, 0.05, (4000, 128)) + np.outer(rng.normal(0, 0.03, 4000), np.ones(128))
    prior = IdentityPrior.fit(descriptors)
    codes = prior.sample(np.random.default_rng(1), 4000)
    assert np.allclose(np.cov(codes, rowvar=False), np.cov(prior.code(descriptors), rowvar=False), atol=0.15)
    assert np.array_equal(prior.sample(np.random.default_rng(5), 2), prior.sample(np.random.default_rng(5), 2))
    assert np.array_equal(prior.code(np.full((1, 128), np.nan)), np.zeros((1, 128), np.float32))
    again = IdentityPrior.from_dict(prior.to_dict())
    assert np.array_equal(again.cholesky, prior.cholesky)


def test_identities_are_drawn_reproducibly_per_seed_and_face():
    anonymizer = tiny_anonymizer()
    drawn = anonymizer.identities(5, 0)
    assert drawn.shape == (8, 128) and np.array_equal(drawn, anonymizer.identities(5, 0))
    assert np.array_equal(anonymizer.identities(5, 0, 3), drawn[:3])  # the first tried do not depend on how many
    assert not np.array_equal(anonymizer.identities(5, 1)[0], drawn[0]) and not np.array_equal(anonymizer.identities(6, 0)[0], drawn[0])


def test_identities_are_tried_until_dlib_tells_the_painting_from_the_person(monkeypatch):
    """Face 0's first painting is still the person (distance 0.3), its second is not (0.9); face 1 is
    someone else at once; face 2 never gets there and keeps its farthest try; face 3 has one code.
    The network is scripted: it writes the number of the code it painted with into the hole."""
    import faceflex.inference.anonymizing as anonymizing

    anonymizer = tiny_anonymizer()
    faces, landmarks = np.zeros((4, 128, 128, 3), np.uint8), np.zeros((4, 68, 2))
    candidates = [anonymizer.identities(0, key, 3) for key in range(3)] + [anonymizer.identities(0, 3, 1)]
    number = {code.tobytes(): n for n, code in enumerate(np.concatenate(candidates), start=1)}
    distance = {1: 0.3, 2: 0.9, 4: 0.7, 7: 0.2, 8: 0.5, 9: 0.4, 10: 0.1}
    painted_with = []

    def scripted_paint(images, marks, codes, normalise_shape=0.0, keep_tone=True):
        painted = np.array(images)
        painted[:, :64] = np.array([number[code.tobytes()] for code in codes], np.uint8)[:, None, None, None]
        painted_with.append(sorted(number[code.tobytes()] for code in codes))
        return painted, np.repeat((np.arange(128) < 64)[None, :, None], len(images), axis=0).repeat(128, axis=2).astype(np.float32)

    def scripted_descriptors(images, marks):
        assert 10 not in [int(image[0, 0, 0]) for image in images] and len(images) < 4
        return np.stack([np.eye(128)[0] * distance.get(int(image[0, 0, 0]), 0.0) for image in images])

    monkeypatch.setattr(anonymizer, "paint", scripted_paint)
    monkeypatch.setattr(anonymizing, "face_descriptors", scripted_descriptors)
    painted, holes, codes, distances = anonymizer.paint_new_people(faces, landmarks, candidates)
    assert np.allclose(distances, [0.9, 0.7, 0.5, np.nan], equal_nan=True)  # a single code is not checked
    assert [number[c.tobytes()] for c in codes] == [2, 4, 8, 10] == [int(p[0, 0, 0]) for p in painted]
    assert painted_with == [[1, 4, 7, 10], [2, 8], [9]]  # every face once, then faces 0 and 2, then face 2 alone
    assert np.array_equal(painted[holes == 0], faces[holes == 0]) and holes.sum() == 4 * 64 * 128


def test_a_warm_start_from_the_unmasking_network_begins_where_it_was():
    torch.manual_seed(0)
    unmasking = FaceUNet(FaceUNetConfig(channels=(8, 8, 16, 16, 16), bottleneck_blocks=1)).eval()
    anonymizer = FaceUNet(TINY).eval()
    copied = warm_start(anonymizer, unmasking.state_dict())
    assert copied == len(unmasking.state_dict()) - 2  # all but the mask head's weight and bias
    x = torch.rand(2, 3, 128, 128)
    guides = torch.cat([x, torch.rand(2, IN_CHANNELS - 3, 128, 128)], dim=1)
    with torch.no_grad():
        expected = unmasking(x)[1]
        got = anonymizer(guides, torch.randn(2, CODE_SIZE))[1]
    assert torch.allclose(got, expected, atol=1e-5)  # extra channels and the code start with no effect


def test_face_tracks_follow_overlapping_boxes_and_start_new_ones():
    tracker = FaceTracker(patience=2)
    assert tracker.assign([(0, 0, 10, 10), (50, 50, 60, 60)]) == [0, 1]
    assert tracker.assign([(52, 50, 62, 60), (1, 0, 11, 10)]) == [1, 0]  # order of detection does not matter
    assert tracker.assign([(200, 200, 210, 210)]) == [2]
    assert tracker.assign([(1, 1, 11, 11)]) == [0]  # seen again within the patience
    for _ in range(3):
        tracker.assign([])
    assert tracker.assign([(1, 1, 11, 11)]) == [3]  # forgotten after it
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


@pytest.mark.parametrize("method", ["blur", "pixelate"])
def test_blur_and_pixelate_change_the_face_and_nothing_else(demo_rgb, demo_faces, method):
    landmarks = demo_faces[0].landmarks
    patch, (x0, y0) = obscure_patch(demo_rgb, landmarks, method)
    out = paste_over(demo_rgb, patch, (x0, y0))
    changed = np.any(out != demo_rgb, axis=2)
    outside = np.ones(changed.shape, bool)
    outside[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch[..., 3] == 0
    assert not changed[outside].any()
    face = region_mask(landmarks, "face", (demo_rgb.shape[1], demo_rgb.shape[0]), feather=0.0) > 0.5
    assert changed[face].mean() > 0.9  # the face itself is changed almost everywhere
    nose = (int(landmarks[30, 1]), int(landmarks[30, 0]))
    assert np.abs(out[nose].astype(int) - demo_rgb[nose].astype(int)).sum() > 0


def tiny_anonymizer() -> Anonymizer:
    torch.manual_seed(0)
    model = FaceUNet(TINY)
    for layer in model.film:  # so that the identity code matters in an untrained network
        torch.nn.init.normal_(layer.weight, std=3.0)
    prior = IdentityPrior.fit(np.random.default_rng(0).normal(size=(500, 128)))
    return Anonymizer(model, prior, torch.device("cpu"))


def test_keeping_the_tone_takes_the_originals_coarse_colour_and_keeps_the_paintings_light_and_detail(demo_rgb, demo_faces):
    from faceflex.face.blend import kept_tone
    from faceflex.face.texture import chroma, luminance, smooth

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    original = aligned.image
    hole = region_hole(aligned.landmarks) > 0
    painted = original.astype(np.int16)
    painted[hole] += np.array([-25, 30, -25], np.int16)  # a green cast
    painted[60:62, 40:90] += np.array([40, -20, -10], np.int16)  # a thin red line: fine colour of the painting's own
    painted = np.clip(painted, 0, 255).astype(np.uint8)
    toned = kept_tone(painted, original, hole)
    assert np.array_equal(toned[~hole], painted[~hole])
    inner = hole & (region_mask(aligned.landmarks, "face") >= 0.99)
    inner[55:67] = False  # away from the line
    coarse = [np.dstack([smooth(chroma(image)[..., k], 4.0) for k in range(2)]) for image in (toned, original, painted)]
    assert np.abs(coarse[2] - coarse[1])[inner].mean() > 15  # the cast, before
    assert np.abs(coarse[0] - coarse[1])[inner].mean() < 2.5  # gone: the original's colouring
    assert np.abs(luminance(toned) - luminance(painted))[hole].mean() < 1.0  # the painting's light and shape kept
    line, beside = chroma(toned)[60:62, 50:80, 1].mean(), chroma(toned)[52:54, 50:80, 1].mean()
    assert line - beside > 12  # the line's red stays (fine chroma is the painting's)
    darker = np.clip(painted.astype(np.float32) * np.where(hole, 0.6, 1.0)[..., None], 0, 255).astype(np.uint8)  # a darker person
    skin = skin_mask(aligned.landmarks)
    lit = kept_tone(darker, original, hole, skin)
    assert abs(luminance(lit)[skin & hole].mean() - luminance(original)[skin & hole].mean()) < 2  # as light as the skin was
    unlit = kept_tone(darker, original, hole)
    assert abs(luminance(unlit)[skin & hole].mean() - luminance(darker)[skin & hole].mean()) < 1  # no skin given: its light kept

    anonymizer = tiny_anonymizer()
    codes = anonymizer.identities(0, 0, 1)
    own, holes = anonymizer.paint(original[None], aligned.landmarks[None], codes, keep_tone=False)
    kept, _ = anonymizer.paint(original[None], aligned.landmarks[None], codes)
    assert np.array_equal(kept[0], kept_tone(own[0], original, holes[0] > 0, skin)) and not np.array_equal(kept, own)


def test_the_central_detail_reads_the_eyes_nose_and_mouth_not_the_hair(demo_rgb, demo_faces):
    from faceflex.face.texture import smooth
    from faceflex.inference.anonymizing import central_detail

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    face, points = aligned.image, aligned.landmarks
    soft = np.dstack([smooth(face[..., k].astype(np.float32), 1.5) for k in range(3)]).round().astype(np.uint8)
    hair = face.copy()
    top = int(points[17:27, 1].min()) - 2
    hair[:top] = np.random.default_rng(0).integers(0, 256, hair[:top].shape)  # streaks above the brows
    sharp, blurred, streaked = central_detail(np.stack([face, soft, hair]), points)
    assert sharp > 3 * blurred and streaked == sharp


def test_codes_are_tried_best_rated_first_and_the_rating_learns_what_paints_detail(monkeypatch):
    from faceflex.inference.anonymizing import DRAWN, CodeRating

    anonymizer = tiny_anonymizer()
    drawn = anonymizer.prior.sample(np.random.default_rng([3, 1]), DRAWN)
    assert np.array_equal(anonymizer.identities(3, 1, 4), drawn[:4])  # without a rating: in drawn order

    def scripted_network(faces, make_input, codes, batch_size=32):
        """Texture whose contrast grows with the code's first value (and nothing else of it)."""
        noise = np.random.default_rng(0).normal(size=(128, 128, 1))
        contrast = 20 * np.exp(np.clip(np.asarray(codes)[:, 0], -2, 2))[:, None, None, None]
        painted = np.clip(128 + contrast * noise, 0, 255).astype(np.uint8).repeat(3, axis=3)
        return painted, np.ones((len(codes), 128, 128), np.float32)

    monkeypatch.setattr(anonymizer, "fill", scripted_network)
    landmarks = np.repeat(template_landmarks()[None], 3, axis=0)
    codes = anonymizer.prior.sample(np.random.default_rng(5), 256)
    rating = CodeRating.fit(anonymizer, np.zeros((3, 128, 128, 3), np.uint8), landmarks, codes)
    assert np.argmax(np.abs(rating.weights)) == 0 and rating.weights[0] > 0
    test = anonymizer.prior.sample(np.random.default_rng(6), 64)
    assert np.corrcoef(rating.rate(test), test[:, 0])[0, 1] > 0.8

    anonymizer = Anonymizer(anonymizer.model, anonymizer.prior, torch.device("cpu"), {"code_rating": rating.to_dict()})
    tried = anonymizer.identities(3, 1)
    assert all(any(np.array_equal(code, d) for d in drawn) for code in tried)  # of the codes drawn for (seed, key)
    assert np.all(np.diff(rating.rate(tried)) <= 0) and rating.rate(tried)[-1] >= np.sort(rating.rate(drawn))[-len(tried)]
    assert np.array_equal(anonymizer.identities(3, 1, 3), tried[:3])  # the first ones do not depend on how many


def test_same_seed_same_face_other_seed_other_face_face_free_photo_untouched(demo_rgb, demo_faces):
    from faceflex.pipeline.flow import run_step
    from faceflex.steps.anonymize import AnonymizeStep

    anonymizer = tiny_anonymizer()

    def anonymized(seed: int) -> np.ndarray:
        result = run_step(demo_rgb, AnonymizeStep(seed=seed, anonymizer=anonymizer))
        return next(result.images())[1]

    first, again, other = anonymized(1), anonymized(1), anonymized(2)
    assert np.array_equal(first, again)
    box = [int(v) for v in demo_faces[0].box]
    inside = (slice(box[1], box[3]), slice(box[0], box[2]))
    assert np.abs(first[inside].astype(int) - other[inside].astype(int)).mean() > 1.0
    assert np.abs(first[inside].astype(int) - demo_rgb[inside].astype(int)).mean() > 5.0
    far = np.any(first != demo_rgb, axis=2)
    assert not far[:, : max(0, box[0] - (box[2] - box[0]))].any()  # left of the face, nothing changes
    blank = np.full((300, 400, 3), 120, np.uint8)  # no face: nothing is painted
    result = run_step(blank, AnonymizeStep(seed=1, anonymizer=anonymizer))
    assert result.records == [] and list(result.images()) == []


def fake_faces(demo_aligned: np.ndarray, n: int = 24) -> CachedFaces:
    faces = np.stack([np.clip(demo_aligned.astype(int) + (i % 7) - 3, 0, 255).astype(np.uint8) for i in range(n)])
    landmarks = np.repeat(template_landmarks()[None].astype(np.float32), n, axis=0)
    ids = np.concatenate([np.arange(1, n - 7), np.arange(28001, 28009)])
    return CachedFaces(faces, np.ones((n, 40), np.int8), landmarks, ids, [f"a{i}" for i in range(40)])


def test_training_resumes_exactly_and_exports_an_anonymizer(tmp_path, demo_rgb, demo_faces, monkeypatch):
    monkeypatch.setattr(
        "faceflex.train.face_sets.cached_face_descriptors",
        lambda faces, *a, **k: np.random.default_rng(len(faces)).normal(size=(len(faces), 128)).astype(np.float32),
    )
    monkeypatch.setattr("faceflex.train.anonymizer_trainer.AnonymizerTrainer.evaluate", lambda self: {})
    monkeypatch.setattr("faceflex.train.anonymizer_trainer.RATING_CODES", 16)
    monkeypatch.setattr("faceflex.train.anonymizer_trainer.RATING_FACES", 2)
    cache = fake_faces(align_face(demo_rgb, demo_faces[0].landmarks).image)
    settings = AnonymizerSettings(
        epochs=2,
        batch_size=8,
        adversarial_start=1,
        identity_weight=0.5,
        perceptual_weight=0.5,
        rim_weight=1.0,
        chip_jitter=0.05,
        drawn_codes=0.5,
        mouth_weight=1.0,
        refit_points=0.5,
    )

    def trainer(out: Path) -> AnonymizerTrainer:
        return AnonymizerTrainer(cache, tmp_path / "cache", TINY, settings, out, torch.device("cpu"))

    whole = trainer(tmp_path / "whole")
    whole.run()
    half = trainer(tmp_path / "half")
    half.run(stop_after=1)
    state = torch.load(tmp_path / "half" / "checkpoint.pt", weights_only=True)
    del state["config"]["detail_output"]  # written before that field existed: it resumes with the field's default
    torch.save(state, tmp_path / "half" / "checkpoint.pt")
    resumed = trainer(tmp_path / "half")
    resumed.prior = IdentityPrior.fit(np.random.default_rng(1).normal(size=(64, 128)))  # as a run started without --init would
    resumed.codes = resumed.prior.code(resumed.descriptors)
    resumed.load_checkpoint(tmp_path / "half" / "checkpoint.pt")
    resumed.run()
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    loaded = load_anonymizer(tmp_path / "whole" / "anonymizer.pt", "cpu")
    faces, _ = loaded.paint(cache.faces[:2], cache.landmarks[:2], loaded.prior.sample(np.random.default_rng(0), 2))
    assert faces.shape == (2, 128, 128, 3) and (tmp_path / "whole" / "epoch_002.png").is_file()
    assert loaded.rating is not None and loaded.rating.weights.shape == (128,)  # the codes it draws are rated
    (tmp_path / "whole" / "anonymizer.pt").unlink()
    finished = trainer(tmp_path / "whole")
    finished.load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    finished.run()  # nothing left to train: the weights are exported again
    assert load_anonymizer(tmp_path / "whole" / "anonymizer.pt", "cpu").rating is not None


def test_the_mouth_term_covers_the_lips_drawn_for_the_network_mirrored_or_not():
    from faceflex.face.sketch import SKETCH_PARTS
    from faceflex.train.anonymizer_trainer import mouth_regions, painting_batch
    from faceflex.train.unmask_trainer import FacePool

    outer_lips = 4 + [part for part, _ in SKETCH_PARTS].index(tuple(range(48, 60)))  # after RGB and the hole
    landmarks = (template_landmarks() + np.array([18.0, 0.0]))[None]  # off centre: mirroring moves it
    pool = FacePool(np.full((1, 128, 128, 3), 128, np.uint8), landmarks)
    for flips in (np.array([False]), np.array([True])):
        inputs, _ = painting_batch(pool, np.array([0]), flips)
        lips = inputs[0, outer_lips].numpy() > 0.5
        mouth = mouth_regions(pool, np.array([0]), flips)[0, 0].numpy()
        assert lips.sum() > 20 and (mouth[lips] > 0.75).all()  # every lip pixel drawn lies in the (feathered) region
        assert 0.01 < mouth.mean() < 0.1  # the mouth and its folds, not the face


def test_faces_can_be_holed_and_drawn_with_other_points_than_the_pools():
    from faceflex.train.anonymizer_trainer import painting_batch
    from faceflex.train.unmask_trainer import FacePool

    landmarks = template_landmarks()[None]
    pool = FacePool(np.full((1, 128, 128, 3), 128, np.uint8), landmarks)
    moved = landmarks + np.array([9.0, 0.0])

    def hole_centre(drawn_with, flips=None) -> float:
        hole = painting_batch(pool, np.array([0]), flips, drawn_with=drawn_with)[0][0, 3].numpy()
        return float((hole.sum(axis=0) * np.arange(128)).sum() / hole.sum())

    plain = hole_centre(None)
    assert hole_centre(np.full_like(moved, np.nan)) == plain  # NaN rows: the pool's points
    assert abs(hole_centre(moved) - plain - 9.0) < 1.0
    assert abs(hole_centre(moved, np.array([True])) - (127.0 - plain - 9.0)) < 1.5  # the points drawn are mirrored too


def test_faces_painted_from_drawn_codes_are_held_only_to_what_does_not_depend_on_who_it_is():
    """A ``drawn_codes`` share of a batch gets codes drawn from the prior (likeness 0); composite_loss
    then leaves those paintings out of the SSIM term but holds their coarse colour."""
    from types import SimpleNamespace

    from faceflex.inference.face_painting import IdentityPrior
    from faceflex.train.unmask_trainer import composite_loss

    prior = IdentityPrior.fit(np.random.default_rng(0).normal(size=(500, CODE_SIZE)))
    own = torch.from_numpy(np.random.default_rng(1).normal(size=(64, CODE_SIZE)).astype(np.float32))
    for share in (0.0, 0.5):
        fake = SimpleNamespace(settings=SimpleNamespace(drawn_codes=share), prior=prior)
        codes, likeness = AnonymizerTrainer.with_drawn_codes(fake, own, torch.Generator().manual_seed(0))
        kept = likeness.bool()
        assert torch.equal(codes[kept], own[kept]) and not (codes[~kept] == own[~kept]).any()
        assert kept.all() if share == 0 else 15 < int((~kept).sum()) < 49

    truth = torch.full((2, 3, 32, 32), 0.5)
    truth[:, 0] = 0.6
    someone_else = truth.clone()
    someone_else[1] += 0.3 * (torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) - 0.5)  # other features, same colour
    green = someone_else.clone()
    green[1, :, 8:24, 8:24] += torch.tensor([-0.1, 0.1, -0.1]).view(3, 1, 1)
    region = torch.ones(2, 1, 32, 32)
    settings = SimpleNamespace(rim_weight=0.0, chroma_weight=1.0, chroma_block=8, ssim_weight=1.0, laplacian_weight=0.0)
    trainer = SimpleNamespace(settings=settings, identity_loss=None, adversarial=None, device=torch.device("cpu"))

    def terms(painted: torch.Tensor, likeness: torch.Tensor | None) -> tuple[float, float]:
        logged: dict = {}
        composite_loss(trainer, torch.zeros(()), logged, truth, painted, region, truth, None, likeness)
        return float(logged["1-ssim"]), float(logged["chroma"])

    drawn = torch.tensor([1.0, 0.0])
    assert terms(someone_else, None)[0] > 0.05  # as the true face, the other features cost
    assert terms(someone_else, drawn)[0] < 1e-6  # as someone else, they do not
    assert terms(green, drawn)[1] > 2 * terms(someone_else, drawn)[1] + 0.005  # the green patch still does


@pytest.fixture()
def shipped_anonymizer():
    try:
        return load_anonymizer()
    except FileNotFoundError:
        pytest.skip("no shipped anonymizer weights")


def test_anonymize_command_writes_faces_parts_and_identity_distances(tmp_path, demo_path, shipped_anonymizer):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(demo_path).save(folder / "hopper.jpg")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / "out"
    result = run("anonymize", "-q", str(folder), "-o", str(out), "--save-parts", "--seed", "7")
    assert result.exit_code == 1 and "broken.jpg" in result.stderr  # a bad file: one line, the batch goes on
    doc = json.loads((out / "anonymize.json").read_text())
    ok = next(r for r in doc["inputs"] if r["status"] == "ok")
    (face,) = ok["faces"]
    assert face["method"] == "generate" and face["seed"] == 7 and face["identity_key"] == 0
    assert doc["settings"]["keep_tone"] is True  # the default, recorded
    (image,) = [o for o in ok["outputs"] if o["product"] == "anonymized"]
    assert image["identity_distance"][0] >= 0.6  # not the same person by dlib's rule
    parts = np.asarray(Image.open(out / "hopper.parts.png"))
    assert parts.shape == (128, 384, 3)
    assert not list(out.glob("broken.*"))


def test_a_video_keeps_one_new_identity_per_face(tmp_path, demo_rgb, shipped_anonymizer):
    import av

    from faceflex.io.video import VideoWriter

    writer = VideoWriter(tmp_path / "clip.mp4", 10)
    for shift in range(4):
        writer.write(np.roll(demo_rgb, shift * 6, axis=1))
    writer.close()
    out = tmp_path / "out"
    result = run("anonymize", "-q", str(tmp_path / "clip.mp4"), "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "clip.frames.jsonl").read_text().splitlines()]
    assert [[f["track"] for f in line["faces"]] for line in lines] == [[0]] * 4
    assert {f["identity_key"] for line in lines for f in line["faces"]} == {0}
    with av.open(str(out / "clip.anonymized.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 4
    first, last = frames[0], np.roll(frames[3], -18, axis=1)  # the same place in the face
    x0, y0, x1, y1 = (int(v) for v in lines[0]["faces"][0]["box"])
    assert np.abs(first[y0:y1, x0 + 20 : x1 - 20].astype(int) - last[y0:y1, x0 + 20 : x1 - 20].astype(int)).mean() < 12


def test_the_evaluation_draws_the_landmarks_it_measures(demo_rgb, demo_faces, monkeypatch):
    """The generator is drawn the points dlib finds on each held-out crop in the box its detector
    finds there (as the command draws those it finds on the photo), not the cached ones it would then
    be measured against; a generator that gives the face back unchanged scores no landmark error and
    is re-identified every time."""
    from faceflex.evaluation.anonymizing import fitting_box, held_out_figures, summary
    from faceflex.face.detect import DetectSettings, detect_boxes, predict_landmarks

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    cache = fake_faces(aligned.image, 10)
    cache.landmarks[:] = aligned.landmarks + np.array([2.5, -2.0])  # cached points that are off
    rows = cache.split("test")[:2]
    anonymizer, drawn = tiny_anonymizer(), []

    def give_back(faces, landmarks, codes, normalise_shape=0.0, keep_tone=True):
        drawn.append(np.array(landmarks))
        return np.array(faces), np.zeros(np.shape(faces)[:3], np.float32)

    monkeypatch.setattr(anonymizer, "paint", give_back)
    figures = held_out_figures(anonymizer, cache, rows, methods=("generate",), classifiers=False)
    face = np.asarray(cache.faces[rows[0]])
    box = fitting_box(face, cache.landmarks[rows[0]])
    assert box == detect_boxes(face, DetectSettings())[0][0]  # the detector's box, not the cached points'
    assert fitting_box(np.zeros_like(face), cache.landmarks[rows[0]]) == (
        *cache.landmarks[rows[0]].min(axis=0),
        *cache.landmarks[rows[0]].max(axis=0),
    )
    expected = np.stack([predict_landmarks(face, box)] * 2)
    assert np.allclose(drawn[0], expected) and not np.allclose(drawn[0], cache.landmarks[rows], atol=1.0)
    report = summary(figures)["generate"]
    assert report["landmark_error_iod"] == 0.0 and report["reidentified"] == 1.0 and report["sharpness"] == 1.0
    assert report["colour_cast"] == 0.0
    assert len(drawn) == 8  # still the person: every one of the eight codes tried


def test_the_colour_cast_figure_sees_a_tinted_patch_not_fine_detail(demo_rgb, demo_faces):
    from faceflex.evaluation.anonymizing import colour_cast
    from faceflex.face.masks import region_mask

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    face, region = aligned.image, region_mask(aligned.landmarks, "face") >= 0.99
    greenish = face.astype(int)
    greenish[55:80, 45:80] += np.array([-15, 20, -15])  # a greenish patch on the cheeks and nose
    speckled = face.astype(int) + np.where(np.indices(face.shape[:2]).sum(axis=0) % 2, 20, -20)[..., None]  # grey checkerboard
    assert colour_cast(face, face, region) == 0.0
    assert colour_cast(np.clip(greenish, 0, 255).astype(np.uint8), face, region) > 10
    assert colour_cast(np.clip(speckled, 0, 255).astype(np.uint8), face, region) < 3


def test_the_identity_loss_reads_dlibs_chip_and_measures_what_a_blur_loses(demo_rgb, demo_faces):
    import dlib

    from faceflex.face.identity import chip_matrix, face_descriptors
    from faceflex.train.identity_loss import IdentityLoss, chip_grid

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    face, landmarks = aligned.image, aligned.landmarks
    parts = dlib.points([dlib.point(*np.round(p).astype(int).tolist()) for p in landmarks])
    shape = dlib.full_object_detection(dlib.rectangle(0, 0, 1, 1), parts)
    chip = np.asarray(dlib.get_face_chip(np.ascontiguousarray(face), shape, size=150, padding=0.25)).astype(np.float32)
    grid = chip_grid(chip_matrix(landmarks)[None], face.shape[:2])
    image = torch.from_numpy(face.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    read = torch.nn.functional.grid_sample(image * 255, grid, align_corners=True)[0].permute(1, 2, 0).numpy()
    assert np.abs(read - chip).mean() < 1.0  # dlib's own chip, to its uint8 rounding (measured 0.5 on the 1024-px photo)
    loss = IdentityLoss()
    same = loss(image, image, grid, torch.ones(1))
    assert float(same[0]) < 1e-4 and float(same[1]) < 1e-4
    blurred = torch.nn.functional.avg_pool2d(image, 5, 1, 2, count_include_pad=False).requires_grad_(True)
    identity, perceptual = loss(blurred, image, grid, torch.ones(1))
    # blurred: its detail lost (measured 0.49), still her (0.03)
    assert float(perceptual.detach()) > 0.1 and 0.01 < float(identity.detach()) < 0.1
    (identity + perceptual).backward()
    assert float(blurred.grad.abs().sum()) > 0
    assert float(loss(blurred, image, grid, torch.zeros(1))[0].detach()) == 0  # a face that does not count
    descriptor = face_descriptors([face], [landmarks])[0]
    assert np.isfinite(descriptor).all()


def test_a_jittered_chip_is_a_small_random_similarity_of_dlibs_chip(demo_rgb, demo_faces):
    from faceflex.face.identity import chip_matrix
    from faceflex.train.identity_loss import jittered

    landmarks = align_face(demo_rgb, demo_faces[0].landmarks).landmarks
    matrices = np.repeat(chip_matrix(landmarks)[None], 64, axis=0)
    assert np.allclose(jittered(matrices, np.random.default_rng(0), 0.0), matrices)
    moved = jittered(matrices, np.random.default_rng(0), 0.05)
    scale = np.sqrt(np.abs(np.linalg.det(matrices[0, :, :2])))  # image px per chip px
    ratios = np.sqrt(np.abs(np.linalg.det(moved[:, :, :2]))) / scale
    assert np.all((ratios > 0.95 - 1e-9) & (ratios < 1.05 + 1e-9)) and ratios.std() > 0.01
    centre = np.full(2, 74.5)
    shifts = np.linalg.norm((moved[:, :, :2] @ centre + moved[:, :, 2]) - (matrices[:, :, :2] @ centre + matrices[:, :, 2]), axis=1)
    assert shifts.max() <= np.sqrt(2) * 0.05 * 150 * scale + 1e-6 and shifts.mean() > 1.0  # image pixels
    assert np.allclose(jittered(matrices, np.random.default_rng(5), 0.05), jittered(matrices, np.random.default_rng(5), 0.05))
