"""Keras-compatible layers: ``from fastdense.layers import Dense`` instead of ``keras.layers``.

>>> import numpy as np
>>> from fastdense.layers import Dense
>>> layer = Dense(16, activation="relu", input_shape=(8,))
>>> layer(np.ones((4, 8), dtype=np.float32)).shape
(4, 16)
"""

from fastdense.layers.base import (
    InputSpec,
    Layer,
    LayerNotConnectedError,
    WeightSpec,
    clear_session,
)
from fastdense.layers.core import Activation, Dense, Dropout
from fastdense.layers.input_layer import Input, InputLayer
from fastdense.layers.merging import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    minimum,
    multiply,
    subtract,
)
from fastdense.layers.node import Node, SymbolicTensor
from fastdense.layers.reshaping import Flatten, Reshape

__all__ = [
    "Activation",
    "Add",
    "Average",
    "Concatenate",
    "Dense",
    "Dropout",
    "Flatten",
    "Input",
    "InputLayer",
    "InputSpec",
    "Layer",
    "LayerNotConnectedError",
    "Maximum",
    "Minimum",
    "Multiply",
    "Node",
    "Reshape",
    "Subtract",
    "SymbolicTensor",
    "WeightSpec",
    "add",
    "average",
    "clear_session",
    "concatenate",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]
