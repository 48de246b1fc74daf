"""Load and save whole models and weights: ``.keras``, legacy ``.h5`` and ``.weights.h5``.

>>> model = load_model("mlp.keras")          # doctest: +SKIP
>>> model.save("copy.h5")                    # doctest: +SKIP
>>> model.save_weights("mlp.weights.h5")     # doctest: +SKIP

The format is told by the file's content (a zip archive or an HDF5 file), not its name.
Every write goes to a temporary file beside the target, then replaces it in one step.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from . import _budget, _h5, compat, keras_format, legacy_h5
from ._atomic import atomic_path
from .errors import KerasFileError, UnsafeFileError, UnsupportedLayerError
from .serialization import SUPPORTED_DTYPES, serving_dtype

__all__ = ["ModelFile", "load_model", "load_weights", "model_config", "read_model_file", "save_model", "save_weights"]


# --------------------------------------------------------------------------------------
# Reading files (no model needed)
# --------------------------------------------------------------------------------------


@dataclass
class ModelFile:
    """A model file's content, independent of any fastdense model.

    ``format`` is "keras" (.keras archive), "h5" (legacy HDF5 model), "weights.h5" (Keras 3
    weights file) or "legacy-weights.h5" (tf.keras weights-only HDF5). ``config`` is the model
    config as stored (None for weights files); ``layer_weights`` lists ``(layer name, arrays)``
    for each layer, in model order (for a .keras file, as named by the config).
    """

    path: str
    format: str
    config: dict[str, Any] | None
    metadata: dict[str, Any]
    layer_weights: list[tuple[str, list[np.ndarray]]]
    keras_tree: dict[str, list[np.ndarray]] | None = None
    legacy: legacy_h5.LegacyH5 | None = None


def _sniff(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except IsADirectoryError as exc:
        raise KerasFileError("is a directory, not a model file", path=path) from exc
    if keras_format.is_zip(head):
        return "zip"
    if _h5.has_hdf5_signature(path):
        return "hdf5"
    if not head:
        raise KerasFileError("the file is empty", path=path)
    raise KerasFileError(
        f"neither a .keras archive (zip) nor an HDF5 file (first bytes {head!r})", path=path
    )


def read_model_file(path: str | os.PathLike[str]) -> ModelFile:
    """Read a model or weights file without building anything.

    >>> import os, tempfile
    >>> from fastdense import Sequential, layers
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "mlp.keras")
    >>> Sequential([layers.Input((3,)), layers.Dense(4, name="hidden"), layers.Dense(2, name="out")]).save(path)
    >>> f = read_model_file(path)
    >>> f.format, f.config["class_name"], [name for name, _ in f.layer_weights]
    ('keras', 'Sequential', ['hidden', 'out'])
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such model file: {path}")
    if _sniff(path) == "zip":
        archive = keras_format.read_keras_archive(path)
        layer_weights = [
            (name, archive.weights.get(wpath, []))
            for wpath, name, _ in keras_format.config_layer_paths(archive.config)
        ]
        return ModelFile(path, "keras", archive.config, archive.metadata, layer_weights, keras_tree=archive.weights)
    if legacy_h5.is_weights_only(path):
        tree, names = keras_format.read_weight_tree(path, path)
        layer_weights = [(names.get(p, p), arrays) for p, arrays in tree.items() if p]
        return ModelFile(path, "weights.h5", None, {}, layer_weights, keras_tree=tree)
    legacy = legacy_h5.read_legacy_h5(path)
    metadata = {"keras_version": legacy.keras_version, "backend": legacy.backend}
    kind = "h5" if legacy.config is not None else "legacy-weights.h5"
    return ModelFile(path, kind, legacy.config, metadata, legacy.layers, legacy=legacy)


# --------------------------------------------------------------------------------------
# Applying weights to a model
# --------------------------------------------------------------------------------------


# Weights a layer computes from its config rather than learns: the file's copy must be the one the
# config gives (Keras's int4 ``g_idx``, the input block of each kernel row, is used by Keras's own
# forward pass, while fastdense runs the blocks in order: a file with another g_idx would give
# other outputs).
_DERIVED_WEIGHTS = frozenset({"g_idx"})


