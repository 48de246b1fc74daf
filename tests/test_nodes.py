"""Symbolic tensors, nodes and the Keras 2 bookkeeping (input, output, input_shape, output_shape,
get_input_at, get_output_at, get_input_shape_at, get_output_shape_at), shared layers included."""

import re

import numpy as np
import pytest

from fastdense.layers import (
    Concatenate,
    Dense,
    Input,
    LayerNotConnectedError,
    Node,
    SymbolicTensor,
)


pytestmark = pytest.mark.usefixtures("fresh_names")  # tests/conftest.py


def test_symbolic_tensor_repr_and_attributes():
    x = Input(shape=(8,), name="dense_1_input")
    assert repr(x) == "<SymbolicTensor name='dense_1_input' shape=(None, 8) dtype=float32>"
    assert x.shape == (None, 8) and x.ndim == 2 and x.dtype == "float32"
    layer, node_index, tensor_index = x._keras_history
    assert layer.name == "dense_1_input" and (node_index, tensor_index) == (0, 0)
    assert x.node is layer.inbound_nodes[0] and x.node.is_input


def test_symbolic_tensor_has_no_value():
    x = Input((3,))
    with pytest.raises(TypeError, match="has no value"):
        np.asarray(x)
    with pytest.raises(TypeError, match="no truth value"):
        bool(x)


def test_calling_on_symbolic_tensor_records_a_node():
    x = Input((8,), name="x")
    layer = Dense(4, activation="relu", name="d")
    y = layer(x)
    assert isinstance(y, SymbolicTensor) and y.shape == (None, 4) and y.dtype == "float32"
    assert layer.built and layer.kernel.shape == (8, 4)
    (node,) = layer.inbound_nodes
    assert isinstance(node, Node)
    assert node.outbound_layer is layer and node.layer is layer
    assert node.input_tensors == [x] and node.output_tensors == [y]
    assert node.inbound_layers == [x._keras_history[0]]
    assert node.node_indices == [0] and node.tensor_indices == [0]
    assert node.input_shapes == [(None, 8)] and node.output_shapes == [(None, 4)]
    assert x._keras_history[0].outbound_nodes == [node]
    assert y._keras_history == (layer, 0, 0)


def test_mixing_arrays_and_tensors_is_an_error():
    with pytest.raises(TypeError, match="mix of SymbolicTensors and arrays"):
        Concatenate()([Input((2,)), np.ones((1, 2))])


def test_n_d_symbolic_inputs_act_on_the_last_axis():
    assert Dense(5)(Input((3, 7))).shape == (None, 3, 5)


# --------------------------------------------------------------------------- shared layers


def test_shared_layer_with_equal_shapes():
    a, b = Input((8,), name="a"), Input((8,), name="b")
    shared = Dense(4, name="shared")
    ya, yb = shared(a), shared(b)
    assert len(shared.inbound_nodes) == 2
    assert [n.node_index for n in shared.inbound_nodes] == [0, 1]
    assert yb._keras_history == (shared, 1, 0)

    # input/output: ill-defined with several nodes (Keras 2 semantics)
    with pytest.raises(AttributeError, match=re.escape(
            "Layer 'shared' has multiple inbound nodes, hence the notion of \"layer input\" is ill-defined. "
            "Use `get_input_at(node_index)` instead.")):
        shared.input
    with pytest.raises(AttributeError, match=r"notion of \"layer output\" is ill-defined\. Use `get_output_at"):
        shared.output
    # shapes: fine while all nodes agree
    assert shared.input_shape == (None, 8)
    assert shared.output_shape == (None, 4)

    assert shared.get_input_at(0) is a and shared.get_input_at(1) is b
    assert shared.get_output_at(0) is ya and shared.get_output_at(1) is yb
    assert shared.get_input_shape_at(1) == (None, 8)
    assert shared.get_output_shape_at(0) == (None, 4)
    for method, what in [(shared.get_input_at, "input"), (shared.get_output_at, "output"),
                         (shared.get_input_shape_at, "input shape"), (shared.get_output_shape_at, "output shape")]:
        with pytest.raises(ValueError, match=re.escape(
                f"Asked to get {what} at node 2, but the layer 'shared' has only 2 inbound nodes.")):
            method(2)

    assert a._keras_history[0].outbound_nodes == [shared.inbound_nodes[0]]
    assert b._keras_history[0].outbound_nodes == [shared.inbound_nodes[1]]


