"""DeepSpeech port: official-format files (random weights, official names and shapes) imported and
run by PyTorch agree with an independent NumPy forward pass; v0.9.3 streams with carried state."""
import time

import numpy as np
import pytest
import torch
from deepspeech_files import graph_def, official_weights, write_pb, write_pbmm

from engine.audio.deepspeech_import import DeepSpeechFileError, load_deepspeech
from models.deepspeech import DeepSpeech, DeepSpeechConfig

V093_CELL = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_lstm(x, kernel, bias, forget_bias, reverse=False):
    """TensorFlow's BasicLSTMCell / LSTMBlockFusedCell: z = [x, h] K + b split (i, j, f, o)."""
    h = c = np.zeros(bias.size // 4)
    out = np.zeros((len(x), h.size))
    for t in reversed(range(len(x))) if reverse else range(len(x)):
        i, j, f, o = np.split(np.concatenate([x[t], h]) @ kernel + bias, 4)
        c = sigmoid(f + forget_bias) * c + sigmoid(i) * np.tanh(j)
        h = sigmoid(o) * np.tanh(c)
        out[t] = h
    return out


def numpy_deepspeech(version, w, x):
    """x [T, 494] -> logits [T, 29] in float64, straight from the official names."""
    w = {k: v.astype(np.float64) for k, v in w.items()}

    def clipped(v):
        return np.minimum(np.maximum(v, 0), 20)

    if version == "0.1.0":
        a = clipped(clipped(clipped(x @ w["h1"] + w["b1"]) @ w["h2"] + w["b2"]) @ w["h3"] + w["b3"])
        cell = "bidirectional_rnn/{}/basic_lstm_cell/"
        fw = numpy_lstm(a, w[cell.format("fw") + "kernel"], w[cell.format("fw") + "bias"], 1.0)
        bw = numpy_lstm(a, w[cell.format("bw") + "kernel"], w[cell.format("bw") + "bias"], 1.0, reverse=True)
        return clipped(np.concatenate([fw, bw], 1) @ w["h5"] + w["b5"]) @ w["h6"] + w["b6"]
    a = x
    for i in (1, 2, 3):
        a = clipped(a @ w[f"layer_{i}/weights"] + w[f"layer_{i}/bias"])
    a = numpy_lstm(a, w[V093_CELL + "kernel"], w[V093_CELL + "bias"], 0.0)
    return clipped(a @ w["layer_5/weights"] + w["layer_5/bias"]) @ w["layer_6/weights"] + w["layer_6/bias"]


def torch_logits(network, x, state=None):
    with torch.no_grad():
        logits, state = network(torch.from_numpy(x.astype(np.float32))[None], state)
    return logits[0].numpy(), state


def inputs(steps, seed=1):
    return np.random.default_rng(seed).standard_normal((steps, 494)) * 2


@pytest.mark.parametrize(
    "version,writer,suffix",
    [("0.9.3", write_pbmm, ".pbmm"), ("0.9.3", write_pb, ".pb"), ("0.1.0", write_pb, ".pb")],
)
def test_imported_model_matches_numpy(tmp_path, version, writer, suffix):
    weights = writer(tmp_path / f"model{suffix}", version, n_hidden=64)
    imported = load_deepspeech(tmp_path / f"model{suffix}")
    assert imported.network.config == DeepSpeechConfig(version=version, n_hidden=64)
    x = inputs(80)  # long enough for torch's LSTM; shorter inputs take the step loop (tested below)
    expected = numpy_deepspeech(version, weights, x)
    assert np.abs(torch_logits(imported.network, x)[0] - expected).max() <= 1e-4
    assert np.abs(expected).max() > 0.5  # the check is not vacuous


def test_full_official_shapes_v093_pbmm(tmp_path):
    start = time.perf_counter()
    weights = write_pbmm(tmp_path / "output_graph.pbmm", "0.9.3", n_hidden=2048)
    imported = load_deepspeech(tmp_path / "output_graph.pbmm")
    config = imported.network.config
    assert (config.n_hidden, config.n_classes, config.input_size) == (2048, 29, 494)
    lstm_bias_hh = imported.network.lstm.bias_hh_l0.numel()  # torch's second LSTM bias, zero (TF has one)
    assert sum(p.numel() for p in imported.network.parameters()) - lstm_bias_hh == sum(
        v.size for v in weights.values()
    )
    x = inputs(6)
    assert np.abs(torch_logits(imported.network, x)[0] - numpy_deepspeech("0.9.3", weights, x)).max() <= 1e-4
    assert time.perf_counter() - start < 60  # generous: the file write + import is the bulk


@pytest.mark.slow
def test_full_official_shapes_v010_pb(tmp_path):
    weights = write_pb(tmp_path / "output_graph.pb", "0.1.0", n_hidden=2048)
    imported = load_deepspeech(tmp_path / "output_graph.pb")
    assert imported.network.config.n_hidden_3 == 4096
    x = inputs(4)
    assert np.abs(torch_logits(imported.network, x)[0] - numpy_deepspeech("0.1.0", weights, x)).max() <= 1e-4


def test_v093_streaming_with_carried_state_equals_offline(tmp_path):
    write_pbmm(tmp_path / "m.pbmm", n_hidden=64)
    network = load_deepspeech(tmp_path / "m.pbmm").network
    x = inputs(100)
    offline, _ = torch_logits(network, x)  # torch.nn.LSTM; the short pieces below run the step loop
    for steps in (1, 3, 16):
        state, parts = None, []
        for start in range(0, len(x), steps):
            logits, state = torch_logits(network, x[start : start + steps], state)
            parts.append(logits)
        assert np.abs(np.concatenate(parts) - offline).max() <= 1e-5


def test_v010_refuses_a_carried_state():
    network = DeepSpeech(DeepSpeechConfig(version="0.1.0", n_hidden=8))
    _, state = torch_logits(network, inputs(3))
    with pytest.raises(ValueError, match="bidirectional"):
        torch_logits(network, inputs(3), state)


def test_mfcc_settings_are_read_from_the_graph(tmp_path):
    write_pbmm(tmp_path / "m.pbmm", n_hidden=16)
    mfcc = load_deepspeech(tmp_path / "m.pbmm").mfcc
    assert (mfcc.window, mfcc.step, mfcc.channels, mfcc.coefficients, mfcc.upper_hz) == (
        512,
        320,
        40,
        26,
        8000,
    )


def _write_graph(path, version, weights, **kwargs):
    path.write_bytes(graph_def(version, weights, **kwargs).SerializeToString())
    return path


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.write_bytes(b""), "not a TensorFlow graph"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)), "not a TensorFlow graph"),
        (lambda p: _write_graph(p, "0.1.0", {}), "not a DeepSpeech 0.1.0 or 0.9.3"),
        (
            lambda p: _write_graph(p, "0.9.3", official_weights("0.9.3", 16), graph_version=5),
            "graph version 5",
        ),
        (
            lambda p: _write_graph(
                p,
                "0.9.3",
                {k: v for k, v in official_weights("0.9.3", 16).items() if k != V093_CELL + "kernel"},
            ),
            "missing cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/kernel",
        ),
        (
            lambda p: _write_graph(
                p, "0.1.0", {**official_weights("0.1.0", 16), "h3": np.zeros((16, 16), np.float32)}
            ),
            r"h3 has shape \[16, 16\], expected \[16, 32\]",
        ),
    ],
    ids=["empty", "random bytes", "not deepspeech", "other version", "missing tensor", "misshaped tensor"],
)
def test_bad_files_get_one_clear_error(tmp_path, make, message):
    path = tmp_path / "model.pb"
    make(path)
    with pytest.raises(DeepSpeechFileError, match=message):
        load_deepspeech(path)


def test_truncated_pbmm_is_refused(tmp_path):
    write_pbmm(tmp_path / "m.pbmm", n_hidden=16)
    data = (tmp_path / "m.pbmm").read_bytes()
    (tmp_path / "m.pbmm").write_bytes(data[: len(data) // 2])
    with pytest.raises(DeepSpeechFileError, match="truncated"):
        load_deepspeech(tmp_path / "m.pbmm")


def test_missing_file(tmp_path):
    with pytest.raises(DeepSpeechFileError, match="cannot read"):
        load_deepspeech(tmp_path / "absent.pbmm")