def _value_problem(value: np.ndarray, expected: np.ndarray, name: str) -> str | None:
    """Why ``value`` (from the file) cannot become the layer's weight ``expected``, or None.

    Integer weights (quantized kernels, zero points) are taken only if every value is exactly
    representable: a cast would wrap 300 to 44 or truncate 2.5 to 2 and silently give other outputs.
    """
    if expected.dtype.kind in "iu" and not np.can_cast(value.dtype, expected.dtype):
        info = np.iinfo(expected.dtype)
        with np.errstate(invalid="ignore"):
            bad = ~((value >= info.min) & (value <= info.max))
            if value.dtype.kind == "f":
                bad |= value != np.round(value)     # also NaN (never equal) and inf (out of range)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            return (
                f"{name} holds {expected.dtype} values in the layer, but the file stores it as {value.dtype} "
                f"with values that are not integers in [{info.min}, {info.max}] (e.g. {value[where]} at "
                f"index {where})"
            )
    if name in _DERIVED_WEIGHTS and not np.array_equal(value, expected):
        return (
            f"{name} is fixed by the layer's config ({expected.tolist()[:8]}...), but the file stores "
            f"{value.tolist()[:8]}...; fastdense does not run re-ordered int4 blocks"
        )
    return None


def _checked(
    layer: Any, saved: list[np.ndarray], where: str, path: str, skip_mismatch: bool
) -> list[np.ndarray] | None:
    """``saved`` cast to the layer's weight dtypes, after checking count, shapes and values."""
    name = str(getattr(layer, "name", "?"))
    current = [np.asarray(w) for w in layer.get_weights()]
    names = list(getattr(layer, "weight_names", None) or [])
    if len(names) != len(current):
        names = [f"weight {i}" for i in range(len(current))]
    problem = None
    if len(saved) != len(current):
        problem = (
            f"the file has {len(saved)} weight(s) for this layer ({where}), the layer has "
            f"{len(current)}" + (" (is it built?)" if not current else "")
        )
    else:
        for i, (value, expected) in enumerate(zip(saved, current)):
            if value.shape != expected.shape:
                problem = (
                    f"weight {i} has shape {value.shape} in the file ({where}), "
                    f"the layer expects {expected.shape}"
                )
                break
            detail = _value_problem(value, expected, names[i])
            if detail is not None:
                problem = f"weight {i} ({where}): {detail}"
                break
    if problem is not None:
        if skip_mismatch:
            warnings.warn(f"{path}: skipping layer {name!r}: {problem}", stacklevel=5)
            return None
        raise KerasFileError(problem, path=path, layer=name)
    return [np.asarray(value, dtype=expected.dtype) for value, expected in zip(saved, current)]


def _apply(plan: list[tuple[Any, list[np.ndarray]]], path: str) -> None:
    for layer, arrays in plan:
        try:
            layer.set_weights(arrays)
        except (ValueError, TypeError) as exc:
            raise KerasFileError(f"cannot set weights: {exc}", path=path, layer=str(layer.name)) from exc


def _assign_tree(model: Any, tree: dict[str, list[np.ndarray]], path: str, skip_mismatch: bool) -> None:
    """Weights in the Keras 3 layout -> model, matched by class-based group names."""
    plan = []
    matched = {""}
    for wpath, layer in keras_format.layer_paths(model):
        matched.add(wpath)
        if keras_format.is_model(layer):
            continue  # a nested model's weights belong to its own layers
        saved = tree.get(wpath)
        if saved is None:
            if not layer.get_weights():
                continue
            problem = f"the file has no weights for this layer (expected group {wpath}/vars)"
            if skip_mismatch:
                warnings.warn(f"{path}: skipping layer {layer.name!r}: {problem}", stacklevel=4)
                continue
            raise KerasFileError(problem, path=path, layer=str(layer.name))
        saved = keras_format.weights_from_keras_store(layer, saved)
        checked = _checked(layer, saved, f"{wpath}/vars", path, skip_mismatch)
        if checked is not None:
            plan.append((layer, checked))
    extra = [p for p, arrays in tree.items() if arrays and p not in matched]
    if tree.get(""):
        extra.insert(0, "vars")
    if extra and not skip_mismatch:
        raise KerasFileError(
            f"the file has weights the model has no layer for: {', '.join(extra)} "
            "(does the file belong to a different model?)",
            path=path,
        )
    _apply(plan, path)


