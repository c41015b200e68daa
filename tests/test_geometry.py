"""Pure geometry: similarity fits, warps, the template, masks and the paste-back round trip."""

from __future__ import annotations

import numpy as np
import pytest

from faceflex.face.align import (
    ALIGNED_SIZE,
    align_face,
    compose_affine,
    estimate_similarity,
    invert_affine,
    template_landmarks,
    transform_points,
    transform_scale,
    warp_image,
    warp_maps,
)
from faceflex.face.blend import paste_back
from faceflex.face.masks import REGIONS, convex_hull, gaussian_blur, region_mask


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]])


def smooth_photo(width: int, height: int) -> np.ndarray:
    """A photo with only low frequencies, so interpolation error is small and measurable."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        127 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0),
        127 + 100 * np.cos((x + y) / 41.0),
        127 + 100 * np.sin((x - 2 * y) / 37.0),
    ]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("params", [(0, 1, 0, 0), (25, 2.5, 300, -40), (-170, 0.3, 5, 9)])
def test_similarity_recovers_a_known_transform(params):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, size=(68, 2))
    truth = similarity(*params)
    fitted = estimate_similarity(src, transform_points(src, truth))
    np.testing.assert_allclose(fitted, truth, atol=1e-9)


def test_similarity_is_least_squares_under_noise():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, size=(68, 2))
    truth = similarity(10, 1.7, 12, -3)
    noisy = transform_points(src, truth) + rng.normal(0, 0.5, size=src.shape)
    fitted = estimate_similarity(src, noisy)
    np.testing.assert_allclose(fitted, truth, atol=0.2)
    # no other similarity nearby fits better
    base = np.sum((transform_points(src, fitted) - noisy) ** 2)
    for delta in (similarity(0.1, 1, 0, 0), similarity(0, 1.001, 0, 0), similarity(0, 1, 0.05, 0)):
        assert np.sum((transform_points(src, compose_affine(delta, fitted)) - noisy) ** 2) > base


def test_similarity_never_reflects():
    src = np.array([[0.0, 0], [10, 0], [0, 10], [3, 7], [9, 2]])
    mirrored = src * [-1, 1]
    fitted = estimate_similarity(src, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_similarity_rejects_degenerate_input():
    with pytest.raises(ValueError):
        estimate_similarity(np.zeros((5, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError):
        estimate_similarity(np.zeros((5, 2)), np.ones((4, 2)))


def test_invert_and_compose():
    m = similarity(33, 1.4, 7, -2)
    np.testing.assert_allclose(compose_affine(invert_affine(m), m), [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    assert transform_scale(m) == pytest.approx(1.4)


def test_warp_uses_integer_pixel_centres():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    shifted = warp_image(img, np.array([[1.0, 0, -3], [0, 1, -5]]), (20, 20))
    np.testing.assert_array_equal(shifted, img[5:25, 3:23])
    grey = img[:, :, 0].astype(np.float32)
    doubled = warp_image(grey, np.array([[2.0, 0, 0], [0, 2, 0]]), (20, 20))
    np.testing.assert_allclose(doubled[::2, ::2][:10, :10], grey[:10, :10], atol=1e-3)
    # half-way between two source pixels is their mean
    assert doubled[0, 1] == pytest.approx((grey[0, 0] + grey[0, 1]) / 2, abs=1e-3)


def test_warping_a_stack_of_maps_matches_warping_each_inside_the_source():
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(5, 32, 32)).astype(np.float32)
    angle, scale = 0.3, 4.2
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 40.0], [scale * np.sin(angle), scale * np.cos(angle), -7.0]])
    stacked = warp_maps(maps, matrix, (150, 160))
    each = np.stack([warp_image(m, matrix, (150, 160)) for m in maps])
    ys, xs = np.mgrid[:160, :150]
    source = transform_points(np.stack([xs.ravel(), ys.ravel()], 1), invert_affine(matrix)).reshape(160, 150, 2)
    inside = np.all((source >= 0) & (source <= 31), axis=-1)  # between the outer pixel centres
    assert inside.sum() > 5000
    np.testing.assert_allclose(stacked[:, inside], each[:, inside], atol=1e-4)
    assert np.all(stacked[:, ~np.all((source > -1) & (source < 32), axis=-1)] == 0)  # beyond the source: 0
    shrunk = np.array([[0.4, 0.0, 1.0], [0.0, 0.4, 2.0]])  # shrinking: box-averaged first, as warp_image does
    np.testing.assert_array_equal(warp_maps(maps, shrunk, (12, 12)), np.stack([warp_image(m, shrunk, (12, 12)) for m in maps]))


def test_template_properties():
    t = template_landmarks()
    assert t.shape == (68, 2)
    assert np.all((t > 0) & (t < ALIGNED_SIZE))
    left_eye, right_eye = t[36:42].mean(axis=0), t[42:48].mean(axis=0)
    np.testing.assert_allclose(left_eye, [48, 61.5], atol=1.0)
    np.testing.assert_allclose(right_eye, [79, 61.6], atol=1.0)
    # a frontal face: nose tip near the vertical midline of the eyes, chin below the mouth
    assert abs(t[30, 0] - (left_eye[0] + right_eye[0]) / 2) < 2
    assert t[8, 1] > t[57, 1] > t[33, 1] > left_eye[1] > t[19, 1]
    with pytest.raises(ValueError):
        t[0, 0] = 1.0  # read-only


def test_align_places_a_synthetic_face_on_the_template():
    truth = similarity(-20, 2.2, 150, 90)  # template -> photo
    photo_landmarks = transform_points(template_landmarks(), truth)
    aligned = align_face(smooth_photo(500, 450), photo_landmarks)
    np.testing.assert_allclose(aligned.landmarks, template_landmarks(), atol=1e-9)
    np.testing.assert_allclose(aligned.matrix, invert_affine(truth), atol=1e-9)
    assert aligned.image.shape == (128, 128, 3) and aligned.image.dtype == np.uint8


def test_alignment_really_rotates_pixels():
    """A bright dot at the left eye of a rotated face lands on the template's left eye."""
    truth = similarity(35, 1.5, 200, 100)
    landmarks = transform_points(template_landmarks(), truth)
    photo = np.zeros((400, 400, 3), dtype=np.uint8)
    x, y = np.round(landmarks[36:42].mean(axis=0)).astype(int)
    photo[y - 3 : y + 4, x - 3 : x + 4] = 255
    aligned = align_face(photo, landmarks)
    grey = aligned.image[:, :, 0].astype(float)
    centroid = np.array([(grey * np.arange(128)[None, :]).sum(), (grey * np.arange(128)[:, None]).sum()]) / grey.sum()
    expected = transform_points([[x, y]], aligned.matrix)[0]
    np.testing.assert_allclose(centroid, expected, atol=0.3)
    np.testing.assert_allclose(centroid, template_landmarks()[36:42].mean(axis=0), atol=1.0)


