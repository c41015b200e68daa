"""The attribute painter and `faceflex edit --mode paint`: the painter never sees the region it
repaints, trains on random regions with the attributes always given, starts from the anonymizer,
and the edit changes the attribute's region and nothing far from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceflex.face.align import align_face, template_landmarks
from faceflex.face.sketch import painter_input, region_hole
from faceflex.inference.attribute_painting import PAINT_REGIONS, PAINTED, AttributePainter, load_attribute_painter
from faceflex.inference.face_painting import IdentityPrior
from faceflex.models.face_unet import FaceUNet, FaceUNetConfig
from faceflex.models.labels import ATTRIBUTES
from faceflex.train.anonymizer_trainer import IN_CHANNELS, warm_start
from faceflex.train.attribute_painter_trainer import CODE_SIZE, FLIPPED, AttributePainterTrainer, PainterSettings
from faceflex.train.cache import CachedFaces

TINY = FaceUNetConfig(channels=(8, 8, 16, 16, 16), bottleneck_blocks=1, in_channels=IN_CHANNELS, mask_head=False, code_size=CODE_SIZE)


@pytest.mark.parametrize("region", PAINT_REGIONS)
def test_the_painter_input_holds_nothing_of_the_region_and_all_of_the_rest(demo_rgb, demo_faces, region):
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    hole = region_hole(aligned.landmarks, region)
    x = painter_input(aligned.image, hole, aligned.landmarks)
    inside = hole > 0
    assert 0.02 < inside.mean() < 0.3  # a region, not the face
    other = aligned.image.copy()
    other[inside] = 255 - other[inside]
    assert np.array_equal(painter_input(other, hole, aligned.landmarks), x)
    outside = ~inside
    assert np.allclose(x[:3].transpose(1, 2, 0)[outside] * 255, aligned.image[outside], atol=1e-3)


def synthetic_cache(demo_aligned: np.ndarray, n: int = 24) -> CachedFaces:
    faces = np.stack([np.clip(demo_aligned.astype(int) + (i % 7) - 3, 0, 255).astype(np.uint8) for i in range(n)])
    landmarks = np.repeat(template_landmarks()[None].astype(np.float32), n, axis=0)
    ids = np.concatenate([np.arange(1, n - 7), np.arange(28001, 28009)])
    names = [f"a{i}" for i in range(30)] + ATTRIBUTES
    attributes = np.where(np.arange(n)[:, None] % 2 == np.arange(40)[None] % 2, 1, -1).astype(np.int8)
    return CachedFaces(faces, attributes, landmarks, ids, names)


def test_training_batches_take_out_one_region_and_always_give_the_attributes(tmp_path, demo_rgb, demo_faces, monkeypatch):
    monkeypatch.setattr(
        "faceflex.train.face_sets.face_descriptors",
        lambda faces, *a, **k: np.random.default_rng(len(faces)).normal(size=(len(faces), 128)).astype(np.float32),
    )
    cache = synthetic_cache(align_face(demo_rgb, demo_faces[0].landmarks).image)
    settings = PainterSettings(epochs=1, batch_size=8, code_dropout=1.0)
    trainer = AttributePainterTrainer(cache, tmp_path / "cache", TINY, settings, tmp_path / "out", torch.device("cpu"))
    rows = trainer.train_rows[:8]
    inputs, truth, codes, edited = trainer.batch(rows, torch.Generator().manual_seed(0))
    assert inputs.shape == (8, IN_CHANNELS, 128, 128) and truth.shape == (8, 3, 128, 128) and codes.shape == (8, CODE_SIZE)
    points = cache.landmarks[0].astype(np.float64)
    mirrored = np.column_stack([128 - points[:, 0], points[:, 1]])
    holes = [(region_hole(lm, r), r) for r in PAINT_REGIONS for lm in (points, mirrored)]
    regions = [next((r for hole, r in holes if np.array_equal(hole, h.numpy())), None) for h in inputs[:, 3]]
    assert set(regions) <= set(PAINT_REGIONS) and len(set(regions)) >= 2  # regions drawn per face, never the whole face
    assert torch.all(codes[:, :128] == 0)  # every identity dropped (code_dropout 1) ...
    expected = cache.attributes[rows][:, [30 + i for i in range(len(ATTRIBUTES))]].astype(np.float32)
    for i, (region, column) in enumerate(zip(regions, edited)):
        if column >= 0:  # an edited face: its region's attribute flipped
            assert ATTRIBUTES[column] == FLIPPED[region]
            expected[i, column] *= -1
    assert 0 < (edited >= 0).sum() < 8  # edit_share 0.5
    assert np.array_equal(codes[:, 128:].numpy(), expected)  # ... the attributes never
    trainer.settings = PainterSettings(epochs=1, batch_size=8, edit_share=1.0)
    loss, logged = trainer.step_loss(rows, torch.Generator().manual_seed(1))
    assert torch.isfinite(loss.detach()) and float(logged["judge"].detach()) > 0
    loss.backward()
    assert trainer.model.film[0].weight.grad[:, 128:].abs().sum() > 0  # the judge reaches the attribute part of the code
    with pytest.raises(ValueError, match="UTKFace"):
        AttributePainterTrainer(cache, tmp_path / "cache", TINY, PainterSettings(utkface="x"), tmp_path / "o2", torch.device("cpu"))


def test_a_warm_start_from_the_anonymizer_begins_where_it_was():
    torch.manual_seed(0)
    anonymizer = FaceUNet(FaceUNetConfig(**{**TINY.to_dict(), "channels": (8, 8, 16, 16, 16), "code_size": 128})).eval()
    for layer in anonymizer.film:
        torch.nn.init.normal_(layer.weight, std=0.05)
    painter = FaceUNet(TINY).eval()
    assert warm_start(painter, anonymizer.state_dict()) == len(anonymizer.state_dict())
    x, identity = torch.rand(2, IN_CHANNELS, 128, 128), torch.randn(2, 128)
    with torch.no_grad():
        expected = anonymizer(x, identity)[1]
        got = painter(x, torch.cat([identity, torch.randn(2, len(ATTRIBUTES))], dim=1))[1]
    assert torch.allclose(got, expected, atol=1e-5)  # the attribute part of the code starts with no effect


def test_painting_changes_the_region_alone(demo_rgb, demo_faces):
    torch.manual_seed(0)
    model = FaceUNet(TINY)
    prior = IdentityPrior(np.zeros(128, np.float32), np.ones(128, np.float32), np.eye(128, dtype=np.float32))
    painter = AttributePainter(model, prior, torch.device("cpu"), {"attributes": ATTRIBUTES})
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    code = painter.code(np.zeros((1, 128)), np.zeros((1, len(ATTRIBUTES))))
    painted, holes = painter.paint(aligned.image[None], aligned.landmarks[None], "eyes", code)
    assert np.array_equal(painted[0][holes[0] == 0], aligned.image[holes[0] == 0])
    assert np.abs(painted[0][holes[0] > 0].astype(int) - aligned.image[holes[0] > 0]).mean() > 1
    with pytest.raises(ValueError, match="repaints"):
        painter.paint(aligned.image[None], aligned.landmarks[None], "face", code)


@pytest.fixture()
def shipped_painter():
    try:
        return load_attribute_painter(device="cpu")
    except FileNotFoundError:
        pytest.skip("no shipped attribute painter weights")


def edited(photo: np.ndarray, attribute: str, strengths, mode: str = "paint"):
    from faceflex.pipeline.flow import run_step
    from faceflex.steps.edit import EditSettings, EditStep

    step = EditStep(EditSettings(attribute=attribute, strengths=tuple(strengths), mode=mode, identity=True))
    result = run_step(photo, step)
    return [(variant, image, variant.measure(image)) for variant, image in result.images()]


def test_paint_mode_takes_her_glasses_off_and_keeps_her(demo_rgb, demo_faces, shipped_painter):
    from faceflex.face.crops import attribute_input
    from faceflex.inference.classifiers import load_classifiers, sigmoid
    from faceflex.models.classifier_nets import predict

    glasses = ATTRIBUTES.index("Eyeglasses")
    models = load_classifiers("cpu")
    outputs = edited(demo_rgb, "Eyeglasses", [0, -2])
    assert np.array_equal(outputs[0][1], demo_rgb)  # strength 0: the photo itself
    removed = outputs[1][1]
    landmarks = demo_faces[0].landmarks
    changed = np.any(removed != demo_rgb, axis=2)
    mouth_y = int(landmarks[57, 1])
    assert not changed[mouth_y:].any()  # below the lips nothing moves
    assert changed[int(landmarks[37, 1]), int(landmarks[37, 0])]  # the eyes are repainted
    assert outputs[1][2]["identity_distance"][0] < 0.6  # still her
    before = align_face(demo_rgb, landmarks).image
    after = align_face(removed, landmarks).image
    p = sigmoid(predict(models.models["attributes"], attribute_input(np.stack([before, after])), models.device)["attributes"][:, glasses])
    assert p[0] > 0.5 and p[1] < 0.5  # her glasses read as gone
    assert PAINTED["Eyeglasses"] == "eyes"


def test_a_projection_critic_scores_the_same_image_differently_for_different_conditions():
    from faceflex.models.patch_critic import PatchCritic

    torch.manual_seed(0)
    critic = PatchCritic(channels=(8, 8, 8), condition_size=len(ATTRIBUTES)).eval()
    images = torch.rand(2, 3, 128, 128)
    with_glasses, without = torch.ones(2, len(ATTRIBUTES)), -torch.ones(2, len(ATTRIBUTES))
    a, b = critic(images, with_glasses)[0], critic(images, without)[0]
    assert a.shape == (2, 1, 16, 16) and not torch.allclose(a, b)
    plain = PatchCritic(channels=(8, 8, 8)).eval()
    assert torch.equal(plain(images)[0], plain(images, with_glasses)[0])  # an unconditioned critic ignores it
