"""Configuration: built-in defaults (configs/default.yaml) < a user YAML file < command-line flags.

Every key is validated; unknown keys and bad values raise :class:`ConfigError` naming the key
and what is allowed.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from faceflex.choices import (
    ANONYMIZE_METHODS,
    BACKENDS,
    CLASS_WEIGHTINGS,
    CLASSIFIER_ARCHITECTURES,
    CLASSIFIER_TASKS,
    DETECTORS,
    DEVICES,
    EDIT_MODES,
    EDIT_REGIONS,
    FACES,
    GLASSES_KINDS,
    MANIFEST_FORMATS,
    MASK_TYPES,
    PAINTED_ATTRIBUTES,
)


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


def _choice(*allowed: str) -> Callable[[str, Any], Any]:
    """One of ``allowed``, in any case; returned as ``allowed`` spells it (N95, not n95)."""

    def check(key: str, value: Any) -> Any:
        spelt = {a.lower(): a for a in allowed}.get(value.lower()) if isinstance(value, str) else None
        if spelt is None:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(allowed)}")
        return spelt

    return check


def _spelt(*allowed: str) -> Callable[[str, Any], Any]:
    """One of ``allowed``, spelt exactly (attribute names)."""

    def check(key: str, value: Any) -> Any:
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(allowed)}")
        return value

    return check


def _number(kind: type, low: float | None = None, high: float | None = None, nullable: bool = False):
    def check(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} is not a finite number")
        if ok and kind is int and isinstance(value, float):
            ok = value.is_integer()
        if not ok:
            raise ConfigError(f"{key}: {value!r} is not {'an integer' if kind is int else 'a number'}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{key}: {value!r} is out of range; it must be {bounds}")
        return kind(value)

    return check


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is not true or false")
    return value


def _workers(key: str, value: Any) -> int | str:
    if isinstance(value, str) and value.lower() == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise ConfigError(f"{key}: {value!r} is not allowed; give a number of worker processes (1-1024) or auto")
    return value


def _path(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{key}: {value!r} is not a path")
    return str(value)


def _int_list(key: str, value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(f"{key}: {value!r} is not a list of positive integers")
    return tuple(value)


def _range(key: str, value: Any) -> tuple[float, float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    ):
        raise ConfigError(f"{key}: {value!r} is not [start, end, step] of finite numbers")
    return tuple(float(v) for v in value)


def _index_list(key: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        raise ConfigError(f"{key}: {value!r} is not a list of version numbers (0, 1, ...)")
    return tuple(value)


def comma_list(text: str) -> list[str]:
    """``"Male, Eyeglasses,"`` -> ``["Male", "Eyeglasses"]``: the one parser of comma-separated lists."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _name_list(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = comma_list(value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{key}: {value!r} is not a list of names")
    return tuple(v.strip() for v in value)


def _name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: {value!r} is not a name")
    return value.strip()


def _optional_name(key: str, value: Any) -> str | None:
    return None if value is None else _name(key, value)