@pytest.mark.parametrize("angle, scale", [(0, 1.0), (17, 1.3), (-40, 0.8)])
def test_round_trip_changes_only_inside_the_mask(angle, scale):
    photo = smooth_photo(400, 360)
    landmarks = transform_points(template_landmarks(), similarity(angle, scale, 140, 120))
    aligned = align_face(photo, landmarks)
    mask = region_mask(aligned.landmarks, "face")
    out = paste_back(photo, aligned.image, aligned.matrix, mask)
    diff = np.abs(out.astype(int) - photo.astype(int)).max(axis=2)
    from faceflex.face.align import warp_image as warp

    support = warp(mask, invert_affine(aligned.matrix), (400, 360)) > 0
    assert diff[~support].max() == 0, "pixels outside the mask must not change"
    assert diff[support].max() <= 6 and diff[support].mean() < 1.0, "inside: interpolation error only"
    assert support.sum() > 0.5 * (scale * 60) ** 2


def test_paste_back_of_a_face_cut_by_the_border():
    photo = smooth_photo(200, 160)
    landmarks = transform_points(template_landmarks(), similarity(10, 1.5, -60, 40))  # half outside
    aligned = align_face(photo, landmarks)
    mask = region_mask(aligned.landmarks, "face")
    edited = np.full_like(aligned.image, 255)
    out = paste_back(photo, edited, aligned.matrix, mask)
    assert out.shape == photo.shape
    changed = np.abs(out.astype(int) - photo).max(axis=2) > 0
    assert changed[:, :40].any() and not changed[:, 150:].any()


