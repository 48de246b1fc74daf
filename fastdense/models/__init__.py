"""Models: `Sequential`, the functional `Model`, and rebuilding them from Keras configs.

>>> import numpy as np
>>> from fastdense.models import Sequential
>>> from fastdense.layers import Dense
>>> model = Sequential([Dense(16, activation="relu", input_shape=(8,)), Dense(4)])
>>> model.predict(np.ones((2, 8))).shape
(2, 4)
"""

from fastdense.models.config import model_from_config, model_from_json
from fastdense.models.functional import Functional, Model
from fastdense.models.sequential import Sequential

__all__ = ["Functional", "Model", "Sequential", "model_from_config", "model_from_json", "load_model",
           "save_model"]


def __getattr__(name: str):
    # the file formats import h5py: only on first use
    if name in ("load_model", "save_model"):
        from fastdense.saving import api
        return getattr(api, name)
    raise AttributeError(f"module 'fastdense.models' has no attribute {name!r}")
