"""The native shortcut of predict and calls (``_kernels.plan_shortcut_run``, bound as
``fastdense.models.plan.run_shortcut``; ``PlanCache.shortcut``) against what a NumPy user can pass
right after a run that left its layout: every dtype and byte order, layouts, ranks, subclasses,
lists, empty batches, batch sizes and dtypes alternating so the cached layout must be rejected,
several threads on one model, calls right after set_weights, quantize or set_num_threads, and
``predict(out=...)`` of every wrong kind. Values against float64 NumPy (float models) or the
integer references of fastdense.quantizers (quantized ones), and bit for bit against the full path."""

import os
import tempfile

import numpy as np
import pytest

import fastdense
from fastdense import quantizers as Q
from fastdense.layers import Dense, Embedding, Flatten
from fastdense.models import Model, Sequential
from fastdense.models.plan import run_shortcut
from _helpers import run_in_threads

# np.matrix is one of the inputs: NumPy warns on creating one
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

KINDS = ["sequential", "functional"]
MODES = ["float32", "float64", "int8", "int4"]
SAMPLE = {"sequential": (8,), "functional": (2, 4)}   # per-sample input shapes


@pytest.fixture
def restore_threads():
    yield
    fastdense.set_num_threads(None)


class Built:
    """A two-Dense model (relu, then linear) of one kind and mode, with its float weights."""

    def __init__(self, kind, mode, seed=0):
        rng = np.random.default_rng(seed)
        dtype = "float64" if mode == "float64" else "float32"
        if kind == "sequential":
            self.model = Sequential([fastdense.Input((8,), dtype=dtype), Dense(16, activation="relu", dtype=dtype),
                                     Dense(3, dtype=dtype)])
        else:
            inputs = fastdense.Input((2, 4), dtype=dtype)
            hidden = Dense(16, activation="relu", dtype=dtype)(Flatten(dtype=dtype)(inputs))
            self.model = Model(inputs, Dense(3, dtype=dtype)(hidden))
        self.weights = [(rng.standard_normal(w.shape) * 0.5).astype(dtype) for w in self.model.get_weights()]
        self.model.set_weights(self.weights)
        self.mode, self.dtype, self.shape = mode, np.dtype(dtype), SAMPLE[kind]
        if mode in ("int8", "int4"):
            self.model.quantize(mode)

    def reference(self, x):
        """float64 NumPy of the model on x (cast to the model dtype first, as predict does)."""
        w1, b1, w2, b2 = self.weights
        h = np.asarray(x).astype(self.dtype).reshape(-1, 8)
        if self.mode == "int8":
            h = np.maximum(Q.int8_dense_reference(h, *Q.quantize_int8(w1), b1), 0)
            return Q.int8_dense_reference(h, *Q.quantize_int8(w2), b2).astype(np.float64)
        if self.mode == "int4":
            h = np.maximum(Q.int4_dense_reference(h, Q.quantize_int4(w1), b1), 0)
            return Q.int4_dense_reference(h, Q.quantize_int4(w2), b2).astype(np.float64)
        h = np.maximum(h.astype(np.float64) @ w1 + b1, 0)
        return h @ w2 + b2

    def check(self, got, x):
        assert type(got) is np.ndarray and got.dtype == self.dtype and got.shape == (len(x), 3)
        want = self.reference(x)
        if self.mode == "int8":   # exact integer sums: the reference's float32 bits
            np.testing.assert_array_equal(got, want.astype(np.float32))
        elif self.mode == "int4":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5 if self.dtype == np.float32 else 1e-12, atol=1e-5)


