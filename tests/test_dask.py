"""fastdense.dask.predict on a real dask.distributed LocalCluster (2 worker processes), bit for bit
against model.predict on the whole array."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastdense.layers import Concatenate, Dense, Input
from fastdense.models import Model, Sequential


def test_importing_fastdense_does_not_import_dask():
    code = textwrap.dedent("""
        import sys
        import fastdense, fastdense.models, fastdense.layers, fastdense.saving.cli, fastdense.dask
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "pandas", "pyarrow"))
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastdense  # noqa: E402
import fastdense.dask as fdd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """One cluster for the whole module: 2 worker processes of 1 thread (one per core here)."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers need not import this file
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=50)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def mlp(dtype="float32", seed=0, features=24):
    rng = np.random.default_rng(seed)
    model = Sequential([Dense(48, activation="relu", input_shape=(features,), dtype=dtype),
                        Dense(32, activation="tanh", dtype=dtype), Dense(7, activation="softmax", dtype=dtype)])
    model.set_weights([rng.standard_normal(w.shape) * 0.3 for w in model.get_weights()])
    return model


def two_input_model():
    rng = np.random.default_rng(1)
    a, b = Input((6,), name="a"), Input((3, 2), name="b")
    from fastdense.layers import Flatten
    h = Concatenate()([Dense(16, activation="relu")(a), Flatten()(b)])
    model = Model([a, b], {"score": Dense(3, name="score")(h), "gate": Dense(1, activation="sigmoid", name="gate")(h)})
    model.set_weights([rng.standard_normal(w.shape) * 0.5 for w in model.get_weights()])
    return model


def test_float32_mlp_bit_for_bit_with_odd_chunks(client):
    model = mlp()
    x = np.random.default_rng(2).standard_normal((1003, 24)).astype(np.float32)
    dx = da.from_array(x, chunks=((1, 500, 37, 465), (5, 19)))        # feature axis split too
    y = fdd.predict(model, dx)
    assert y.dtype == np.float32 and y.shape == (1003, 7)
    assert y.chunks == ((1, 500, 37, 465), (7,))
    assert type(y._meta) is np.ndarray and y._meta.shape == (0, 0)
    got = y.compute()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, model.predict(x))
    # and through predict's own batches, with float64 data cast to the model's float32 on the workers
    got = fdd.predict(model, da.from_array(x.astype(np.float64), chunks=300), batch_size=64).compute()
    np.testing.assert_array_equal(got, model.predict(x))


def test_float64_mlp(client):
    model = mlp("float64", seed=3)
    x = np.random.default_rng(4).standard_normal((640, 24))
    y = fdd.predict(model, da.from_array(x, chunks=(128, 24)))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y.compute(), model.predict(x))


def test_multi_input_functional_model(client):
    model = two_input_model()
    rng = np.random.default_rng(5)
    xa = rng.standard_normal((301, 6)).astype(np.float32)
    xb = rng.standard_normal((301, 3, 2)).astype(np.float32)
    want = model.predict([xa, xb])
    # a dict of inputs, in another order and another row chunking each
    got = fdd.predict(model, {"b": da.from_array(xb, chunks=(100, 1, 2)), "a": da.from_array(xa, chunks=(77, 6))})
    assert sorted(got) == ["gate", "score"]
    assert got["score"].chunks == ((77, 77, 77, 70), (3,)) and got["gate"].dtype == np.float32
    computed = dask.compute(got)[0]
    for key in want:
        np.testing.assert_array_equal(computed[key], want[key])
    # a list of inputs
    got = fdd.predict(model, [da.from_array(xa, chunks=50), da.from_array(xb, chunks=50)])
    np.testing.assert_array_equal(got["score"].compute(), want["score"])


def test_dataframe_columns_by_name(client):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    model = mlp(seed=6, features=3)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.standard_normal((500, 5)), columns=["id", "c", "a", "b", "noise"],
                         index=pd.RangeIndex(1000, 1500, name="row"))
    ddf = dd.from_pandas(frame, npartitions=7)
    out = fdd.predict(model, ddf, columns=["a", "b", "c"])
    assert list(out.columns) == [f"{model.output_names[0]}_{j}" for j in range(7)]
    assert list(out.dtypes) == [np.dtype(np.float32)] * 7 and out.npartitions == 7
    got = out.compute()
    want = model.predict(frame[["a", "b", "c"]].to_numpy(np.float32))
    np.testing.assert_array_equal(got.to_numpy(), want)
    assert got.index.equals(frame.index)
    named = fdd.predict(model, ddf, columns=["a", "b", "c"], output_columns=list("ABCDEFG")).compute()
    assert list(named.columns) == list("ABCDEFG")
    np.testing.assert_array_equal(named.to_numpy(), want)
    # the same rows as a dask array of unknown chunk sizes (rows per partition not known)
    unknown = ddf[["a", "b", "c"]].to_dask_array()
    assert np.isnan(unknown.shape[0])
    np.testing.assert_array_equal(fdd.predict(model, unknown).compute(), want)


def test_dataframe_multi_input_dict_of_columns(client):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    rng = np.random.default_rng(8)
    a, b = Input((2,), name="left"), Input((3,), name="right")
    model = Model([a, b], [Dense(4, activation="relu")(Concatenate()([a, b])), Dense(2)(b)])
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    frame = pd.DataFrame(rng.standard_normal((200, 5)).astype(np.float32), columns=list("pqrst"))
    out = fdd.predict(model, dd.from_pandas(frame, npartitions=3),
                      columns={"right": ["t", "s", "r"], "left": ["q", "p"]})
    assert len(out.columns) == 6
    want = model.predict([frame[["q", "p"]].to_numpy(), frame[["t", "s", "r"]].to_numpy()])
    np.testing.assert_array_equal(out.compute().to_numpy(), np.concatenate(want, axis=1))


def test_the_model_travels_once_and_is_rebuilt_once_per_worker(client):
    model = mlp(seed=9, features=64)
    payload = fdd.model_payload(model)
    weight_bytes = sum(w.nbytes for w in payload.weights)
    y = fdd.predict(model, da.zeros((4000, 64), chunks=(100, 64), dtype=np.float32))
    graph = dict(y.__dask_graph__())
    holders = [k for k in graph if str(k).startswith("fastdense-model-")]
    assert holders == [f"fastdense-model-{payload.key}"]
    for key, task in graph.items():
        if key not in holders:                  # 40 chunk tasks refer to the payload by its key
            assert len(pickle.dumps(task)) < weight_bytes / 4, key
    before = client.run(fdd.cache_info)
    np.testing.assert_array_equal(y.compute(), model.predict(np.zeros((4000, 64), np.float32)))
    after = client.run(fdd.cache_info)
    assert all(after[w].builds - before[w].builds <= 1 for w in after)
    assert sum(after[w].builds - before[w].builds for w in after) >= 1
    # the payload holds data only: config text and arrays
    assert isinstance(payload.config, str) and all(type(w) is np.ndarray for w in payload.weights)


def _threads_in_task(block):
    """fastdense's thread count in the process (and task) that computed ``block``."""
    return np.full((block.shape[0], 1), fastdense.get_num_threads())


