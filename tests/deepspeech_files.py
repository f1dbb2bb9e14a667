"""DeepSpeech model files in the official formats, for tests: random weights under the official
node names and shapes (mozilla/DeepSpeech DeepSpeech.py at v0.1.0, training/.../train.py at
v0.9.3), written as a frozen GraphDef (.pb) or TensorFlow's memmapped package (.pbmm) the way
convert_graphdef_memmapped_format writes it. Written independently of the importer: the names are
spelled out here and the package directory is serialised by protobuf itself."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from tensorboard.compat.proto import graph_pb2, tensor_shape_pb2, types_pb2

ALIGNMENT = 64  # Allocator::kAllocatorAlignment
MIN_CONVERSION_BYTES = 10000  # convert_graphdef_memmapped_format's default threshold
N_INPUT, N_CONTEXT, N_CLASSES = 26, 9, 29


def official_weights(version: str, n_hidden: int = 2048, seed: int = 0) -> dict[str, np.ndarray]:
    """Official node name -> random float32 weights of the official shapes (n_hidden = 2048)."""
    rng = np.random.default_rng(seed)
    n_in, h = N_INPUT * (2 * N_CONTEXT + 1), n_hidden

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, np.float32) * np.float32(2 / np.sqrt(shape[0]))).astype(np.float32)

    def b(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n, np.float32)).astype(np.float32)

    if version == "0.1.0":
        weights = {"h1": w(n_in, h), "b1": b(h), "h2": w(h, h), "b2": b(h), "h3": w(h, 2 * h), "b3": b(2 * h)}
        for d in ("fw", "bw"):
            weights[f"bidirectional_rnn/{d}/basic_lstm_cell/kernel"] = w(3 * h, 4 * h)
            weights[f"bidirectional_rnn/{d}/basic_lstm_cell/bias"] = b(4 * h)
        weights.update({"h5": w(2 * h, h), "b5": b(h), "h6": w(h, N_CLASSES), "b6": b(N_CLASSES)})
        return weights
    weights = {}
    for i, (fan_in, fan_out) in {1: (n_in, h), 2: (h, h), 3: (h, h)}.items():
        weights[f"layer_{i}/weights"], weights[f"layer_{i}/bias"] = w(fan_in, fan_out), b(fan_out)
    cell = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/"
    weights[cell + "kernel"], weights[cell + "bias"] = w(2 * h, 4 * h), b(4 * h)
    weights.update(
        {
            "layer_5/weights": w(h, h),
            "layer_5/bias": b(h),
            "layer_6/weights": w(h, N_CLASSES),
            "layer_6/bias": b(N_CLASSES),
        }
    )
    return weights


def graph_def(version: str, weights: dict[str, np.ndarray], graph_version: int = 6) -> graph_pb2.GraphDef:
    """A frozen inference graph: the input placeholders, the weights as Const nodes and, for
    v0.9.3, the feature ops and metadata constants of the export."""
    graph = graph_pb2.GraphDef()
    if version == "0.1.0":
        _placeholder(graph, "input_node", [-1, -1, N_INPUT * (2 * N_CONTEXT + 1)])
        _placeholder(graph, "input_lengths", [-1], types_pb2.DT_INT32)
    else:
        n_hidden = weights["layer_1/bias"].shape[0]
        _placeholder(graph, "input_samples", [512])
        spectrogram = graph.node.add(name="AudioSpectrogram", op="AudioSpectrogram", input=["ExpandDims"])
        spectrogram.attr["window_size"].i, spectrogram.attr["stride"].i = 512, 320
        spectrogram.attr["magnitude_squared"].b = True
        mfcc = graph.node.add(name="Mfcc", op="Mfcc", input=["AudioSpectrogram", "Mfcc/sample_rate"])
        mfcc.attr["dct_coefficient_count"].i, mfcc.attr["filterbank_channel_count"].i = N_INPUT, 40
        mfcc.attr["lower_frequency_limit"].f, mfcc.attr["upper_frequency_limit"].f = 20.0, 8000.0
        _placeholder(graph, "input_node", [1, 16, 2 * N_CONTEXT + 1, N_INPUT])
        _placeholder(graph, "previous_state_c", [1, n_hidden])
        _placeholder(graph, "previous_state_h", [1, n_hidden])
        _const(graph, "metadata_version", np.array([graph_version], np.int32))
        _const(graph, "metadata_sample_rate", np.array([16000], np.int32))
    for name, value in weights.items():
        _const(graph, name, value)
    return graph


def write_pb(
    path: Path, version: str, n_hidden: int = 64, seed: int = 0, **graph_args
) -> dict[str, np.ndarray]:
    weights = official_weights(version, n_hidden, seed)
    Path(path).write_bytes(graph_def(version, weights, **graph_args).SerializeToString())
    return weights


def write_pbmm(
    path: Path, version: str = "0.9.3", n_hidden: int = 64, seed: int = 0, **graph_args
) -> dict[str, np.ndarray]:
    """As tensorflow/contrib/util/convert_graphdef_memmapped_format_lib.cc + MemmappedFileSystemWriter."""
    weights = official_weights(version, n_hidden, seed)
    graph = graph_def(version, weights, **graph_args)
    directory = _directory_class()()
    with open(path, "wb") as f:
        for node in graph.node:
            if node.op != "Const" or node.attr["value"].tensor.dtype != types_pb2.DT_FLOAT:
                continue
            tensor = node.attr["value"].tensor
            if len(tensor.tensor_content) < MIN_CONVERSION_BYTES:
                continue
            f.write(b"\0" * (-f.tell() % ALIGNMENT))
            region = "memmapped_package://" + "".join(
                c if c.isalnum() or c in "_." else "_" for c in node.name
            )
            directory.element.add(offset=f.tell(), name=region)
            f.write(tensor.tensor_content)
            shape = tensor_shape_pb2.TensorShapeProto()
            shape.CopyFrom(tensor.tensor_shape)
            node.op = "ImmutableConst"
            node.attr.clear()
            node.attr["dtype"].type = types_pb2.DT_FLOAT
            node.attr["shape"].shape.CopyFrom(shape)
            node.attr["memory_region_name"].s = region.encode()
        directory.element.add(offset=f.tell(), name="memmapped_package://.")
        f.write(graph.SerializeToString())
        directory_offset = f.tell()
        f.write(directory.SerializeToString())
        f.write(struct.pack("<Q", directory_offset))
    return weights


def _placeholder(
    graph: graph_pb2.GraphDef, name: str, shape: list[int], dtype: int = types_pb2.DT_FLOAT
) -> None:
    node = graph.node.add(name=name, op="Placeholder")
    node.attr["dtype"].type = dtype
    for size in shape:
        node.attr["shape"].shape.dim.add(size=size)


def _const(graph: graph_pb2.GraphDef, name: str, value: np.ndarray) -> None:
    node = graph.node.add(name=name, op="Const")
    dtype = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.int32): types_pb2.DT_INT32}[value.dtype]
    node.attr["dtype"].type = dtype
    tensor = node.attr["value"].tensor
    tensor.dtype = dtype
    for size in value.shape:
        tensor.tensor_shape.dim.add(size=size)
    tensor.tensor_content = value.astype(value.dtype.newbyteorder("<")).tobytes()


def _directory_class():
    """tensorflow/core/util/memmapped_file_system.proto, built as a protobuf descriptor."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="test_memmapped_file_system.proto", package="test_tf", syntax="proto3"
    )
    field = descriptor_pb2.FieldDescriptorProto
    element = proto.message_type.add(name="MemmappedFileSystemDirectoryElement")
    element.field.add(name="offset", number=1, type=field.TYPE_UINT64, label=field.LABEL_OPTIONAL)
    element.field.add(name="name", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    element.field.add(name="length", number=3, type=field.TYPE_UINT64, label=field.LABEL_OPTIONAL)
    directory = proto.message_type.add(name="MemmappedFileSystemDirectory")
    directory.field.add(
        name="element",
        number=1,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".test_tf.MemmappedFileSystemDirectoryElement",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("test_tf.MemmappedFileSystemDirectory"))