def _assign_legacy(model: Any, legacy: legacy_h5.LegacyH5, path: str, skip_mismatch: bool) -> None:
    """Legacy H5 weights -> model: the n-th layer with weights gets the n-th saved weight list."""
    layers = [layer for layer in keras_format.saved_layers(model) if layer.get_weights()]
    saved = legacy.weighted_layers
    if len(layers) != len(saved):
        raise KerasFileError(
            f"the file has weights for {len(saved)} layer(s) ({', '.join(n for n, _ in saved) or 'none'}), "
            f"the model has {len(layers)} layer(s) with weights ({', '.join(str(l.name) for l in layers) or 'none'})",
            path=path,
        )
    plan = []
    for layer, (saved_name, arrays) in zip(layers, saved):
        arrays = legacy_h5.from_legacy_order(layer, arrays)
        checked = _checked(layer, arrays, f"model_weights/{saved_name}", path, skip_mismatch)
        if checked is not None:
            plan.append((layer, checked))
    _apply(plan, path)


def _assign(model: Any, content: ModelFile, skip_mismatch: bool = False) -> None:
    if content.keras_tree is not None:
        _assign_tree(model, content.keras_tree, content.path, skip_mismatch)
    else:
        assert content.legacy is not None
        _assign_legacy(model, content.legacy, content.path, skip_mismatch)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def load_model(
    filepath: str | os.PathLike[str],
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = False,  # noqa: A002 - Keras's argument name
    safe_mode: bool = True,
    dtype: str | None = None,
) -> Any:
    """Load a model saved by Keras 3 (``.keras``, ``.h5``), tf.keras 2 (``.h5``) or fastdense.

    Args:
        filepath: the model file; its format is told by its content.
        custom_objects: ``{name: class or function}`` for your own registered objects.
        compile: accepted for Keras compatibility; fastdense models are inference-only.
        safe_mode: accepted for Keras compatibility; fastdense is always safe: it never runs
            code from a file (Lambda layers are refused) and never imports modules it names.
        dtype: None (the default) serves every layer in the dtype its config names, float32 or
            float64, and refuses 16-bit and mixed-precision policies. ``"float32"`` or
            ``"float64"`` serves every float layer in that dtype instead: a model trained
            under ``mixed_float16`` / ``mixed_bfloat16`` (float32 weights, 16-bit arithmetic in
            Keras) or ``float16`` then computes in float32, which is not Keras's 16-bit rounding
            (its outputs differ from Keras's by about that rounding, 2^-11 of float16 or 2^-8 of
            bfloat16 relative); a float64 model runs in float32 (its weights rounded once). The
            model then reports and saves the serving dtype. A fastdense extension, not a Keras
            argument.

    Raises:
        KerasFileError (a ValueError): corrupted/truncated file, or weights that do not fit.
        UnsupportedLayerError: the model uses layers fastdense lacks (all listed at once).
        UnsafeFileError: Lambda layers, serialized code, foreign modules, hostile archives.

    Example::

        model = fastdense.models.load_model("mlp.keras")
        y = model.predict(x)
    """
    del compile, safe_mode
    path = os.fspath(filepath)
    if dtype is not None and dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"load_model expects dtype None, 'float32' or 'float64', got {dtype!r}")
    content = read_model_file(path)
    if content.config is None:
        raise KerasFileError(
            "this is a weights-only file (no model config); build the model in code and call "
            "model.load_weights(path)",
            path=path,
        )
    from ..models import model_from_config  # noqa: PLC0415 - models import saving

    try:
        config = compat.upgrade_model_config(content.config)
        compat.check_model_config(config, path=path, custom_objects=custom_objects)
        with _budget.weight_budget(_budget.limit_for(_stored_bytes(content)), path), serving_dtype(dtype):
            model = model_from_config(config, custom_objects=custom_objects)
    except (UnsafeFileError, UnsupportedLayerError):
        raise
    except KerasFileError as exc:
        raise KerasFileError(exc.detail, path=path, layer=exc.layer) from exc
    except RecursionError as exc:
        raise KerasFileError(
            "cannot rebuild the model from its config: its layers or nested models are chained too "
            f"deeply for fastdense ({exc})",
            path=path,
        ) from exc
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise KerasFileError(f"cannot rebuild the model from its config: {exc}", path=path) from exc
    _assign(model, content)
    return model


