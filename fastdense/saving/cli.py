"""``python -m fastdense predict MODEL INPUT -o OUTPUT``: run a saved model on arrays from disk.

INPUT is a ``.npy`` file (the single input) or a ``.npz`` file whose arrays are named ``x0``,
``x1``, ... (inputs in order) or after the model's input names. OUTPUT is a ``.npy`` file, or a
``.npz`` file (``y0``, ``y1``, ... for a model with several outputs, ``y`` for one).

Example::

    $ python -m fastdense predict mlp.keras batch.npy -o scores.npy
    scores.npy: float32 (5, 10) from mlp.keras
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import KerasFileError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastdense predict",
        description="Run a saved Keras/fastdense model (.keras, .h5) on a .npy/.npz input.",
    )
    parser.add_argument("model", help="model file (.keras archive or legacy .h5)")
    parser.add_argument("input", help=".npy array, or .npz with arrays x0, x1, ... or named after the model inputs")
    parser.add_argument("-o", "--output", required=True, help="where to write the output (.npy, or .npz)")
    parser.add_argument("--batch-size", type=int, default=None, help="predict in batches of this size")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


def _read_inputs(path: str, model: Any) -> list[np.ndarray]:
    """The model inputs, in order, from a .npy or .npz file (never unpickling anything)."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: cannot read the input without unpickling ({exc})") from exc
    if isinstance(data, np.ndarray):
        return [data]
    with data:
        names = list(data.files)
        count = len(getattr(model, "inputs", None) or [None])
        positional = [f"x{i}" for i in range(count)]
        model_names = [str(n) for n in (getattr(model, "input_names", None) or [])]
        if all(n in names for n in positional):
            keys = positional
        elif model_names and all(n in names for n in model_names):
            keys = model_names
        elif count == 1 and len(names) == 1:
            keys = names
        else:
            wanted = " or ".join(repr(k) for k in (positional, model_names) if k)
            raise ValueError(f"{path}: the model takes {count} input(s) named {wanted}; the file holds {names}")
        return [data[k] for k in keys]


def _write_outputs(path: str, outputs: Any) -> np.ndarray | None:
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        arrays = [np.asarray(o) for o in outputs]
        if len(arrays) == 1:
            outputs = arrays[0]
        elif path.endswith(".npz"):
            _save_atomically(path, lambda f: np.savez(f, **{f"y{i}": a for i, a in enumerate(arrays)}))
            return None
        else:
            raise ValueError(f"the model has {len(arrays)} outputs; give an .npz output path to save them all")
    array = np.asarray(outputs)
    if path.endswith(".npz"):
        _save_atomically(path, lambda f: np.savez(f, y=array))
    else:
        _save_atomically(path, lambda f: np.save(f, array))
    return array


def _save_atomically(path: str, write: Any) -> None:
    from ._atomic import atomic_path  # noqa: PLC0415

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)


def predict_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fastdense predict``; returns the process exit code (0 ok, 1 error, 2 usage)."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.output.endswith((".npy", ".npz")):
        print(f"fastdense predict: the output must be a .npy or .npz file, got {args.output!r}", file=sys.stderr)
        return 2
    from .api import load_model  # noqa: PLC0415

    try:
        model = load_model(args.model)
        inputs = _read_inputs(args.input, model)
        outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=args.batch_size)
        written = _write_outputs(args.output, outputs)
    except (KerasFileError, ValueError, TypeError, OSError) as exc:
        print(f"fastdense predict: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        shape = f"{written.dtype} {written.shape}" if written is not None else "several outputs"
        print(f"{os.fspath(args.output)}: {shape} from {args.model}")
    return 0
