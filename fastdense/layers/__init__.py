"""Keras-compatible layers: ``from fastdense.layers import Dense`` instead of ``keras.layers``.

>>> import numpy as np
>>> from fastdense.layers import Dense
>>> layer = Dense(16, activation="relu", input_shape=(8,))
>>> layer(np.ones((4, 8), dtype=np.float32)).shape
(4, 16)
"""

# --- issue 13: the other layers of Dense networks
from fastdense.layers.activations import ELU, LeakyReLU, PReLU, ReLU, Softmax
from fastdense.layers.base import (
    InputSpec,
    Layer,
    LayerNotConnectedError,
    WeightSpec,
    clear_session,
)
from fastdense.layers.core import Activation, Dense, Dropout
from fastdense.layers.einsum_dense import EinsumDense
from fastdense.layers.embedding import Embedding
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
from fastdense.layers.noise import (
    ActivityRegularization,
    AlphaDropout,
    GaussianDropout,
    GaussianNoise,
    Identity,
    SpatialDropout1D,
    SpatialDropout2D,
    SpatialDropout3D,
)
from fastdense.layers.normalization import (
    BatchNormalization,
    LayerNormalization,
    RMSNormalization,
    UnitNormalization,
)
from fastdense.layers.pooling import (
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    GlobalMaxPooling3D,
)
from fastdense.layers.preprocessing import Normalization, Rescaling
from fastdense.layers.reshaping import Flatten, Reshape

# Keras's short names for the same classes
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D

__all__ = [
    "Activation",
    "ActivityRegularization",
    "Add",
    "AlphaDropout",
    "Average",
    "BatchNormalization",
    "Concatenate",
    "Dense",
    "Dropout",
    "ELU",
    "EinsumDense",
    "Embedding",
    "Flatten",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalAvgPool3D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPool3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "Identity",
    "Input",
    "InputLayer",
    "InputSpec",
    "Layer",
    "LayerNormalization",
    "LayerNotConnectedError",
    "LeakyReLU",
    "Maximum",
    "Minimum",
    "Multiply",
    "Node",
    "Normalization",
    "PReLU",
    "RMSNormalization",
    "ReLU",
    "Rescaling",
    "Reshape",
    "Softmax",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Subtract",
    "SymbolicTensor",
    "UnitNormalization",
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