def _stored_bytes(content: ModelFile) -> int:
    """Bytes of all the weight arrays a model file holds."""
    if content.keras_tree is not None:
        return sum(a.nbytes for arrays in content.keras_tree.values() for a in arrays)
    return sum(a.nbytes for _, arrays in content.layer_weights for a in arrays)


def load_weights(model: Any, filepath: str | os.PathLike[str], skip_mismatch: bool = False) -> None:
    """Load weights into a built ``model`` from a ``.weights.h5``, ``.keras`` or legacy ``.h5`` file.

    ``.weights.h5`` / ``.keras`` weights are matched to layers as Keras 3 does (by layer class
    and position: the second Dense gets ``layers/dense_1``); legacy ``.h5`` weights by position
    among the layers that have weights. Nothing is changed unless every layer fits, except with
    ``skip_mismatch=True``, which skips (with a warning) the layers that do not fit.

    Example::

        model.save_weights("mlp.weights.h5")
        clone.load_weights("mlp.weights.h5")
    """
    content = read_model_file(filepath)
    _assign(model, content, skip_mismatch=skip_mismatch)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"the model config holds a {type(value).__name__} ({value!r}), which JSON cannot store")


def model_config(model: Any) -> dict[str, Any]:
    """The top-level ``config.json`` object Keras 3 writes for ``model``."""
    class_name = keras_format.keras_class_name(model)
    config = json.loads(json.dumps(model.get_config(), default=_json_default))
    if class_name == "Sequential":
        head = {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None}
        head["build_config"] = {"input_shape": config.get("build_input_shape")}
    elif class_name == "Functional":
        head = {"module": "keras.src.models.functional", "class_name": "Functional", "config": config,
                "registered_name": "Functional", "build_config": {"input_shape": None}}
    else:
        from .serialization import serialize_keras_object  # noqa: PLC0415

        head = json.loads(json.dumps(serialize_keras_object(model), default=_json_default))
    head["compile_config"] = {}
    return head


def save_model(model: Any, filepath: str | os.PathLike[str], overwrite: bool = True, **kwargs: Any) -> None:
    """Save ``model`` as a Keras 3 ``.keras`` archive, or in the legacy ``.h5`` format.

    The extension chooses the format, as in Keras 3. Keras loads the result and computes the
    same outputs. The write is atomic: an earlier file at ``filepath`` survives any failure.

    Example::

        model.save("mlp.keras")      # or fastdense.saving.save_model(model, "mlp.keras")
    """
    for key in kwargs:
        if key not in ("include_optimizer", "zipped", "save_format"):
            raise TypeError(f"save_model() got an unexpected keyword argument {key!r}")
    path = os.fspath(filepath)
    lower = path.lower()
    if kwargs.get("zipped") is False:
        raise ValueError("fastdense writes .keras files as zip archives only (zipped=False is not supported)")
    save_format = kwargs.get("save_format")
    if save_format is not None and not (save_format in ("keras", "h5") and lower.endswith(f".{save_format}")):
        raise ValueError(
            f"save_format={save_format!r} does not match {path!r}; the extension chooses the format "
            "('.keras' or '.h5')"
        )
    if lower.endswith(".keras"):
        config = model_config(model)
        weights = keras_format.weights_h5_bytes(model)
        with atomic_path(path, overwrite=overwrite) as tmp:
            keras_format.write_keras_archive(tmp, config, weights)
    elif lower.endswith((".h5", ".hdf5")):
        if lower.endswith(".weights.h5"):
            raise ValueError(f"{path}: a '.weights.h5' name is for model.save_weights(); use .keras or .h5 for save()")
        head = model_config(model)
        config = {"class_name": head["class_name"], "config": head["config"]}
        with atomic_path(path, overwrite=overwrite) as tmp:
            legacy_h5.write_legacy_h5(tmp, model, config)
    else:
        raise ValueError(
            f"Invalid filepath extension for saving: expected '.keras' (Keras 3 archive) or '.h5' "
            f"(legacy HDF5), got {path!r}"
        )


def save_weights(model: Any, filepath: str | os.PathLike[str], overwrite: bool = True) -> None:
    """Save ``model``'s weights as a Keras 3 ``.weights.h5`` file (atomically).

    Example::

        model.save_weights("mlp.weights.h5")
    """
    path = os.fspath(filepath)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`, got {path!r}")
    with atomic_path(path, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w") as f:
            keras_format.write_weight_tree(f, model)
