"""Classifier training on tiny synthetic sets: loss falls, resume is exact, exported weights load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceflex.inference.classifiers import load_task_model
from faceflex.models.classifier_nets import ClassifierConfig, build_classifier, predict
from faceflex.train.classifier_trainer import (
    TASKS,
    ClassifierSettings,
    ClassifierTrainer,
    augment,
    class_weights,
    erase_rectangles,
    evaluate_part,
)
from faceflex.train.face_sets import TEST, TRAIN, VAL, LabelledSet, seeded_split

TINY = ClassifierSettings(epochs=2, batch_size=16, lr=3e-3, widths=(8, 16), stem=4)


def synthetic(task: str, n: int = 96) -> LabelledSet:
    """Images whose labels are learnable: the label sets the brightness of the left half."""
    spec = TASKS[task]
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, n)
    images = rng.integers(0, 60, (n, spec.image_size, spec.image_size, spec.in_channels)).astype(np.uint8)
    images[label == 1, :, : spec.image_size // 2] += 150
    targets = {
        "attributes": {"attributes": np.repeat(label[:, None], 10, axis=1).astype(np.float32)},
        "expression": {"expression": label * 3},
        "age": {"age": (20 + 40 * label).astype(np.float32), "gender": label},
        "face": {
            # the first half CelebA-HQ-like (attributes, no age), the second UTKFace-like (Male and age only)
            "attributes": np.where(np.arange(n)[:, None] < n // 2, label[:, None], np.nan).astype(np.float32).repeat(10, axis=1),
            "age": np.where(np.arange(n) < n // 2, np.nan, 20 + 40 * label).astype(np.float32),
            "race": np.where(np.arange(n) < n // 2, -1, np.arange(n) % 5),
            "source": (np.arange(n) >= n // 2).astype(np.int64),
        },
    }[task]
    if task == "face":
        targets["attributes"][n // 2 :, 0] = label[n // 2 :]  # UTKFace rows know Male (column 0)
    return LabelledSet(images, targets, seeded_split(n, 0))


def test_seeded_split_is_fixed_and_sized():
    a, b = seeded_split(1000, 7), seeded_split(1000, 7)
    assert np.array_equal(a, b)
    assert (a == TEST).sum() == 100 and (a == VAL).sum() == 100 and (a == TRAIN).sum() == 800
    assert not np.array_equal(a, seeded_split(1000, 8))


@pytest.mark.parametrize("task", ["attributes", "expression", "age", "face"])
def test_training_step_is_finite_and_loss_falls_on_a_repeated_batch(task, tmp_path):
    data = synthetic(task)
    trainer = ClassifierTrainer(TASKS[task], data, TINY, tmp_path, torch.device("cpu"))
    rows = data.rows("train")[:16]
    repeated = LabelledSet(data.images[np.tile(rows, 8)], {k: v[np.tile(rows, 8)] for k, v in data.targets.items()}, np.zeros(128, np.int8))
    trainer.data, trainer.train_rows = repeated, repeated.rows("train")
    trainer.steps_per_epoch = 8
    first = trainer.train_epoch()
    second = trainer.train_epoch()
    third = trainer.train_epoch()
    assert np.isfinite([first["loss"], second["loss"], third["loss"]]).all()
    assert third["loss"] < first["loss"]


@pytest.mark.parametrize("mixed", [False, True])
def test_training_steps_run_in_fp32_and_under_autocast(mixed, tmp_path, monkeypatch):
    # CPUs without native bfloat16 train in fp32: in the default layout, since torch 2.13 segfaults in
    # the fp32 channels_last backward of a 1x1 stride-2 convolution
    import faceflex.train.classifier_trainer as classifier_trainer
    import faceflex.train.trainer as trainer_module

    for module in (classifier_trainer, trainer_module):
        monkeypatch.setattr(module, "mixed_precision", lambda device: mixed)
    data = synthetic("attributes")
    trainer = ClassifierTrainer(TASKS["attributes"], data, TINY, tmp_path, torch.device("cpu"))
    trainer.steps_per_epoch = 2
    assert np.isfinite(trainer.train_epoch()["loss"])
    weight = next(p for p in trainer.model.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last if mixed else torch.contiguous_format)


def test_an_epoch_is_checkpointed_before_its_evaluation_runs(tmp_path, monkeypatch):
    trainer = ClassifierTrainer(TASKS["expression"], synthetic("expression"), TINY, tmp_path, torch.device("cpu"))

    def broken():
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(trainer, "evaluate", broken)
    with pytest.raises(RuntimeError):
        trainer.run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_resume_gives_the_same_state_as_uninterrupted_training(tmp_path):
    data = synthetic("expression")
    straight = ClassifierTrainer(TASKS["expression"], data, TINY, tmp_path / "a", torch.device("cpu"))
    straight.run()
    first = ClassifierTrainer(TASKS["expression"], data, TINY, tmp_path / "b", torch.device("cpu"))
    first.settings = ClassifierSettings(**{**vars(TINY), "epochs": 1})
    first.run()
    resumed = ClassifierTrainer(TASKS["expression"], data, TINY, tmp_path / "b", torch.device("cpu"))
    resumed.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    resumed.run()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_a_run_stopped_within_an_epoch_goes_on_from_its_last_checkpoint_as_if_never_stopped(tmp_path, monkeypatch):
    data = synthetic("expression")
    straight = ClassifierTrainer(TASKS["expression"], data, TINY, tmp_path / "a", torch.device("cpu"))
    straight.run()
    stopped = ClassifierTrainer(TASKS["expression"], data, TINY, tmp_path / "b", torch.device("cpu"))
    stopped.checkpoint_seconds = 0.0  # a checkpoint after every step
    assert stopped.steps_per_epoch >= 4
    step_loss, steps = stopped.step_loss, []

    def killed_in_the_second_epoch(rows, generator):
        steps.append(len(rows))
        if len(steps) == stopped.steps_per_epoch + 3:
            raise KeyboardInterrupt
        return step_loss(rows, generator)

    monkeypatch.setattr(stopped, "step_loss", killed_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        stopped.run()
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["within_epoch"]["step"] == 2
    before = state["within_epoch"]["seconds"]
    assert before > 0
    resumed = ClassifierTrainer(TASKS["expression"], data, TINY, tmp_path / "b", torch.device("cpu"))
    resumed.load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    resumed.within_epoch["seconds"] = before + 1000.0  # as if the stopped process had run its epoch for 1000 s more
    resumed.run()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert straight.history[-1]["loss"] == resumed.history[-1]["loss"]
    assert resumed.history[-1]["seconds"] >= 1000  # the epoch's time counts its run before the stop
    assert "within_epoch" not in torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)


def test_exported_weights_load_and_predict_deterministically(tmp_path):
    data = synthetic("age")
    trainer = ClassifierTrainer(TASKS["age"], data, TINY, tmp_path, torch.device("cpu"))
    trainer.run()
    model = load_task_model("age", tmp_path / "age.pt")[0]
    a = predict(model, data.images[:10], torch.device("cpu"))
    b = predict(model, data.images[:10], torch.device("cpu"))
    assert np.array_equal(a["age"], b["age"]) and a["gender"].shape == (10, 2)
    report = evaluate_part(TASKS["age"], model, data, "test", torch.device("cpu"))
    assert {"age_mae", "gender_accuracy", "count"} <= set(report)


def test_augment_is_seeded_and_keeps_range():
    x = torch.rand(4, 3, 64, 64)
    a = augment(x, ClassifierSettings(), torch.Generator().manual_seed(3))
    b = augment(x, ClassifierSettings(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1


def test_vgg_expression_net_trains_exports_and_mirror_averages(tmp_path):
    settings = ClassifierSettings(**{**vars(TINY), "arch": "vgg", "convs": 1, "flip_average": True, "class_weights": "sqrt", "erase": 0.5})
    data = synthetic("expression")
    trainer = ClassifierTrainer(TASKS["expression"], data, settings, tmp_path, torch.device("cpu"))
    trainer.run()
    model, meta = load_task_model("expression", tmp_path / "expression.pt")
    assert model.config.arch == "vgg" and model.config.flip_average and "expression" in meta["temperatures"]
    images = data.images[:6]
    mirrored = predict(model, images[:, :, ::-1], torch.device("cpu"))["expression"]
    assert np.allclose(predict(model, images, torch.device("cpu"))["expression"], mirrored, atol=1e-5)
    plain = build_classifier(ClassifierConfig.from_dict({**model.config.to_dict(), "flip_average": False}))
    plain.load_state_dict(model.state_dict())
    unmirrored = predict(plain, images, torch.device("cpu"))["expression"]
    assert not np.allclose(unmirrored, predict(plain, images[:, :, ::-1], torch.device("cpu"))["expression"], atol=1e-5)


def test_weights_written_before_the_architecture_field_read_as_mini_xception():
    old = {"in_channels": 1, "image_size": 48, "stem": 8, "widths": [16, 32], "heads": {"expression": 7}, "dropout": 0.1}
    config = ClassifierConfig.from_dict(old)
    assert config.arch == "mini_xception" and not config.flip_average
    assert type(build_classifier(config)).__name__ == "MiniXception"
    with pytest.raises(ValueError, match="architecture"):
        ClassifierConfig.from_dict({**old, "arch": "resnet"})


def test_class_weights_favour_rare_classes_and_keep_the_mean_loss_scale():
    labels = np.array([0] * 90 + [1] * 10)
    for weighting, ratio in (("sqrt", 3.0), ("balanced", 9.0)):
        w = class_weights(labels, 2, weighting).numpy()
        assert w[1] / w[0] == pytest.approx(ratio, rel=1e-5)
        assert (0.9 * w[0] + 0.1 * w[1]) == pytest.approx(1.0, rel=1e-5)
    assert class_weights(labels, 2, "none") is None


def test_erasing_blanks_one_rectangle_per_chosen_image_with_its_mean():
    x = torch.rand(64, 1, 48, 48)
    out = erase_rectangles(x, 0.5, torch.Generator().manual_seed(1))
    changed = (out != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54
    for i in torch.nonzero(changed).flatten()[:5]:
        rows, cols = torch.nonzero(out[i, 0] != x[i, 0], as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 48 / 8 - 1 <= rows.max() - rows.min() + 1 <= 48 / 3 + 1 and int(box) >= len(rows)
        assert torch.allclose(out[i, 0, rows, cols], x[i].mean().expand(len(rows)))
    assert torch.equal(erase_rectangles(x, 0.0, torch.Generator()), x)


def test_fer_labels_come_from_the_emotion_names(tmp_path):
    from faceflex.models.labels import EXPRESSIONS
    from faceflex.train.face_sets import CKPLUS_TO_FER, read_fer_labels

    (tmp_path / "labels.csv").write_text("path,emotion,label\na.jpg,surprise,6\nb.jpg,Neutral,4\nc.jpg,sad,5\n")
    _, labels = read_fer_labels(tmp_path)
    assert [EXPRESSIONS[i] for i in labels] == ["surprise", "neutral", "sad"]
    assert EXPRESSIONS[CKPLUS_TO_FER["sadness"]] == "sad" and EXPRESSIONS[CKPLUS_TO_FER["surprise"]] == "surprise"


def test_shared_fer_numbers_match_the_shipped_output_order(shared_data):
    import csv

    from faceflex.train.face_sets import read_fer_labels

    _, labels = read_fer_labels(shared_data / "fer2013")
    with open(shared_data / "fer2013" / "labels.csv", newline="") as handle:
        numbers = [int(row["label"]) for row in csv.DictReader(handle)]
    assert labels.tolist() == numbers  # the shipped expression model was trained on these numbers


def test_face_task_figures_per_source_age_band_and_race():
    from faceflex.train.classifier_trainer import face_metrics

    # 4 CelebA-HQ rows (Male known, 2 right) and 6 UTKFace rows: ages 10, 30, 50, 70, 70, 70
    attributes = np.full((10, 10), np.nan, np.float32)
    attributes[:4] = 1.0
    attributes[4:, 0] = [1, 0, 1, 0, 0, 1]
    targets = {
        "attributes": attributes,
        "age": np.array([np.nan] * 4 + [10, 30, 50, 70, 70, 70], np.float32),
        "race": np.array([-1] * 4 + [0, 1, 2, 2, 2, 4]),
        "source": np.array([0] * 4 + [1] * 6),
    }
    male_logit = np.array([5, 5, -5, -5] + [5, -5, -5, -5, 5, 5], np.float32)  # UTKFace: rows 6 and 8 wrong
    logits = np.repeat(male_logit[:, None], 10, axis=1)
    age_logits = np.full((10, 101), -50.0, np.float32)
    for row, years in zip(range(4, 10), [12, 30, 50, 60, 70, 75]):
        age_logits[row, years] = 50.0  # all mass on one year
    report = face_metrics({"attributes": logits, "age": age_logits}, targets)
    assert report["gender"]["celeba_hq"] == 0.5 and report["gender"]["utkface"] == pytest.approx(4 / 6, abs=1e-4)
    assert report["gender"]["utkface_by_age"] == {"<20": 1.0, "20-40": 1.0, "40-60": 0.0, "60+": pytest.approx(2 / 3, abs=1e-4)}
    assert report["gender"]["utkface_by_race"] == {
        "White": 1.0,
        "Black": 1.0,
        "Asian": pytest.approx(1 / 3, abs=1e-4),
        "Indian": None,
        "Others": 1.0,
    }
    assert report["age_mae"] == pytest.approx((2 + 0 + 0 + 10 + 0 + 5) / 6, abs=1e-3)
    assert report["age_mae_by_band"]["60+"] == pytest.approx(5.0, abs=1e-3) and report["age_mae_by_band"]["<20"] == pytest.approx(
        2.0, abs=1e-3
    )
    assert report["count"]["utkface_by_age"] == {"<20": 1, "20-40": 1, "40-60": 1, "60+": 3}


def test_temperature_scaling_reduces_the_calibration_error_of_an_over_confident_model():
    from faceflex.evaluation.calibration import binary_ece, fit_temperature, softmax_ece

    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 5000)
    labels = rng.random(5000) < 1 / (1 + np.exp(-z))  # z are calibrated logits ...
    over = 3 * z  # ... and the model says three times as much
    t = fit_temperature(over, labels)
    assert 2.5 < t < 3.5 and binary_ece(over, labels, t) < binary_ece(over, labels) / 4
    classes = rng.normal(0, 2, (3000, 4))
    p = np.exp(classes) / np.exp(classes).sum(axis=1, keepdims=True)
    drawn = (rng.random(3000)[:, None] > p.cumsum(axis=1)).sum(axis=1)
    t = fit_temperature(3 * classes, drawn)
    assert 2.5 < t < 3.5 and softmax_ece(3 * classes, drawn, t) < softmax_ece(3 * classes, drawn) / 4
    assert fit_temperature(z, labels) == pytest.approx(1.0, abs=0.15)  # a calibrated model keeps T near 1


def test_face_weights_carry_temperatures_and_the_evaluation_reports_calibration(tmp_path):
    data = synthetic("face")
    trainer = ClassifierTrainer(TASKS["face"], data, TINY, tmp_path, torch.device("cpu"))
    trainer.run()
    model, meta = load_task_model("face", tmp_path / "face.pt")
    assert len(meta["temperatures"]["attributes"]) == 10 and all(t > 0 for t in meta["temperatures"]["attributes"])
    report = evaluate_part(TASKS["face"], model, data, "test", torch.device("cpu"), meta["temperatures"])
    assert {"ece", "ece_calibrated", "temperature"} <= set(report["calibration"]["Male"])
    assert set(report["gender"]["utkface_by_age"]) == {"<20", "20-40", "40-60", "60+"}
    assert model(torch.zeros(1, 3, 64, 64))["age"].shape == (1, 101)


def test_balanced_sources_weigh_the_rarer_source_as_much_in_the_shared_column():
    from faceflex.train.classifier_trainer import face_loss

    n = 10  # 8 CelebA-HQ rows (all right), 2 UTKFace rows (both wrong) that know only Male
    labels = np.full((n, 10), np.nan, np.float32)
    labels[:8] = 1.0
    labels[8:, 0] = 1.0
    logits = np.full((n, 10), 4.0, np.float32)
    logits[8:, 0] = -4.0
    targets = {
        "attributes": torch.from_numpy(labels),
        "age": torch.full((n,), float("nan")),
        "source": torch.tensor([0] * 8 + [1] * 2),
    }
    outputs = {"attributes": torch.from_numpy(logits), "age": torch.zeros(n, 101)}
    pooled = float(face_loss(outputs, targets, 3.0))
    balanced = float(face_loss(outputs, targets, 3.0, balance_sources=True))
    wrong, right = float(np.log1p(np.exp(4.0))), float(np.log1p(np.exp(-4.0)))
    assert pooled == pytest.approx(((8 * right + 2 * wrong) / 10 + 9 * right) / 10, rel=1e-4)
    assert balanced == pytest.approx(((right + wrong) / 2 + 9 * right) / 10, rel=1e-4)
    targets["age"] = torch.tensor([float("nan")] * 8 + [30.0, 70.0])
    with_age, half_age = [float(face_loss(outputs, targets, 3.0, age_weight=w)) for w in (1.0, 0.5)]
    assert with_age - pooled == pytest.approx(2 * (half_age - pooled), rel=1e-4) and with_age > pooled


def test_descriptor_head_is_trained_then_left_out_of_the_exported_weights(tmp_path):
    data = synthetic("face")
    rng = np.random.default_rng(1)
    descriptor = rng.normal(size=(len(data.images), 128)).astype(np.float32)
    descriptor[::7] = np.nan  # faces dlib found no landmarks on
    data.targets["descriptor"] = descriptor
    settings = ClassifierSettings(**{**vars(TINY), "descriptor_weight": 1.0})
    trainer = ClassifierTrainer(TASKS["face"], data, settings, tmp_path, torch.device("cpu"))
    assert trainer.model.config.heads["descriptor"] == 128
    trainer.run()
    model, _ = load_task_model("face", tmp_path / "face.pt")
    assert set(model.config.heads) == {"attributes", "age"}
    trained = trainer.model.eval()(torch.from_numpy(data.images[:4]).permute(0, 3, 1, 2).float() / 255)
    shipped = model(torch.from_numpy(data.images[:4]).permute(0, 3, 1, 2).float() / 255)
    assert torch.allclose(trained["attributes"], shipped["attributes"], atol=0.05)  # fp16 weights
    with pytest.raises(ValueError, match="descriptor"):
        ClassifierTrainer(TASKS["face"], synthetic("face"), settings, tmp_path / "x", torch.device("cpu"))


def test_descriptor_loss_is_the_weighted_squared_error_over_rows_that_have_one():
    from faceflex.train.classifier_trainer import face_loss

    n = 4
    targets = {
        "attributes": torch.ones(n, 10),
        "age": torch.full((n,), float("nan")),
        "source": torch.zeros(n, dtype=torch.int64),
        "descriptor": torch.tensor([[1.0, 1.0], [0.0, 0.0], [float("nan"), float("nan")], [2.0, 0.0]]),
    }
    outputs = {"attributes": torch.full((n, 10), 3.0), "age": torch.zeros(n, 101), "descriptor": torch.zeros(n, 2)}
    base = float(face_loss(outputs, targets, 3.0))
    with_descriptor = float(face_loss(outputs, targets, 3.0, descriptor_weight=0.5))
    assert with_descriptor - base == pytest.approx(0.5 * (2 + 0 + 4) / 6, rel=1e-5)


def test_face_descriptors_are_dlibs_and_cached(demo_rgb, demo_faces, tmp_path):
    from faceflex.face.align import align_face
    from faceflex.face.identity import face_descriptor
    from faceflex.train.face_sets import cached_face_descriptors, standardised

    face = align_face(demo_rgb, demo_faces[0].landmarks)
    faces = np.stack([face.image, face.image[:, ::-1]])
    landmarks = np.stack([face.landmarks, np.full((68, 2), np.nan)])
    cache = tmp_path / "d.npz"
    first = cached_face_descriptors(faces, landmarks, cache)
    assert np.allclose(first[0], face_descriptor(face.image, face.landmarks)) and np.isnan(first[1]).all()
    np.savez(cache, descriptors=np.zeros((2, 128), np.float32))
    assert (cached_face_descriptors(faces, landmarks, cache) == 0).all()  # read from the cache, not recomputed
    values = np.array([[1.0, 10.0], [3.0, 30.0], [100.0, 0.0]])
    z = standardised(values, np.array([0, 1]))
    assert np.allclose(z[:2], [[-1, -1], [1, 1]]) and z[2, 0] == pytest.approx(98.0)


def test_an_ensemble_averages_its_members_and_refits_the_temperature(tmp_path):
    from dataclasses import replace

    from faceflex.models.classifier_nets import Ensemble
    from faceflex.models.weights import save_weights
    from faceflex.train.classifier_trainer import combine_members

    data = synthetic("expression")
    settings = ClassifierSettings(**{**vars(TINY), "arch": "vgg", "convs": 1, "flip_average": True})
    members = []
    for seed in (0, 1):
        trainer = ClassifierTrainer(TASKS["expression"], data, replace(settings, seed=seed), tmp_path / str(seed), torch.device("cpu"))
        trainer.run()
        members.append(load_task_model("expression", tmp_path / str(seed) / "expression.pt"))
    ensemble, meta = combine_members(TASKS["expression"], members, data, torch.device("cpu"), flip_average=False)
    assert isinstance(ensemble, Ensemble) and ensemble.config.members == 2 and not ensemble.config.flip_average
    assert len(meta["members"]) == 2 and meta["temperatures"]["expression"] > 0
    images = data.images[:5]
    single = [build_classifier(replace(m.config, flip_average=False)) for m, _ in members]
    for net, (member, _) in zip(single, members):
        net.load_state_dict(member.state_dict())
    expected = np.mean([predict(net, images, torch.device("cpu"))["expression"] for net in single], axis=0)
    save_weights(tmp_path / "ensemble.pt", ensemble, ensemble.config.to_dict(), meta)
    loaded, _ = load_task_model("expression", tmp_path / "ensemble.pt")
    assert np.allclose(predict(loaded, images, torch.device("cpu"))["expression"], expected, atol=0.05)  # fp16 weights
    other = ClassifierTrainer(TASKS["expression"], data, replace(settings, widths=(8, 32)), tmp_path / "w", torch.device("cpu"))
    with pytest.raises(ValueError, match="same architecture"):
        combine_members(TASKS["expression"], [members[0], (other.model, {})], data, torch.device("cpu"))


def test_the_shipped_expression_model_is_a_two_member_ensemble_with_its_temperature():
    model, meta = load_task_model("expression")
    assert model.config.members == 2 and len(meta["members"]) == 2
    assert [m["epochs"] for m in meta["members"]] == [30, 60] and 0.5 < meta["temperatures"]["expression"] < 1.5


def test_the_age_distribution_gives_its_mean_and_how_sure_it_is():
    from faceflex.models.labels import AGE_MAX, age_distribution

    logits = np.full((2, AGE_MAX + 1), -50.0)
    logits[0, 37] = 0.0  # all on one year
    logits[1, [20, 40]] = 0.0  # two years alike
    years, spread = age_distribution(logits)
    assert np.allclose(years, [37, 30]) and np.allclose(spread, [0, 10], atol=1e-6)