def threads_seen(y, **compute):
    """The thread counts the predict tasks of ``y`` ran with (the check is fused into them)."""
    return set(y.map_blocks(_threads_in_task, chunks=(y.chunks[0], (1,)), dtype=int).compute(**compute).ravel())


def test_thread_policy_is_explicit_and_per_worker(client):
    threads_before = fastdense.get_num_threads()
    model = mlp(seed=10)
    x = da.ones((100, 24), chunks=25, dtype=np.float32)
    assert threads_seen(fdd.predict(model, x)) == {1}                    # default: threads=1
    assert threads_seen(fdd.predict(model, x, threads=2)) == {2}
    assert threads_seen(fdd.predict(model, x)) == {1}
    assert threads_seen(fdd.predict(model, x), scheduler="threads") == {threads_before}   # in this process,
    assert fastdense.get_num_threads() == threads_before                                  # left alone


def _die_once(block, marker, block_info=None):
    """Kill this worker process the first time chunk 5 runs (the retry finds the marker)."""
    if block_info[None]["chunk-location"][0] == 5:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return block
        os.kill(os.getpid(), signal.SIGKILL)
    return block


def test_a_worker_killed_mid_computation_gives_the_same_result(client, tmp_path):
    model = mlp(seed=11)
    x = np.random.default_rng(12).standard_normal((1200, 24)).astype(np.float32)
    dx = da.from_array(x, chunks=100).map_blocks(_die_once, str(tmp_path / "died"), dtype=np.float32)
    pids = set(client.run(os.getpid).values())
    got = fdd.predict(model, dx).compute()
    assert (tmp_path / "died").exists()
    assert set(client.run(os.getpid).values()) != pids                    # a worker was replaced
    np.testing.assert_array_equal(got, model.predict(x))