def test_shared_layer_with_different_shapes():
    a, b = Input((8,), name="a"), Input((3, 8), name="b")
    shared = Dense(4, name="shared")
    ya, yb = shared(a), shared(b)
    assert (ya.shape, yb.shape) == ((None, 4), (None, 3, 4))
    with pytest.raises(AttributeError, match=re.escape(
            "Layer 'shared' has multiple inbound nodes, with different input shapes. Hence the notion of "
            "\"input shape\" is ill-defined for the layer. Use `get_input_shape_at(node_index)` instead.")):
        shared.input_shape
    with pytest.raises(AttributeError, match=r"different output shapes.*get_output_shape_at\(node_index\)"):
        shared.output_shape
    with pytest.raises(AttributeError, match="get_input_at"):
        shared.input
    assert shared.get_input_shape_at(0) == (None, 8)
    assert shared.get_input_shape_at(1) == (None, 3, 8)
    assert shared.get_output_shape_at(0) == (None, 4)
    assert shared.get_output_shape_at(1) == (None, 3, 4)
    assert shared.get_input_at(1) is b and shared.get_output_at(1) is yb


def test_batch_size_difference_makes_shapes_differ():
    shared = Dense(2, name="s")
    shared(Input((3,), batch_size=4))
    shared(Input((3,)))
    with pytest.raises(AttributeError, match="different input shapes"):
        shared.input_shape
    assert shared.get_input_shape_at(0) == (4, 3)


def test_never_called_layer_errors():
    layer = Dense(2, name="lonely")
    for attribute, what in [("input", "input"), ("output", "output"),
                            ("input_shape", "input shape"), ("output_shape", "output shape")]:
        with pytest.raises(AttributeError, match=re.escape(
                f"Layer 'lonely' has never been called and thus has no defined {what}.")):
            getattr(layer, attribute)
        assert not hasattr(layer, attribute)
    for method in (layer.get_input_at, layer.get_output_at, layer.get_input_shape_at, layer.get_output_shape_at):
        with pytest.raises(LayerNotConnectedError, match="has never been called"):
            method(0)
        with pytest.raises(RuntimeError):  # what Keras 2 raised here
            method(0)


def test_concrete_calls_record_no_nodes():
    layer = Dense(2)
    layer(np.ones((1, 3)))
    assert layer.inbound_nodes == [] and layer.built


def test_multi_input_layer_returns_lists():
    a, b = Input((2,), name="a"), Input((3,), name="b")
    cat = Concatenate(name="cat")
    y = cat([a, b])
    assert y.shape == (None, 5)
    assert cat.input == [a, b]
    assert cat.input_shape == [(None, 2), (None, 3)]
    assert cat.output_shape == (None, 5)
    assert cat.get_input_shape_at(0) == [(None, 2), (None, 3)]
    node = cat.inbound_nodes[0]
    assert [l.name for l in node.inbound_layers] == ["a", "b"]
    assert node.call_args == ([a, b],)


def test_layer_applied_twice_in_a_chain():
    x = Input((4,), name="x")
    layer = Dense(4, name="twice")
    y = layer(layer(x))
    assert y._keras_history == (layer, 1, 0)
    assert layer.get_input_at(1) is layer.get_output_at(0)
    assert layer.outbound_nodes == [layer.inbound_nodes[1]]
    assert layer.inbound_nodes[1].parent_nodes == [layer.inbound_nodes[0]]


def test_input_layer_input_is_its_output():
    x = Input((3,), name="x")
    layer = x._keras_history[0]
    assert layer.input is x and layer.output is x
    assert layer.input_shape == (None, 3) and layer.output_shape == (None, 3)