SCHEMA: dict[str, Callable[[str, Any], Any]] = {
    "device": _choice(*DEVICES),
    "seed": _number(int, 0, 2**32 - 1),
    "input.recursive": _boolean,
    "input.max_pixels": _number(int, 1),
    "output.out_dir": _path,
    "output.manifest": _path,
    "output.format": _choice(*MANIFEST_FORMATS),
    "output.skip_existing": _boolean,
    "output.jpeg_quality": _number(int, 1, 100),
    "run.workers": _workers,
    "run.backend": _choice(*BACKENDS),
    "detect.faces": _choice(*FACES),
    "detect.detector": _choice(*DETECTORS),
    "detect.max_side": _number(int, 80, 20000),
    "detect.upscale_side": _number(int, 80, 20000),
    "detect.max_upscale": _number(float, 1.0, 8.0),
    "detect.upsample": _number(int, 0, 3),
    "detect.threshold": _number(float, -10.0, 10.0),
    "detect.min_face": _number(float, 0),
    "paste.feather": _number(float, 0.0, 0.5),
    "edit.image_filename": _path,
    "edit.attribute": _name,
    "edit.parameter_range": _range,
    "edit.sample_size": _number(int, 0, 1000),
    "edit.versions": _index_list,
    "edit.mode": _choice(*EDIT_MODES),
    "edit.region": _choice(*EDIT_REGIONS),
    "edit.orthogonal_to": _name_list,
    "edit.vectors": _path,
    "edit.landmarks": _path,
    "edit.painter": _path,
    "edit.prototypes": _path,
    "edit.glasses": _choice(*GLASSES_KINDS),
    "edit.weights": _path,
    "edit.plot": _boolean,
    "edit.plot_masks": _boolean,
    "edit.identity": _boolean,
    "unmask.detector": _choice(*DETECTORS),
    "unmask.threshold": _number(float, -10.0, 10.0),
    "unmask.save_mask": _boolean,
    "unmask.weights": _path,
    "unmask.detail_weights": _path,
    "mask.type": _choice(*MASK_TYPES),
    "mask.color": _optional_name,
    "mask.texture": _optional_name,
    "vae.latent": _number(int, 8, 4096),
    "vae.channels": _int_list,
    "vae.spatial": _boolean,
    "vae.res_blocks": _number(int, 0, 64),
    "train_vae.source": _path,
    "train_vae.cache": _path,
    "train_vae.out": _path,
    "train_vae.epochs": _number(int, 1, 10000),
    "train_vae.batch_size": _number(int, 1, 4096),
    "train_vae.lr": _number(float, 1e-7, 1.0),
    "train_vae.beta": _number(float, 0.0, 100.0),
    "train_vae.kl_warmup_epochs": _number(float, 0.0, 1000.0),
    "train_vae.flip": _boolean,
    "train_vae.max_hours": _number(float, 0.0, 1000.0),
    "train_vae.init": _path,
    "train_vae.decoder_only": _boolean,
    "train_vae.ssim_weight": _number(float, 0.0, 1e6),
    "train_vae.laplacian_weight": _number(float, 0.0, 1e6),
    "train_vae.adversarial_weight": _number(float, 0.0, 100.0),
    "train_vae.adversarial_start": _number(int, 0, 10000),
    "train_vae.critic_lr": _number(float, 1e-7, 1.0),
    "unmask_net.channels": _int_list,
    "unmask_net.bottleneck_blocks": _number(int, 0, 64),
    "train_unmask.cache": _path,
    "train_unmask.out": _path,
    "train_unmask.init": _path,
    "train_unmask.epochs": _number(int, 1, 10000),
    "train_unmask.batch_size": _number(int, 1, 4096),
    "train_unmask.lr": _number(float, 1e-7, 1.0),
    "train_unmask.flip": _boolean,
    "train_unmask.max_hours": _number(float, 0.0, 1000.0),
    **{
        f"train_unmask.{key}": _number(float, 0.0, 1e6)
        for key in ("mask_weight", "l1_weight", "rim_weight", "chroma_weight", "ssim_weight", "laplacian_weight")
    },
    "train_unmask.chroma_block": _number(int, 1, 64),
    "train_unmask.l1_lowpass": _number(int, 1, 32),
    "train_unmask.rim_width": _number(int, 1, 32),
    "train_unmask.adversarial_weight": _number(float, 0.0, 100.0),
    "train_unmask.adversarial_start": _number(int, 0, 10000),
    "train_unmask.critic_lr": _number(float, 1e-7, 1.0),
    "train_unmask.bare_share": _number(float, 0.0, 1.0),
    "train_unmask.ear_loops": _number(float, 0.0, 1.0),
    "train_unmask.utkface": _path,
    "train_unmask.upper_frame": _number(float, 0.0, 1.0),
    "train_unmask.identity_weight": _number(float, 0.0, 1e6),
    "train_unmask.perceptual_weight": _number(float, 0.0, 1e6),
    "unmask_detail_net.channels": _int_list,
    "unmask_detail_net.bottleneck_blocks": _number(int, 0, 64),
    "train_unmask_detail.base": _path,
    "train_unmask_detail.cache": _path,
    "train_unmask_detail.out": _path,
    "train_unmask_detail.init": _path,
    "train_unmask_detail.epochs": _number(int, 1, 10000),
    "train_unmask_detail.batch_size": _number(int, 1, 4096),
    "train_unmask_detail.lr": _number(float, 1e-7, 1.0),
    "train_unmask_detail.flip": _boolean,
    "train_unmask_detail.max_hours": _number(float, 0.0, 1000.0),
    "train_unmask_detail.ear_loops": _number(float, 0.0, 1.0),
    "train_unmask_detail.upper_frame": _number(float, 0.0, 1.0),
    "train_unmask_detail.utkface": _path,
    **{f"train_unmask_detail.{key}": _number(float, 0.0, 1e6) for key in ("detail_l1_weight", "energy_weight")},
    "train_unmask_detail.adversarial_weight": _number(float, 0.0, 100.0),
    "train_unmask_detail.critic_lr": _number(float, 1e-7, 1.0),
    "anonymize.method": _choice(*ANONYMIZE_METHODS),
    "anonymize.seed": _number(int, 0, 2**63 - 1),
    "anonymize.save_parts": _boolean,
    "anonymize.weights": _path,
    "anonymize.normalise_shape": _number(float, 0.0, 1.0),
    "anonymize.keep_tone": _boolean,
    **{
        key: check
        for net, section in (("anonymizer_net", "train_anonymize"), ("painter_net", "train_paint"))
        for key, check in {
            f"{net}.channels": _int_list,
            f"{net}.bottleneck_blocks": _number(int, 0, 64),
            f"{section}.cache": _path,
            f"{section}.out": _path,
            f"{section}.init": _path,
            f"{section}.epochs": _number(int, 1, 10000),
            f"{section}.batch_size": _number(int, 1, 4096),
            f"{section}.lr": _number(float, 1e-7, 1.0),
            f"{section}.flip": _boolean,
            f"{section}.max_hours": _number(float, 0.0, 1000.0),
            **{
                f"{section}.{key}": _number(float, 0.0, 1e6)
                for key in (
                    "l1_weight",
                    "rim_weight",
                    "chroma_weight",
                    "ssim_weight",
                    "laplacian_weight",
                    "identity_weight",
                    "perceptual_weight",
                    "mouth_weight",
                )
            },
            f"{section}.chroma_block": _number(int, 1, 64),
            f"{section}.l1_lowpass": _number(int, 1, 32),
            f"{section}.rim_width": _number(int, 1, 32),
            f"{section}.adversarial_weight": _number(float, 0.0, 100.0),
            f"{section}.adversarial_start": _number(int, 0, 10000),
            f"{section}.critic_lr": _number(float, 1e-7, 1.0),
            f"{section}.code_dropout": _number(float, 0.0, 1.0),
            f"{section}.chip_jitter": _number(float, 0.0, 0.5),
            f"{section}.drawn_codes": _number(float, 0.0, 1.0),
            f"{section}.refit_points": _number(float, 0.0, 1.0),
            f"{section}.utkface": _path,
        }.items()
    },
    "train_paint.attribute": _spelt(*PAINTED_ATTRIBUTES),
    "train_paint.direction": _choice("add", "remove"),
    "train_paint.max_faces": _number(int, 0, 10_000_000),
    "train_paint.init_target": _optional_name,
    "train_classifier.data": _path,
    "train_classifier.cache": _path,
    "train_classifier.out": _path,
    "train_classifier.max_hours": _number(float, 0.0, 1000.0),
    **{
        f"train_classifier.{task}.{key}": check
        for task in CLASSIFIER_TASKS
        for key, check in {
            "epochs": _number(int, 1, 10000),
            "batch_size": _number(int, 1, 4096),
            "lr": _number(float, 1e-7, 1.0),
            "widths": _int_list,
            "stem": _number(int, 1, 1024),
            "dropout": _number(float, 0.0, 0.9),
            "rotate": _number(float, 0.0, 180.0),
            "scale": _number(float, 0.0, 0.9),
            "shift": _number(float, 0.0, 0.5),
            "photometric": _number(float, 0.0, 0.9),
            "label_smoothing": _number(float, 0.0, 0.5),
            "age_sigma": _number(float, 0.1, 30.0),
            "weight_decay": _number(float, 0.0, 1.0),
            "arch": _choice(*CLASSIFIER_ARCHITECTURES),
            "convs": _number(int, 1, 8),
            "flip_average": _boolean,
            "class_weights": _choice(*CLASS_WEIGHTINGS),
            "erase": _number(float, 0.0, 1.0),
            "balance_sources": _boolean,
            "age_weight": _number(float, 0.0, 100.0),
            "descriptor_weight": _number(float, 0.0, 100.0),
        }.items()
    },
    **{
        f"train_classifier.gender_age.{key}": check
        for key, check in {
            "epochs": _number(int, 1, 10000),
            "batch_size": _number(int, 1, 4096),
            "lr": _number(float, 1e-7, 1.0),
            "weight_decay": _number(float, 0.0, 1.0),
            "age_weight": _number(float, 0.0, 100.0),
            "age_sigma": _number(float, 0.1, 30.0),
            "from_block": _number(int, 1, 13),
        }.items()
    },
}