def _unaligned(a):
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _inputs(shape, dtype, tmp):
    """name -> (what a user passes, its values (a float64 array), or None when it must be refused)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5,) + shape).astype(dtype)
    read_only = x.copy()
    read_only.flags.writeable = False
    memmap = np.memmap(os.path.join(tmp, "x.bin"), dtype, "w+", shape=x.shape)
    memmap[...] = x
    ints = np.round(x * 3)
    cases = {
        "plain": (x, x),
        "float16": (x.astype(np.float16), x.astype(np.float16)),
        "float32": (x.astype(np.float32), x.astype(np.float32)),
        "float64": (x.astype(np.float64), x),
        "int32": (ints.astype(np.int32), ints),
        "uint8": (np.abs(ints).astype(np.uint8), np.abs(ints)),
        "bool": (x > 0, (x > 0).astype(np.float64)),
        "big-endian f4": (x.astype(">f4"), x.astype(np.float32)),
        "big-endian f8": (x.astype(">f8"), x),
        "fortran": (np.asfortranarray(x), x),
        "negative strides": (x[::-1], x[::-1]),
        "every other sample": (np.repeat(x, 2, axis=0)[::2], x),
        "unaligned": (_unaligned(x), x),
        "broadcast sample": (np.broadcast_to(x[:1], x.shape), np.broadcast_to(x[:1], x.shape)),
        "one sample": (x[:1], x[:1]),
        "empty batch": (x[:0], x[:0]),
        "read-only": (read_only, x),
        "masked": (np.ma.masked_array(x, mask=np.zeros(x.shape, bool)), x),
        "memmap": (memmap, x),
        "list": (x.tolist(), x),
        "tuple of samples": (tuple(x), x),
        "object": (x.astype(object), None),
        "complex": (x.astype(np.complex128), None),
        "scalar": (np.float32(1), None),
        "one sample without its batch axis": (x[0], None),
        "an extra axis": (x[..., None], None),
        "wrong sample shape": (x[..., :-1], None),
    }
    if len(shape) == 1:
        cases["matrix"] = (np.asmatrix(x), x)
    return cases


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_input_right_after_a_shortcut_run(kind, mode):
    """Before each input the model runs a plain array (which leaves the shortcut its plan and this
    thread its layout); then predict and the call on the input give the reference's values and
    the bits of the same values as a plain C-contiguous array of the model dtype, or raise a
    TypeError/ValueError naming what was expected; the plain array still runs right after."""
    built = Built(kind, mode)
    model = built.model
    with tempfile.TemporaryDirectory() as tmp:
        cases = _inputs(built.shape, built.dtype, tmp)
        plain = cases["plain"][0]
        first = model.predict(plain)
        built.check(first, plain)
        assert run_shortcut(model._plan_cache, plain, False) is not None
        for case, (x, values) in cases.items():
            for run in (model.predict, model):
                np.testing.assert_array_equal(model.predict(plain), first)
                if values is None:
                    with pytest.raises((TypeError, ValueError), match=r"Input '.*' of model '.*' expects"):
                        run(x)
                    continue
                got = run(x)
                built.check(got, values)
                clean = model.predict(np.ascontiguousarray(values, built.dtype))
                if mode == "float64" and case in ("fortran", "every other sample"):
                    np.testing.assert_allclose(got, clean, rtol=1e-14, atol=1e-14, err_msg=case)
                else:   # (a strided float64 input runs layer by layer: BLAS rounding)
                    np.testing.assert_array_equal(got, clean, err_msg=case)
            np.testing.assert_array_equal(model(plain), first)


@pytest.mark.parametrize("mode", MODES)
def test_alternating_batches_dtypes_and_layouts_reject_the_cached_layout(mode):
    """A sequence whose batch size, dtype or layout changes from call to call (0, 1 and sizes on
    both sides of the small-batch split): each result is its own input's, bit for bit the result
    of that input alone in a fresh model."""
    built = Built("sequential", mode, seed=3)
    rng = np.random.default_rng(4)
    base = {m: rng.standard_normal((m, 8)) for m in (0, 1, 2, 5, 12, 47, 48, 49, 300)}
    dtypes = [np.float32, np.float64, np.float16, ">f4"]
    sequence = [(m, dtypes[i % 4], i % 3 == 2) for i, m in enumerate([1, 5, 1, 48, 0, 47, 2, 49, 12, 300, 1, 1, 5])]
    sequence += sequence[::-1]
    fresh = Built("sequential", mode, seed=3).model
    for m, dtype, strided in sequence:
        x = base[m].astype(dtype)
        if strided:
            x = np.repeat(x, 2, axis=0)[::2]
        for run in (built.model.predict, built.model):
            got = run(x)
            built.check(got, x)
            np.testing.assert_array_equal(got, fresh.predict(np.ascontiguousarray(x, built.dtype), batch_size=1000))


def test_float_ids_after_integer_ids_are_converted_not_read_as_ids():
    """An Embedding model run on int32 ids left the shortcut a plan whose input was the ids read
    as float32 bits: the next float32 ids (which predict converts to integers, as Keras does)
    were then read bit for bit as ids (1.0 -> 1065353216: 'an embedding id is outside its
    table')."""
    rng = np.random.default_rng(5)
    ids = fastdense.Input((3,), dtype="int32")
    model = Model(ids, Dense(2)(Flatten()(Embedding(10, 4)(ids))))
    table, kernel, bias = (rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights())
    model.set_weights([table, kernel, bias])
    x = np.array([[1, 2, 3], [9, 0, 5]])

    def reference(v):
        return table[np.asarray(v).astype(np.int64)].reshape(len(v), 12).astype(np.float64) @ kernel + bias

    for dtype in (np.int32, np.float32, np.int64, np.float64, np.float32, np.int32, np.float32, np.uint8):
        for run in (model.predict, model):
            np.testing.assert_allclose(run(x.astype(dtype)), reference(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="id"):
        model.predict(np.array([[1, 2, 10]], np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_threads_share_a_model_bit_for_bit(kind, restore_threads):
    """Four Python threads run predict and calls of float32, float64, int8 and int4 models on
    inputs of alternating batch sizes and dtypes at once, under each thread setting: every result
    equals the single-thread one bit for bit."""
    models = {mode: Built(kind, mode, seed=6) for mode in MODES}
    rng = np.random.default_rng(7)
    shape = SAMPLE[kind]
    xs = [rng.standard_normal((m,) + shape).astype(dtype)
          for m in (1, 2, 13, 48, 200) for dtype in (np.float32, np.float64)]
    for threads in (None, 1, 2):
        fastdense.set_num_threads(threads)
        expected = {(mode, i): built.model.predict(np.array(x), batch_size=1000)
                    for mode, built in models.items() for i, x in enumerate(xs)}
        failures = []

        def work(seed, expected=expected, failures=failures):
            order = np.random.default_rng(seed).integers(len(xs), size=120)
            for j, i in enumerate(order):
                mode = MODES[(seed + j) % len(MODES)]
                model = models[mode].model
                got = model.predict(xs[i]) if j % 2 else model(xs[i])
                if not np.array_equal(got, expected[mode, i]):
                    failures.append((mode, xs[i].shape, xs[i].dtype))

        run_in_threads(work, range(4))
        assert failures == [], (threads, failures[:5])
    for mode, built in models.items():
        built.check(expected[mode, 0], xs[0])


@pytest.mark.parametrize("kind", KINDS)
def test_calls_right_after_set_weights_quantize_and_set_num_threads(kind, restore_threads):
    built = Built(kind, "float32", seed=8)
    model = built.model
    x = np.random.default_rng(9).standard_normal((6,) + built.shape).astype(np.float32)
    for run in (model.predict, model):
        built.check(run(x), x)
        built.check(run(x), x)
    built.weights = [w * -1.5 for w in built.weights]
    model.set_weights(built.weights)
    for run in (model.predict, model):    # the very next call: the new weights
        built.check(run(x), x)
    for mode in ("int8", "int4"):
        again = Built(kind, "float32", seed=8)
        again.model.set_weights(built.weights)
        again.weights = built.weights
        for run in (again.model.predict, again.model):
            run(x)
        again.model.quantize(mode)
        again.mode = mode
        for run in (again.model.predict, again.model):
            again.check(run(x), x)
        bits = again.model.predict(x)
        for threads in (1, 2, None, 2):
            fastdense.set_num_threads(threads)
            for m in (1, 6, 60):
                xm = np.resize(x, (m,) + built.shape)
                np.testing.assert_array_equal(again.model(xm), again.model.predict(xm, batch_size=1000))
            np.testing.assert_array_equal(again.model.predict(x), bits)
            np.testing.assert_array_equal(again.model(x), bits)


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_predict_out_of_every_kind(mode):
    """predict(out=...) right after shortcut runs: written in place and returned when right;
    refused before anything is written when it overlaps the input (also only a later batch's
    rows, with batch_size: an earlier batch's results would overwrite inputs not yet read), or
    has the wrong length, shape, dtype, byte order, layout or writeability."""
    built = Built("sequential", mode, seed=10)
    model = built.model
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 8)).astype(np.float32)
    want = model.predict(x)
    model(x)
    for batch_size in (None, 3):
        out = np.zeros((8, 3), np.float32)
        assert model.predict(x, batch_size=batch_size, out=out) is out
        np.testing.assert_array_equal(out, want)
        assert model.predict(x, batch_size=batch_size, out=[out]) is out

    # a buffer holding the input rows, and out 2 or 8 rows further on: out's first rows are the
    # input's later ones (a square model, so that out can alias x exactly)
    square = Sequential([fastdense.Input((8,)), Dense(8, activation="tanh")])
    square.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in square.get_weights()])
    buffer = rng.standard_normal((20, 8)).astype(np.float32)
    right = square.predict(buffer[:12].copy())
    square.predict(buffer[:12])
    for shift in (0, 2, 8):
        for batch_size in (None, 1, 3):
            data = buffer.copy()
            with pytest.raises(ValueError, match="out must not overlap the inputs"):
                square.predict(data[:12], batch_size=batch_size, out=data[shift:shift + 12])
            np.testing.assert_array_equal(data, buffer)
    data = np.concatenate([buffer[:12], np.zeros((12, 8), np.float32)])   # out right after x: fine
    for batch_size in (None, 5):
        assert square.predict(data[:12], batch_size=batch_size, out=data[12:]) is not None
        np.testing.assert_array_equal(data[12:], right)
        np.testing.assert_array_equal(data[:12], buffer[:12])

    read_only = np.zeros((8, 3), np.float32)
    read_only.flags.writeable = False
    bad = {
        "short": np.zeros((7, 3), np.float32),
        "long": np.zeros((9, 3), np.float32),
        "units": np.zeros((8, 4), np.float32),
        "float64": np.zeros((8, 3), np.float64),
        "big-endian": np.zeros((8, 3), ">f4"),
        "fortran": np.zeros((3, 8), np.float32).T,
        "strided": np.zeros((16, 3), np.float32)[::2],
        "read-only": read_only,
        "list in a list": [[[0.0] * 3] * 8],
    }
    for batch_size in (None, 3):
        for case, out in bad.items():
            with pytest.raises(ValueError, match=r"predict: out must be a writeable C-contiguous array of "
                                                 r"shape \(8, 3\) and dtype float32, got"):
                model.predict(x, batch_size=batch_size, out=out)
            assert not np.asarray(out).any(), case
        with pytest.raises(ValueError, match="out must hold 1 arrays"):
            model.predict(x, batch_size=batch_size, out=[np.zeros((8, 3), np.float32)] * 2)
        with pytest.raises(ValueError, match="out must hold 1 arrays"):   # a list is one per output
            model.predict(x, batch_size=batch_size, out=[[0.0] * 3] * 8)
    np.testing.assert_array_equal(model.predict(x), want)