def test_each_chunk_reaches_predict_as_the_block_itself(monkeypatch):
    """No per-task copy of the input: Dask's concatenation of the feature axes (one chunk) would
    copy every block (a fifth of the predict time at 784 features, measured in bench_dask)."""
    model = two_input_model()
    rng = np.random.default_rng(16)
    blocks_a = [rng.standard_normal((n, 6)).astype(np.float32) for n in (40, 25)]
    blocks_b = [rng.standard_normal((n, 3, 2)).astype(np.float32) for n in (40, 25)]

    def from_blocks(blocks):
        return da.concatenate([da.from_delayed(dask.delayed(b), b.shape, b.dtype) for b in blocks])

    seen = []
    run = fdd._run
    monkeypatch.setattr(fdd, "_run", lambda payload, arrays, *rest: seen.append(arrays) or run(payload, arrays, *rest))
    got = fdd.predict(model, [from_blocks(blocks_a), from_blocks(blocks_b)])
    got = dask.compute(got, scheduler="sync")[0]
    assert sorted(map(id, blocks_a + blocks_b)) == sorted(id(a) for arrays in seen for a in arrays)
    want = model.predict([np.concatenate(blocks_a), np.concatenate(blocks_b)])
    np.testing.assert_array_equal(got["score"], want["score"])


def test_bad_input_is_refused_before_anything_runs():
    model = mlp()
    with pytest.raises(ValueError, match=r"shape \(24,\), got \(23,\)"):
        fdd.predict(model, da.zeros((10, 23), chunks=5))
    with pytest.raises(TypeError, match="not a dask array"):
        fdd.predict(model, [np.zeros((10, 24))])
    with pytest.raises(TypeError, match="expects a dask array"):
        fdd.predict(model, np.zeros((10, 24)))
    with pytest.raises(ValueError, match="threads"):
        fdd.predict(model, da.zeros((10, 24), chunks=5), threads=0)
    with pytest.raises(ValueError, match="batch_size"):
        fdd.predict(model, da.zeros((10, 24), chunks=5), batch_size=0)
    with pytest.raises(ValueError, match="same number of rows"):
        fdd.predict(two_input_model(), [da.zeros((10, 6), chunks=5), da.zeros((11, 3, 2), chunks=5)])
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(pd.DataFrame({"a": [1.0], "b": [2.0]}), npartitions=1)
    with pytest.raises(ValueError, match=r"no column\(s\) \['z'\]"):
        fdd.predict(mlp(features=2), ddf, columns=["a", "z"])
    with pytest.raises(ValueError, match="2 column"):
        fdd.predict(mlp(features=3), ddf)


def test_unsafe_payload_is_refused_on_the_worker_side():
    payload = fdd.model_payload(mlp())
    config = payload.config.replace('"class_name": "Dense"', '"class_name": "Lambda"', 1)
    from fastdense.saving.errors import UnsafeFileError
    with pytest.raises(UnsafeFileError):
        fdd.model_from_payload(payload._replace(key="lambda", config=config))


def test_batchnorm_and_embedding_model(client):
    """The payload (config + weights) round-trips the layers of issue 13 (a failure here means a
    layer's get_config/get_weights does not: fix it there)."""
    from fastdense import layers
    rng = np.random.default_rng(13)
    tokens = Input((5,), dtype="int32", name="tokens")
    h = layers.Flatten()(layers.Embedding(50, 4)(tokens))
    out = Dense(3)(layers.BatchNormalization()(Dense(8, activation="relu")(h)))
    model = Model(tokens, out)
    # 1-D weights (biases, BN's gamma/beta/mean/variance) positive: the moving variance must be
    model.set_weights([np.abs(rng.standard_normal(w.shape)) + 0.5 if w.ndim == 1 else rng.standard_normal(w.shape)
                       for w in model.get_weights()])
    x = rng.integers(0, 50, (400, 5)).astype(np.int32)
    got = fdd.predict(model, da.from_array(x, chunks=(90, 5))).compute()
    np.testing.assert_array_equal(got, model.predict(x))


def test_int8_model(client):
    model = mlp(seed=14)
    model.quantize("int8")
    x = np.random.default_rng(15).standard_normal((500, 24)).astype(np.float32)
    got = fdd.predict(model, da.from_array(x, chunks=(120, 24))).compute()
    np.testing.assert_array_equal(got, model.predict(x))