DEFAULT_FILES = ("default.yaml", "train_vae.yaml", "train_classifier.yaml", "train_unmask.yaml", "train_anonymize.yaml", "train_paint.yaml")


@functools.cache
def _defaults() -> dict:
    merged: dict = {}
    for name in DEFAULT_FILES:
        text = resources.files("faceflex.configs").joinpath(name).read_text()
        _merge(merged, validate(yaml.safe_load(text), f"built-in {name}"))
    return merged


def validate(tree: Any, source: str) -> dict:
    """Check a nested mapping against :data:`SCHEMA`; return it with values normalised."""
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, not {type(tree).__name__}")
    result: dict = {}
    for key, value in _flatten(tree).items():
        if key not in SCHEMA:
            section = key.split(".")[0] + "."
            allowed = ", ".join([k for k in SCHEMA if k.startswith(section)] or sorted(SCHEMA))
            raise ConfigError(f"{source}: unknown key '{key}'; allowed keys: {allowed}")
        try:
            _set(result, key, SCHEMA[key](key, value))
        except ConfigError as error:
            raise ConfigError(f"{source}: {error}") from None
    return result


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and name not in SCHEMA:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _merge(base: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """The effective configuration: defaults, then the YAML file at ``path``, then ``overrides``.

    ``overrides`` maps dotted keys (``"detect.detector"``) to values; ``None`` values are ignored,
    so unset command-line flags do not hide the file's values.
    """
    config = copy.deepcopy(_defaults())
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config file ({error.strerror or error})") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not a UTF-8 text file (byte {error.start}); a config file is YAML text") from None
        try:
            tree = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
        _merge(config, validate(tree, str(path)))
    if overrides:
        given = {key: value for key, value in overrides.items() if value is not None}
        flat_tree: dict = {}
        for key, value in given.items():
            _set(flat_tree, key, value)
        _merge(config, validate(flat_tree, "command line"))
    return config
