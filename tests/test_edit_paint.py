"""The attribute painter and `faceflex edit --mode paint`: a painter never sees the region it
repaints, each target learns only from faces that show its outcome, every target shares the
anonymizer's frozen encoder (packed once), and an edit changes the attribute's region and nothing
far from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from faceflex.face.align import align_face, template_landmarks
from faceflex.face.sketch import painter_input, region_hole
from faceflex.inference.attribute_painting import (
    HOLES,
    PAINT_REGIONS,
    AttributePainter,
    load_attribute_painter,
    pack_targets,
    target_name,
)
from faceflex.inference.face_painting import IdentityPrior
from faceflex.models.face_unet import FaceUNet, FaceUNetConfig
from faceflex.models.labels import ATTRIBUTES
from faceflex.models.weights import WeightsError, save_weights
from faceflex.train.anonymizer_trainer import CODE_SIZE, IN_CHANNELS
from faceflex.train.attribute_painter_trainer import AttributePainterTrainer, PainterSettings, target_rows
from faceflex.train.cache import CachedFaces

TINY = FaceUNetConfig(channels=(8, 8, 16, 16, 16), bottleneck_blocks=1, in_channels=IN_CHANNELS, mask_head=False, code_size=CODE_SIZE)
PRIOR = IdentityPrior(np.zeros(128, np.float32), np.ones(128, np.float32), np.eye(128, dtype=np.float32))


@pytest.mark.parametrize("region", PAINT_REGIONS)
def test_the_painter_input_holds_nothing_of_the_region_and_all_of_the_rest(demo_rgb, demo_faces, region):
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    hole = region_hole(aligned.landmarks, region)
    x = painter_input(aligned.image, hole, aligned.landmarks)
    inside = hole > 0
    assert 0.02 < inside.mean() < (0.5 if region == "skin" else 0.3)  # a region, not the frame
    other = aligned.image.copy()
    other[inside] = 255 - other[inside]
    assert np.array_equal(painter_input(other, hole, aligned.landmarks), x)
    outside = ~inside
    assert np.allclose(x[:3].transpose(1, 2, 0)[outside] * 255, aligned.image[outside], atol=1e-3)


def test_taking_glasses_off_repaints_around_the_eyes_and_keeps_the_eyes(demo_rgb, demo_faces):
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    lm = aligned.landmarks
    frames, eyes = region_hole(lm, "frames"), region_hole(lm, "eyes")
    assert HOLES["Eyeglasses"] == ("frames", "eyes") and np.all(frames <= eyes)
    for eye in (lm[36:42], lm[42:48]):  # each eye's own pixels stay (what clear lenses show)
        x, y = np.round(eye.mean(axis=0)).astype(int)
        assert frames[y, x] == 0 and eyes[y, x] == 1
    between = np.round((lm[19] + lm[37]) / 2).astype(int)  # between brow and lid: where a frame's top runs
    assert frames[between[1], between[0]] == 1
    assert 0.5 < frames.sum() / eyes.sum() < 0.95


def test_gender_repaints_below_the_nose_and_age_all_the_skin_but_eyes_and_brows(demo_rgb, demo_faces):
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    lm = aligned.landmarks
    lower, skin, face = (region_hole(lm, r) for r in ("lower-face", "skin", "face"))
    assert HOLES["Male"] == ("lower-face",) and HOLES["Young"] == ("skin",)

    def at(point) -> tuple[int, int]:
        x, y = np.round(point).astype(int)
        return y, x

    for hole in (lower, skin):  # mouth, chin and the cheeks beside the mouth
        assert hole[at(lm[62])] == 1 and hole[at(lm[8] + (0, -3))] == 1 and hole[at((lm[4] + lm[48]) / 2)] == 1
    assert lower[at(lm[29])] == 0 and lower[at(lm[37:39].mean(axis=0))] == 0  # not the nose bridge nor the eyes
    for eye in (lm[36:42], lm[42:48]):
        assert skin[at(eye.mean(axis=0))] == 0
    assert skin[at(lm[19] + (0, 1))] == 0 and skin[at(lm[24] + (0, 1))] == 0  # the brows stay
    assert skin[at(lm[29])] == 1 and skin[at(lm[41] + (0, 5))] == 1 and skin[at(lm[46] + (0, 5))] == 1  # the nose, under the eyes
    assert np.all(skin <= face) and np.all(lower <= face)


def test_shaving_repaints_below_the_nose_and_under_the_chin_and_keeps_the_lips(demo_rgb, demo_faces):
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    lm = aligned.landmarks
    beard, lower = region_hole(lm, "beard"), region_hole(lm, "lower-face")
    assert HOLES["No_Beard"] == ("beard",)
    y, x = np.round(lm[[51, 57, 62, 66]]).astype(int).T[::-1]
    assert np.all(beard[y, x] == 0) and np.all(lower[y, x] == 1)  # the lips stay the person's
    chin = np.round(lm[8] + (0, 4)).astype(int)
    assert beard[chin[1], chin[0]] == 1 and lower[chin[1], chin[0]] == 0  # a beard grows under the chin too
    cheek, stubble = np.round((lm[4] + lm[48]) / 2).astype(int), np.round((lm[33] + lm[51]) / 2).astype(int)
    assert beard[cheek[1], cheek[0]] == 1 and beard[stubble[1], stubble[0]] == 1
    assert beard[tuple(np.round(lm[29]).astype(int)[::-1])] == 0  # not the nose


def test_behind_dark_lenses_the_eyes_are_repainted_too(demo_rgb, demo_faces):
    from faceflex.face.masks import polygon_mask
    from faceflex.inference.attribute_painting import hole_for, lenses_hide_eyes

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    lm = aligned.landmarks
    assert not lenses_hide_eyes(aligned.image, lm) and hole_for("Eyeglasses", aligned.image, lm) == "frames"
    shaded = aligned.image.copy()
    shaded[polygon_mask([lm[36:42], lm[42:48]], (128, 128)) > 0] = 12  # sunglasses
    assert lenses_hide_eyes(shaded, lm) and hole_for("Eyeglasses", shaded, lm) == "eyes"
    assert hole_for("Mustache", shaded, lm) == "upper-lip"


NAMES = [f"a{i}" for i in range(40 - len(ATTRIBUTES))] + ATTRIBUTES


def synthetic_cache(demo_aligned: np.ndarray, n: int = 24) -> CachedFaces:
    """n faces (the last 8 held out); Eyeglasses on every third, Mustache and a beard on every fourth (all men), Male on even rows."""
    faces = np.stack([np.clip(demo_aligned.astype(int) + (i % 7) - 3, 0, 255).astype(np.uint8) for i in range(n)])
    landmarks = np.repeat(template_landmarks()[None].astype(np.float32), n, axis=0)
    ids = np.concatenate([np.arange(1, n - 7), np.arange(28001, 28009)])
    attributes = -np.ones((n, 40), np.int8)
    rows = np.arange(n)
    attributes[rows % 3 == 0, NAMES.index("Eyeglasses")] = 1
    attributes[rows % 4 == 0, NAMES.index("Mustache")] = 1
    attributes[rows % 2 == 0, NAMES.index("Male")] = 1
    attributes[rows % 4 != 0, NAMES.index("No_Beard")] = 1
    return CachedFaces(faces, attributes, landmarks, ids, NAMES)


def test_a_target_learns_only_from_faces_that_show_its_outcome(demo_rgb, demo_faces):
    cache = synthetic_cache(align_face(demo_rgb, demo_faces[0].landmarks).image)
    train = cache.split("train")
    assert np.array_equal(target_rows(cache, train, "Eyeglasses", "add", 0, 0), train[train % 3 == 0])
    assert np.array_equal(target_rows(cache, train, "Eyeglasses", "remove", 0, 0), train[train % 3 != 0])  # glasses: either sex
    # every moustache is a man's: removing one learns from men without
    assert np.array_equal(target_rows(cache, train, "Mustache", "remove", 0, 0), train[(train % 4 != 0) & (train % 2 == 0)])
    # every beard is a man's: shaving one (No_Beard added) learns from beardless men, not from women
    assert np.array_equal(target_rows(cache, train, "No_Beard", "add", 0, 0), train[train % 4 == 2])
    # a sex is no outcome's "one sex": making a man a woman learns from women, and the other way round
    assert np.array_equal(target_rows(cache, train, "Male", "remove", 0, 0), train[train % 2 != 0])
    assert np.array_equal(target_rows(cache, train, "Male", "add", 0, 0), train[train % 2 == 0])
    sample = target_rows(cache, train, "Eyeglasses", "remove", 5, 3)
    assert len(sample) == 5 and set(sample) <= set(train[train % 3 != 0])
    assert np.array_equal(sample, target_rows(cache, train, "Eyeglasses", "remove", 5, 3))  # seeded


@pytest.fixture()
def no_descriptors(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a painter target needs no dlib descriptors")

    monkeypatch.setattr("faceflex.train.face_sets.cached_face_descriptors", refuse)


def tiny_anonymizer(path, seed: int = 0):
    torch.manual_seed(seed)
    model = FaceUNet(TINY)
    for layer in model.film:
        torch.nn.init.normal_(layer.weight, std=0.05)
    return save_weights(path, model, TINY.to_dict(), {"identity_prior": PRIOR.to_dict()})


def test_training_a_target_paints_its_region_and_leaves_the_shared_encoder_alone(tmp_path, demo_rgb, demo_faces, no_descriptors):
    cache = synthetic_cache(align_face(demo_rgb, demo_faces[0].landmarks).image)
    init = tiny_anonymizer(tmp_path / "anonymizer.pt")
    settings = PainterSettings(attribute="Mustache", direction="add", epochs=1, batch_size=4, max_faces=0)
    trainer = AttributePainterTrainer(cache, tmp_path / "cache", TINY, settings, tmp_path / "out", torch.device("cpu"), init=str(init))
    assert set(trainer.train_rows) == {r for r in cache.split("train") if r % 4 == 0}
    assert trainer.prior.to_dict() == PRIOR.to_dict()  # the anonymizer's codes, which its code layers learned
    inputs, truth, codes, _ = trainer.batch(trainer.train_rows[:4], torch.Generator().manual_seed(0))
    assert torch.all(codes == 0)  # the mean identity: a descriptor would tell whether the face wore glasses
    points = cache.landmarks[0].astype(np.float64)
    mirrored = np.column_stack([128 - points[:, 0], points[:, 1]])
    allowed = [region_hole(lm, "upper-lip") for lm in (points, mirrored)]
    assert all(any(np.array_equal(h.numpy(), a) for a in allowed) for h in inputs[:, 3])  # always the upper lip
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_epoch()
    after = trainer.model.state_dict()
    shared = [k for k in before if k.startswith(("down.", "bottleneck."))]
    assert shared and all(torch.equal(before[k], after[k]) for k in shared)  # weights and batch statistics frozen
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("up."))  # the decoder learned
    exported = trainer.export()
    painter = AttributePainter.from_file(exported, "cpu")
    assert painter.targets == ["Mustache:add"] and painter.paints("Mustache", "add") and not painter.paints("Mustache", "remove")
    with pytest.raises(ValueError, match="paints"):
        AttributePainterTrainer(cache, tmp_path / "c", TINY, PainterSettings(attribute="Bald"), tmp_path / "o", torch.device("cpu"))
    with pytest.raises(ValueError, match="starts from an anonymizer"):
        AttributePainterTrainer(cache, tmp_path / "c", TINY, PainterSettings(), tmp_path / "o", torch.device("cpu"))


def test_targets_pack_into_one_file_that_paints_as_each_did(tmp_path, demo_rgb, demo_faces):
    init = torch.load(tiny_anonymizer(tmp_path / "anonymizer.pt"), weights_only=True)
    paths = []
    for k, (attribute, direction) in enumerate((("Eyeglasses", "add"), ("Eyeglasses", "remove"), ("Mustache", "add"))):
        model = FaceUNet(TINY)
        model.load_state_dict({key: v.float() for key, v in init["state_dict"].items()})
        torch.manual_seed(k)
        for name, parameter in model.named_parameters():
            if name.startswith("up."):
                parameter.data += 0.05 * torch.randn_like(parameter)
        meta = {"identity_prior": PRIOR.to_dict(), "target": target_name(attribute, direction)}
        paths.append(save_weights(tmp_path / f"t{k}.pt", model, TINY.to_dict(), meta))
    packed = pack_targets(paths, tmp_path / "packed.pt")
    painter = AttributePainter.from_file(packed, "cpu")
    assert painter.targets == ["Eyeglasses:add", "Eyeglasses:remove", "Mustache:add"]
    assert packed.stat().st_size < sum(p.stat().st_size for p in paths)  # the encoder once
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    face, landmarks = aligned.image[None], aligned.landmarks[None]
    for path, (attribute, direction) in zip(paths, (("Eyeglasses", "add"), ("Eyeglasses", "remove"), ("Mustache", "add"))):
        alone = AttributePainter.from_file(path, "cpu").paint(face, landmarks, attribute, direction)[0]
        assert np.array_equal(painter.paint(face, landmarks, attribute, direction)[0], alone)
    a = painter.paint(face, landmarks, "Eyeglasses", "add")[0]
    assert not np.array_equal(a, painter.paint(face, landmarks, "Eyeglasses", "remove")[0])  # each its own decoder
    first = pack_targets(paths[:2], tmp_path / "first.pt")  # a shipped file and a newly trained target: packed again
    again = AttributePainter.from_file(pack_targets([first, paths[2]], tmp_path / "again.pt"), "cpu")
    assert again.targets == painter.targets and again.meta["trained"] == painter.meta["trained"]
    for attribute, direction in (("Eyeglasses", "add"), ("Eyeglasses", "remove"), ("Mustache", "add")):
        assert np.array_equal(
            again.paint(face, landmarks, attribute, direction)[0], painter.paint(face, landmarks, attribute, direction)[0]
        )
    other = tiny_anonymizer(tmp_path / "other.pt", seed=1)
    record = torch.load(other, weights_only=True)
    save_weights(tmp_path / "stranger.pt", _model(record), TINY.to_dict(), {**record["meta"], "target": "Mustache:remove"})
    with pytest.raises(WeightsError, match="encoder"):
        pack_targets([paths[0], tmp_path / "stranger.pt"], tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="twice"):
        pack_targets([paths[0], paths[0]], tmp_path / "bad.pt")


def test_a_new_target_starts_from_a_packed_painters_encoder_and_packs_with_its_targets(tmp_path, demo_rgb, demo_faces, no_descriptors):
    init = torch.load(tiny_anonymizer(tmp_path / "anonymizer.pt"), weights_only=True)
    paths = []
    for k, target in enumerate(("Eyeglasses:remove", "Mustache:remove")):
        model = _model(init)
        torch.manual_seed(k)
        for name, parameter in model.named_parameters():
            if name.startswith("up."):
                parameter.data += 0.05 * torch.randn_like(parameter)
        paths.append(save_weights(tmp_path / f"t{k}.pt", model, TINY.to_dict(), {"identity_prior": PRIOR.to_dict(), "target": target}))
    packed = pack_targets(paths, tmp_path / "packed.pt")
    cache = synthetic_cache(align_face(demo_rgb, demo_faces[0].landmarks).image)
    settings = PainterSettings(attribute="No_Beard", direction="add", epochs=1, batch_size=4, max_faces=0, init_target="Mustache:remove")
    trainer = AttributePainterTrainer(cache, tmp_path / "cache", TINY, settings, tmp_path / "out", torch.device("cpu"), init=str(packed))
    started = trainer.model.state_dict()
    chosen = torch.load(paths[1], weights_only=True)["state_dict"]
    assert all(torch.equal(started[k], chosen[k].to(started[k].dtype)) for k in started)  # the encoder and Mustache:remove's decoder
    trainer.train_epoch()
    shaver = pack_targets([packed, trainer.export()], tmp_path / "again.pt")  # the encoder stayed the packed one
    assert AttributePainter.from_file(shaver, "cpu").targets == ["Eyeglasses:remove", "Mustache:remove", "No_Beard:add"]
    with pytest.raises(ValueError, match="no target 'Smiling:add'"):
        AttributePainterTrainer(
            cache, tmp_path / "c", TINY, PainterSettings(init_target="Smiling:add"), tmp_path / "o", torch.device("cpu"), init=str(packed)
        )


def _model(record: dict) -> FaceUNet:
    model = FaceUNet(TINY)
    model.load_state_dict({k: v.float() for k, v in record["state_dict"].items()})
    return model


def test_painting_changes_the_region_alone(demo_rgb, demo_faces):
    torch.manual_seed(0)
    painter = AttributePainter({"Eyeglasses:add": FaceUNet(TINY)}, PRIOR, torch.device("cpu"))
    aligned = align_face(demo_rgb, demo_faces[0].landmarks)
    painted, holes = painter.paint(aligned.image[None], aligned.landmarks[None], "Eyeglasses", "add")
    assert np.array_equal(painted[0][holes[0] == 0], aligned.image[holes[0] == 0])
    assert np.abs(painted[0][holes[0] > 0].astype(int) - aligned.image[holes[0] > 0]).mean() > 1
    assert np.array_equal(holes[0], region_hole(aligned.landmarks, HOLES["Eyeglasses"][0]))
    with pytest.raises(ValueError, match="no target"):
        painter.paint(aligned.image[None], aligned.landmarks[None], "Eyeglasses", "remove")


def test_paint_mode_picks_the_target_by_the_strengths_sign_and_blends_by_its_size(demo_rgb, demo_faces):
    from faceflex.pipeline.flow import run_step
    from faceflex.steps.edit import EditSettings, EditStep

    torch.manual_seed(0)
    painter = AttributePainter({"Mustache:remove": FaceUNet(TINY)}, PRIOR, torch.device("cpu"))
    step = EditStep(EditSettings(attribute="Mustache", strengths=(0.0, -0.5, -1.0, -2.0), mode="paint", identity=False), painter=painter)
    images = [image for _, image in run_step(demo_rgb, step).images()]
    assert np.array_equal(images[0], demo_rgb)  # strength 0: the photo itself
    half, full, double = (image.astype(int) - demo_rgb for image in images[1:])
    assert np.abs(full).sum() > 0 and np.array_equal(full, double)  # from 1 on: painted whole
    changed = np.abs(full).sum(axis=2) > 30
    assert np.abs(half[changed]).mean() == pytest.approx(np.abs(full[changed]).mean() / 2, rel=0.2)  # 0.5: half blended
    landmarks = demo_faces[0].landmarks
    chin, brows = int((landmarks[57, 1] + landmarks[8, 1]) / 2), int(landmarks[27, 1])
    assert not np.any(full[chin:]) and not np.any(full[:brows])  # around the upper lip alone
    added = EditStep(EditSettings(attribute="Mustache", strengths=(0.5, 1.0), mode="paint", identity=False), painter=painter)
    thin, whole = (image for _, image in run_step(demo_rgb, added).images())  # drawn: no target needed
    assert 0 < np.any(thin != demo_rgb, axis=2).sum() < np.any(whole != demo_rgb, axis=2).sum()  # 0.5: fewer strands
    with pytest.raises(ValueError, match="cannot remove Eyeglasses"):
        EditStep(EditSettings(attribute="Eyeglasses", strengths=(-1.0,), mode="paint"), painter=painter)


def test_glasses_are_drawn_around_the_eyes_and_nowhere_else(demo_rgb, demo_faces):
    from faceflex.face.glasses import GLASSES_STYLES, eye_frame, render_glasses

    landmarks = demo_faces[0].landmarks
    left, right, across, d = eye_frame(landmarks)
    for style in GLASSES_STYLES:
        patch, (x0, y0) = render_glasses(landmarks, style)
        alpha = np.zeros(demo_rgb.shape[:2])
        h, w = patch.shape[:2]
        alpha[y0 : y0 + h, x0 : x0 + w] = patch[..., 3] / 255.0
        assert alpha.max() == 1.0  # opaque frames
        for eye in (left, right):  # a ring of frame around each eye, not over the eye itself unless sunglasses
            x, y = np.round(eye).astype(int)
            ring = alpha[y - int(0.45 * d) : y + int(0.45 * d), x - int(0.5 * d) : x + int(0.5 * d)]
            assert (ring > 0.9).mean() > 0.02
            assert (alpha[y, x] > 0.8) == (style == "sunglasses")
        mouth = np.round(landmarks[48:68].mean(axis=0)).astype(int)
        assert alpha[mouth[1] - 5 : mouth[1] + 5, mouth[0] - 5 : mouth[0] + 5].max() == 0  # nothing on the mouth
    with pytest.raises(ValueError, match="unknown glasses style"):
        render_glasses(landmarks, "monocle")


def test_paint_mode_draws_glasses_even_where_they_leave_the_photo(demo_rgb, demo_faces):
    from faceflex.pipeline.flow import run_step
    from faceflex.steps.edit import EditSettings, EditStep

    landmarks = demo_faces[0].landmarks
    cut = int(landmarks[36:48, 0].min()) + 4  # the photo ends inside the left lens
    photo = np.ascontiguousarray(demo_rgb[:, cut:])
    step = EditStep(EditSettings(attribute="Eyeglasses", strengths=(0.0, 1.0), mode="paint", identity=False, glasses="metal"))
    assert step.painter is None  # drawing glasses needs no network
    images = [image for _, image in run_step(photo, step).images()]
    assert np.array_equal(images[0], photo)
    changed = np.any(images[1] != photo, axis=2)
    assert changed[:, :10].any() and not changed[int(landmarks[57, 1]) :].any()  # drawn up to the edge; below the lips nothing
    with pytest.raises(ValueError, match="glasses style"):
        EditSettings(attribute="Eyeglasses", glasses="monocle")


@pytest.fixture()
def shipped_painter():
    try:
        return load_attribute_painter(device="cpu")
    except FileNotFoundError:
        pytest.skip("no shipped attribute painter weights")


def test_the_shipped_painter_takes_her_glasses_off_and_keeps_her(demo_rgb, demo_faces, shipped_painter):
    from faceflex.face.crops import attribute_input
    from faceflex.face.identity import descriptor_distance, face_descriptor
    from faceflex.inference.classifiers import load_classifiers, sigmoid
    from faceflex.models.classifier_nets import predict
    from faceflex.pipeline.flow import run_step
    from faceflex.steps.edit import EditSettings, EditStep

    assert shipped_painter.paints("Eyeglasses", "remove") and shipped_painter.paints("Mustache", "remove")
    step = EditStep(EditSettings(attribute="Eyeglasses", strengths=(0.0, -1.0), mode="auto", identity=False))
    assert step.mode == "paint"
    images = [image for _, image in run_step(demo_rgb, step).images()]
    assert np.array_equal(images[0], demo_rgb)
    landmarks = demo_faces[0].landmarks
    assert not np.any(images[1] != demo_rgb, axis=2)[int(landmarks[57, 1]) :].any()  # below the lips nothing moves
    before, after = (align_face(image, landmarks).image for image in images)
    models = load_classifiers("cpu")
    p = sigmoid(predict(models.models["attributes"], attribute_input(np.stack([before, after])), models.device)["attributes"])
    glasses = ATTRIBUTES.index("Eyeglasses")
    assert p[0, glasses] > 0.5 > p[1, glasses]  # her glasses read as gone
    assert descriptor_distance(face_descriptor(demo_rgb, landmarks), face_descriptor(images[1], landmarks)) < 0.6  # still her


def test_every_glasses_kind_the_cli_offers_is_drawn():
    from faceflex.choices import GLASSES_KINDS
    from faceflex.face.glasses import GLASSES_STYLES

    assert tuple(GLASSES_STYLES) == GLASSES_KINDS


def test_an_enlarged_painted_region_gets_the_photos_grain_and_nothing_else_changes(demo_rgb, demo_faces):
    from faceflex.face.blend import paste_back, paste_back_with_grain
    from faceflex.face.masks import region_mask

    aligned = align_face(demo_rgb, demo_faces[0].landmarks)  # the demo face is about 2.5 photo pixels per aligned pixel
    flat = np.full_like(aligned.image, 150)
    mask = (region_mask(aligned.landmarks, "eyes", feather=0.0) > 0.5).astype(np.float32)
    plain = paste_back(demo_rgb, flat, aligned.matrix, mask)
    grainy = paste_back_with_grain(demo_rgb, flat, aligned.matrix, mask)
    inside = np.all(plain == 150, axis=2)
    assert inside.sum() > 1000
    assert grainy[inside].astype(float).std() > 2  # textured, not flat
    assert abs(grainy[inside].astype(float).mean() - 150) < 2  # the tone kept
    rows = np.flatnonzero(np.any(plain != demo_rgb, axis=2).any(axis=1))  # the rows the paste touches
    far = np.ones(inside.shape, bool)
    far[rows.min() : rows.max() + 1] = False
    assert np.array_equal(grainy[far], demo_rgb[far])  # away from the region: the photo, bit for bit
    assert np.array_equal(grainy, paste_back_with_grain(demo_rgb, flat, aligned.matrix, mask))  # seeded
    small = align_face(demo_rgb, demo_faces[0].landmarks, size=512)  # not enlarged: no grain added
    big_flat, big_mask = np.full_like(small.image, 150), np.ones(small.image.shape[:2], np.float32)
    assert np.array_equal(
        paste_back_with_grain(demo_rgb, big_flat, small.matrix, big_mask), paste_back(demo_rgb, big_flat, small.matrix, big_mask)
    )


def test_a_drawn_moustache_sits_between_the_nose_and_the_lip_in_the_hair_colour(demo_rgb, demo_faces):
    from faceflex.face.glasses import eye_frame
    from faceflex.face.moustache import hair_color, render_moustache

    landmarks = demo_faces[0].landmarks
    color = hair_color(demo_rgb, landmarks)
    assert color.shape == (3,) and np.all(color < 200)  # hair, darker than skin
    patch, (x0, y0) = render_moustache(landmarks, color)
    alpha = np.zeros(demo_rgb.shape[:2])
    h, w = patch.shape[:2]
    alpha[max(y0, 0) : y0 + h, max(x0, 0) : x0 + w] = patch[max(-y0, 0) :, max(-x0, 0) :, 3] / 255.0
    ys, xs = np.nonzero(alpha > 0.5)
    assert len(ys) > 200
    assert landmarks[33, 1] - 3 <= ys.min() and ys.max() <= landmarks[57, 1]  # from the nose's base to the lips
    d = eye_frame(landmarks)[3]
    hair_y, hair_x = np.nonzero(alpha > 0.04)
    middle = (hair_x >= landmarks[50, 0]) & (hair_x <= landmarks[52, 0])
    # tips stop just below the upper lip's top edge (uncut, they reach 0.17 d below it; the face is a little tilted)
    assert hair_y[middle].max() <= landmarks[50:53, 1].max() + 0.1 * d
    assert landmarks[48, 0] - 0.2 * np.ptp(landmarks[:, 0]) < xs.min() and xs.max() < landmarks[54, 0] + 0.2 * np.ptp(landmarks[:, 0])
    painted = patch[..., :3][patch[..., 3] > 128].astype(float).mean(axis=0)
    assert np.abs(painted - color).max() < 40  # in the hair's colour
    again, _ = render_moustache(landmarks, color)
    other, _ = render_moustache(landmarks, color, seed=1)
    assert np.array_equal(patch, again) and not np.array_equal(patch, other)  # seeded strands


def test_a_painted_smile_is_the_warp_with_only_the_parted_lips_painted(demo_rgb, demo_faces):
    from faceflex.face.align import invert_affine, transform_points, transform_scale
    from faceflex.face.detect import detect_faces
    from faceflex.pipeline.flow import FaceCrop, compose
    from faceflex.steps.edit import MAX_PAINT_ENLARGEMENT, EditSettings, EditStep

    torch.manual_seed(0)
    painter = AttributePainter({"Smiling:add": FaceUNet(TINY)}, PRIOR, torch.device("cpu"))
    step = EditStep(EditSettings(attribute="Smiling", strengths=(2.0,), mode="paint", identity=False), painter=painter)

    def smiled(photo: np.ndarray, face) -> tuple[list, list, np.ndarray]:
        crops = [FaceCrop(0, face, align_face(photo, face.landmarks))]
        layers = next(iter(step(photo, crops).variants)).layers()
        return crops, layers, compose(photo, crops, layers)

    crops, layers, large = smiled(demo_rgb, demo_faces[0])  # her face is 4x the painting: teeth would be a blurred band
    assert 1 / transform_scale(crops[0].aligned.matrix) > MAX_PAINT_ENLARGEMENT
    assert [layer.mode for layer in layers] == ["warp", "add", "detail"] and np.any(large != demo_rgb)  # the warp, then the cheeks
    to = EditStep(EditSettings(attribute="Smiling", strengths=(1.0,), target=0.9, mode="paint", identity=False), painter=painter)
    reached = next(iter(to(demo_rgb, crops).variants))
    assert [layer.mode for layer in reached.layers()] == ["warp", "add", "detail"]  # --to judges the smile as it will be pasted
    small = np.asarray(Image.fromarray(demo_rgb).resize((demo_rgb.shape[1] // 3, demo_rgb.shape[0] // 3), Image.LANCZOS))
    crops, layers, _ = smiled(small, detect_faces(small)[0])
    aligned = crops[0].aligned
    # the photo's own mouth moved, then painted between the lips; then the cheeks (tested in test_prototypes.py)
    assert [layer.mode for layer in layers] == ["warp", "replace", "add", "detail"]
    warped, painted = compose(small, crops, layers[:1]), compose(small, crops, layers[:2])
    assert np.any(warped != small)
    differ = np.any(painted != warped, axis=2)
    after = transform_points(aligned.landmarks + 2.0 * step.moves[0], invert_affine(aligned.matrix))  # the mouth after the warp
    mouth = np.vstack([crops[0].face.landmarks[48:68], after[48:68]])
    (x0, y0), (x1, y1) = mouth.min(axis=0), mouth.max(axis=0)
    ys, xs = np.nonzero(differ)
    assert len(ys) > 20  # teeth, or the mouth's dark, where the warp parted the lips
    pad = 2.5 / transform_scale(aligned.matrix)  # the painted region: grown 1 aligned px, softened by 1
    assert xs.min() >= x0 - pad and xs.max() <= x1 + pad and ys.min() >= y0 - pad and ys.max() <= y1 + pad
    whole = region_hole(aligned.landmarks + 2.0 * step.moves[0], HOLES["Smiling"][0]).sum() / transform_scale(aligned.matrix) ** 2
    assert differ.sum() < 0.5 * whole  # between the lips, not the whole mouth with its smile folds


def test_lips_pushed_through_each_other_meet_instead():
    from faceflex.steps.edit import INNER_LIP_PAIRS, OUTER_LIP_PAIRS, lips_uncrossed

    landmarks = template_landmarks().astype(np.float64)
    opening = landmarks[66, 1] - landmarks[62, 1]
    move = np.zeros((68, 2))
    move[62, 1], move[66, 1] = opening, -opening  # the middle of the inner lips pushed past each other
    move[48, 0] = -2.0  # a corner moved out: kept
    out = lips_uncrossed(landmarks, move)
    moved = landmarks + out
    assert np.allclose(moved[62], moved[66]) and np.allclose(moved[62], (landmarks[62] + landmarks[66]) / 2)
    assert np.allclose(out[48], move[48])
    for a, b in INNER_LIP_PAIRS + OUTER_LIP_PAIRS:
        assert moved[a, 1] <= moved[b, 1] + 1e-9
    gentle = np.zeros((68, 2))
    gentle[62, 1] = 0.25 * opening  # lips closing a little: nothing to do
    assert np.allclose(lips_uncrossed(landmarks, gentle), gentle)


def test_teeth_are_painted_only_where_none_show_yet():
    from faceflex.steps.edit import TEETH_SHOW, lips_opening, teeth_painted

    closed = template_landmarks().astype(np.float64)
    for a, b in ((61, 67), (62, 66), (63, 65)):
        closed[a, 1] = closed[b, 1] = (closed[a, 1] + closed[b, 1]) / 2
    grin = closed.copy()
    grin[[65, 66, 67], 1] += 2 * TEETH_SHOW  # teeth already show
    assert lips_opening(closed) == pytest.approx(0) and lips_opening(grin) == pytest.approx(2 * TEETH_SHOW)
    assert teeth_painted(closed) and not teeth_painted(grin)


def test_a_painting_is_taken_only_where_it_changes_the_face():
    from faceflex.inference.attribute_painting import changed_weight

    face = np.full((16, 16, 3), 120, np.uint8)
    painted = face.copy()
    painted[:, :8] += 3  # repeats the skin within 5: the face's own pixels stay
    painted[8, 12] = 0  # a frame painted away: taken, and its neighbours partly
    weight = changed_weight(painted, face)
    assert weight.dtype == np.float32 and weight.shape == (16, 16)
    assert np.all(weight[:, :6] == 0) and weight[8, 12] == 1 and 0 < weight[8, 14] < 1 and weight[2, 12] == 0
    assert np.all(changed_weight(face, face) == 0)


def test_paint_mode_edits_what_the_cli_offers_to_train():
    from faceflex.choices import PAINTED_ATTRIBUTES
    from faceflex.inference.attribute_painting import PAINTED

    assert set(PAINTED) == set(PAINTED_ATTRIBUTES) == set(HOLES)
