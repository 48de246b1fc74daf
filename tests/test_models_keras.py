"""Model configs exchanged with real Keras 3, both ways (shared layers, a layer called twice,
merges, nested models).  Skipped unless ``keras`` is importable; locally::

    KERAS_BACKEND=torch PYTHONPATH=. /work/venvs/keras/bin/python -m pytest tests/test_models_keras.py
"""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import fastdense  # noqa: E402
from fastdense.layers import (  # noqa: E402
    Activation,
    Add,
    Average,
    Concatenate,
    Dense,
    Dropout,
    Flatten,
    Maximum,
    Minimum,
    Multiply,
    Reshape,
    Subtract,
)
from fastdense.models import Model, Sequential, model_from_config  # noqa: E402
from fastdense.saving import serialize_keras_object  # noqa: E402

from _helpers import as_json  # noqa: E402

RNG = np.random.default_rng(3)


def strip_ids(value):
    """Drop Keras's in-memory ids and (empty) compile configs; Keras records functional models with registered_name
    "Functional", fastdense with null (Keras 3 loads both through the module path)."""
    if isinstance(value, dict):
        if value.get("class_name") == "Functional":
            value = {**value, "registered_name": None}
        return {k: strip_ids(v) for k, v in value.items() if k not in ("shared_object_id", "compile_config")}
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


def flat(outputs):
    return [np.asarray(o) for o in (outputs if isinstance(outputs, list) else [outputs])]


def graph_model():
    left, right = fastdense.Input((6,), name="left"), fastdense.Input((6,), name="right")
    shared = Dense(5, activation="relu", name="shared")
    a, b = shared(left), shared(right)
    merged = [Add(name="add")([a, b]), Subtract(name="sub")([a, b]), Multiply(name="mul")([a, b]),
              Average(name="avg")([a, b]), Maximum(name="max")([a, b]), Minimum(name="min")([a, b])]
    stacked = Concatenate(name="stack")([Concatenate(name="cat")([a, b])] + merged)
    twice = Dense(3, activation="tanh", name="twice")
    head = twice(twice(Dense(3, name="head")(stacked)))
    shaped = Reshape((3, 1), name="reshape")(Dropout(0.5, name="drop")(head))
    out = Activation("softmax", name="out")(Flatten(name="flat")(shaped))
    return Model([left, right], [out, a], name="graph")


def nested_model():
    inner = Sequential([Dense(4, input_shape=(3,), activation="relu", name="inner_d")], name="inner")
    sub_in = fastdense.Input((4,), name="sub_in")
    sub = Model(sub_in, Dense(2, name="sub_d")(sub_in), name="sub")
    x = fastdense.Input((3,), name="x")
    return Model(x, sub(inner(x)), name="outer")


def sequential_model():
    return Sequential([Dense(8, input_shape=(3,), activation="gelu"), Dropout(0.1), Dense(2, activation="sigmoid")],
                      name="seq")


@pytest.mark.parametrize("factory", [graph_model, nested_model, sequential_model])
def test_fastdense_config_loads_in_keras_and_back(factory):
    model = factory()
    config = as_json(serialize_keras_object(model))
    theirs = keras.saving.deserialize_keras_object(config)
    assert [l.name for l in theirs.layers] == [l.name for l in model.layers]
    theirs.set_weights(model.get_weights())
    xs = [RNG.standard_normal((4,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]
    x = xs if len(xs) > 1 else xs[0]
    for ours, keras_out in zip(flat(model.predict(x)), flat(theirs.predict(x, verbose=0))):
        np.testing.assert_allclose(ours, keras_out, rtol=2e-5, atol=2e-5)

    keras_config = strip_ids(as_json(keras.saving.serialize_keras_object(theirs)))
    rebuilt = model_from_config(keras_config)
    written = strip_ids(as_json(serialize_keras_object(rebuilt)))
    assert written == keras_config