def test_paste_back_touches_only_the_region_of_interest_for_two_faces():
    photo = smooth_photo(600, 300)
    out = photo
    for tx in (40, 330):
        landmarks = transform_points(template_landmarks(), similarity(0, 1.5, tx, 20))
        aligned = align_face(photo, landmarks)
        out = paste_back(out, np.zeros_like(aligned.image), aligned.matrix, region_mask(aligned.landmarks))
    changed = np.abs(out.astype(int) - photo).max(axis=2) > 0
    assert changed[:, :300].any() and changed[:, 300:].any()
    assert not changed[:, 270:330].any()  # between the faces


def test_convex_hull():
    pts = np.array([[0, 0], [4, 0], [4, 4], [0, 4], [2, 2], [1, 3], [4, 2]])
    hull = convex_hull(pts)
    assert {tuple(p) for p in hull} == {(0, 0), (4, 0), (4, 4), (0, 4)}


def test_gaussian_blur_keeps_mass_and_has_finite_support():
    img = np.zeros((41, 41), dtype=np.float32)
    img[20, 20] = 1
    out = gaussian_blur(img, 2.0)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    assert out[20, 20] == out.max()
    assert out[20, 27] == 0 and out[20, 26] > 0  # truncated at 3 sigma


@pytest.mark.parametrize("region", REGIONS)
def test_region_masks_are_soft_inside_the_frame_and_distinct(region):
    t = template_landmarks()
    mask = region_mask(t, region)
    assert mask.shape == (128, 128) and mask.dtype == np.float32
    assert mask.max() > 0.97 and mask.min() == 0.0
    assert mask[0].max() == 0 and mask[-1].max() == 0 and mask[:, 0].max() == 0 and mask[:, -1].max() == 0
    assert ((mask > 0) & (mask < 1)).sum() > 50  # feathered
    face = region_mask(t, "face")
    assert np.all(mask <= face + 0.35)  # every region lies within the face


def test_named_regions_cover_their_landmarks():
    t = template_landmarks()
    at = lambda mask, idx: mask[int(round(t[idx, 1])), int(round(t[idx, 0]))]  # noqa: E731
    assert at(region_mask(t, "mouth"), 51) > 0.9 and at(region_mask(t, "mouth"), 37) == 0
    assert at(region_mask(t, "eyes"), 37) > 0.9 and at(region_mask(t, "eyes"), 57) == 0
    assert at(region_mask(t, "upper-lip"), 33) > 0.5 and at(region_mask(t, "upper-lip"), 8) == 0
    forehead = region_mask(t, "face")[int(t[19, 1]) - 12, int(t[27, 0])]
    assert forehead > 0.9  # extended over the forehead


def test_feather_scales_with_face_size():
    t = template_landmarks()
    small = region_mask(t, "face", feather=0.04)
    big = region_mask((t - 64) * 2 + 128, "face", size=(256, 256), feather=0.04)
    soft_small = ((small > 0.01) & (small < 0.99)).sum()
    soft_big = ((big > 0.01) & (big < 0.99)).sum()
    assert 3.0 < soft_big / soft_small < 5.0  # area of the soft band grows with the square of size


def test_unknown_region_is_rejected():
    with pytest.raises(ValueError, match="choose one of"):
        region_mask(template_landmarks(), "nose")


def test_shrinking_warp_does_not_alias():
    from faceflex.face.align import warp_image

    stripes = np.zeros((256, 256), np.uint8)
    stripes[:, ::2] = 255  # finest possible detail: 1-px stripes
    small = warp_image(stripes, np.array([[0.25, 0.0, 0.0], [0.0, 0.25, 0.0]]), (60, 60))
    assert abs(float(small.mean()) - 127.5) < 3 and small.std() < 3  # grey, not stripes or moire