def test_predict_out_takes_each_outputs_own_dtype():
    """A two-output model whose outputs differ in dtype (it runs layer by layer): out is checked
    per output. It was checked against the first output's dtype: the right arrays were refused,
    and a wrong-dtype one was accepted and written with a silent cast."""
    rng = np.random.default_rng(12)
    inputs = fastdense.Input((4,))
    model = Model(inputs, [Dense(3, dtype="float64")(inputs), Dense(2)(inputs)])
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    k1, b1, k2, b2 = model.get_weights()
    x = rng.standard_normal((5, 4)).astype(np.float32)
    first, second = np.empty((5, 3), np.float64), np.empty((5, 2), np.float32)
    for batch_size in (None, 2):
        got = model.predict(x, batch_size=batch_size, out=[first, second])
        assert got[0] is first and got[1] is second
        np.testing.assert_allclose(first, x.astype(np.float64) @ k1 + b1, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(second, x.astype(np.float64) @ k2 + b2, rtol=1e-5, atol=1e-5)
        wrong = np.zeros((5, 2), np.float64)
        with pytest.raises(ValueError, match=r"shape \(5, 2\) and dtype float32, got shape \(5, 2\), dtype float64"):
            model.predict(x, batch_size=batch_size, out=[first, wrong])
        assert not wrong.any()


def test_a_variable_axis_of_every_length_including_zero():
    """Input((None, 4)): the per-sample shape changes from call to call, so the shortcut's plan
    must be rejected each time; a length of 0 gives the empty result (it raised 'fastdense: plan:
    invalid argument' from the kernel's plan, which refuses steps of zero rows)."""
    rng = np.random.default_rng(13)
    inputs = fastdense.Input((None, 4))
    model = Model(inputs, Dense(2, activation="relu")(Dense(5)(inputs)))
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()])
    k1, b1, k2, b2 = (w.astype(np.float64) for w in model.get_weights())
    for length in (3, 5, 3, 0, 1, 0, 3):
        x = rng.standard_normal((2, length, 4)).astype(np.float32)
        for run in (model.predict, model):
            got = run(x)
            assert got.shape == (2, length, 2) and got.dtype == np.float32
            np.testing.assert_allclose(got, np.maximum((x @ k1 + b1) @ k2 + b2, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kind", KINDS)
def test_nan_and_inf_inputs_of_quantized_models(kind, mode):
    """A sample with NaN or inf gives NaN outputs (as Keras), through the plan and the shortcut
    alike; the other samples keep the reference's values."""
    built = Built(kind, mode, seed=14)
    x = np.random.default_rng(15).standard_normal((5,) + built.shape).astype(np.float32)
    flat = x.reshape(5, 8)
    flat[1, 3], flat[2, 0], flat[3, :] = np.nan, np.inf, -np.inf
    for run in (built.model.predict, built.model, built.model.predict):
        got = run(x)
        assert np.isnan(got[1:4]).all()
        built.check(got[[0, 4]], x[[0, 4]])


def test_a_bad_id_in_a_later_batch_leaves_out_untouched():
    """predict(ids, batch_size=..., out=...): an id outside the table in a later batch raised after
    the earlier batches were written into out (half-written); good ids fill out with the values."""
    rng = np.random.default_rng(16)
    ids = fastdense.Input((3,), dtype="int32")
    model = Model(ids, Dense(2)(Flatten()(Embedding(10, 4)(ids))))
    table, kernel, bias = (rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights())
    model.set_weights([table, kernel, bias])
    good = rng.integers(0, 10, size=(7, 3)).astype(np.int32)
    want = table[good].reshape(7, 12).astype(np.float64) @ kernel + bias
    for batch_size in (None, 2, 3):
        out = np.zeros((7, 2), np.float32)
        assert model.predict(good, batch_size=batch_size, out=out) is out
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        bad = good.copy()
        bad[6, 1] = 10
        out = np.zeros((7, 2), np.float32)
        with pytest.raises(ValueError, match=r"expects ids in \[0, 10\), got 10") as raised:
            model.predict(bad, batch_size=batch_size, out=out)
        assert not out.any()
        # the index is the batch's, so the message names the batch (sample 6 is its last)
        if batch_size is not None:
            first = 6 // batch_size * batch_size
            assert f"(in the batch of samples {first} to 6, batch_size={batch_size})" in str(raised.value)
            assert f"at index ({6 - first}, 1)" in str(raised.value)
        else:
            assert "at index (6, 1)" in str(raised.value) and "in the batch" not in str(raised.value)
        with pytest.raises(ValueError, match=r"in the batch of samples 6 to 6, batch_size=3\)"):
            model.predict(bad, batch_size=3)
