"""Reading Mozilla's released DeepSpeech acoustic models, without TensorFlow.

Formats:
- v0.1.0 `output_graph.pb`: a frozen GraphDef (parsed with tensorboard's copy of TensorFlow's
  protobuf classes); weights are `Const` nodes named after the training variables.
- v0.9.3 `.pbmm`: TensorFlow's memmapped package (tensorflow/core/util/memmapped_file_system*):
  tensor regions (each aligned, raw little-endian bytes), then the GraphDef as region
  "memmapped_package://.", then a MemmappedFileSystemDirectory protobuf ({element: {offset, name,
  length}}, decoded here from the wire format), then the directory's offset as a little-endian
  uint64 in the last 8 bytes. A region's length is the distance to the next element (or to the
  directory). convert_graphdef_memmapped_format turned each Const of >= 10000 bytes into an
  `ImmutableConst` node with attrs dtype, shape and memory_region_name = "memmapped_package://" +
  the node name with every character outside [A-Za-z0-9_.] made '_'; smaller Consts (the 2048-wide
  dense biases) stay in the GraphDef. A v0.9.3 `.pb` (plain frozen GraphDef) is read too.
The version is told by the weight names (DeepSpeech.py at v0.1.0; train.py `create_model` at v0.9.3)
and, where present, the graph's `metadata_version` (6 for DeepSpeech 0.7-0.9). Any other file, or a
weight that is missing or misshaped, raises DeepSpeechFileError naming it.
"""
from __future__ import annotations

import dataclasses
import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import graph_pb2, types_pb2

from engine.audio.mfcc import TfMfccConfig
from engine.errors import EngineError
from engine.types import SAMPLE_RATE
from models.deepspeech import DeepSpeech, DeepSpeechConfig

MEMMAPPED_PREFIX = "memmapped_package://"
MEMMAPPED_GRAPH = MEMMAPPED_PREFIX + "."
GRAPH_VERSION = 6  # training/deepspeech_training/GRAPH_VERSION for 0.7.x - 0.9.x
_DTYPES: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
}

# Our weight keys (DeepSpeechConfig.tf_shapes) -> the official node names, per version.
_V010_LSTM = "bidirectional_rnn/{}/basic_lstm_cell/{}"  # TF >= 1.3 names: kernel, bias
_V093_LSTM = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/"
OFFICIAL_NAMES = {
    "0.1.0": {
        **{
            f"dense{i}.{part}": f"{p}{i}"
            for i in (1, 2, 3, 5, 6)
            for part, p in (("kernel", "h"), ("bias", "b"))
        },
        **{
            f"lstm_{d}.{part}": _V010_LSTM.format(d, part)
            for d in ("fw", "bw")
            for part in ("kernel", "bias")
        },
    },
    "0.9.3": {
        **{
            f"dense{i}.{part}": f"layer_{i}/{n}"
            for i in (1, 2, 3, 5, 6)
            for part, n in (("kernel", "weights"), ("bias", "bias"))
        },
        "lstm.kernel": _V093_LSTM + "kernel",
        "lstm.bias": _V093_LSTM + "bias",
    },
}
# TensorFlow 1.0 - 1.2 named BasicLSTMCell's variables weights / biases.
_LEGACY_SUFFIX = {"/kernel": "/weights", "/bias": "/biases"}


class DeepSpeechFileError(EngineError):
    """A file that is not a DeepSpeech 0.1.0 / 0.9.3 acoustic model we can read."""


@dataclasses.dataclass(frozen=True)
class ImportedDeepSpeech:
    network: DeepSpeech
    mfcc: TfMfccConfig | None  # v0.9.3: the front end read from the graph; None for v0.1.0 (PsfMfcc)


def load_deepspeech(path: str | Path) -> ImportedDeepSpeech:
    """The network (eval mode, CPU) and its MFCC settings from an official model file."""
    graph = _GraphFile(Path(path))
    try:
        version = graph.version()
        names = OFFICIAL_NAMES[version]
        tensors = {key: graph.tensor(name) for key, name in names.items() if graph.has(name)}
        tensors.update(
            {
                key: graph.tensor(_legacy(name))
                for key, name in names.items()
                if key not in tensors and graph.has(_legacy(name))
            }
        )
        missing = [names[key] for key in names if key not in tensors]
        if missing:
            raise DeepSpeechFileError(
                f"{path}: not a complete DeepSpeech {version} model (missing {', '.join(missing)})"
            )
        config = DeepSpeechConfig(
            version=version,
            n_hidden=tensors["dense1.kernel"].shape[-1],
            n_classes=tensors["dense6.bias"].shape[-1],
        )
        for key, shape in config.tf_shapes().items():
            if tensors[key].shape != shape:
                raise DeepSpeechFileError(
                    f"{path}: {names[key]} has shape {list(tensors[key].shape)}, expected {list(shape)} for "
                    f"DeepSpeech {version}"
                )
        network = DeepSpeech(config)
        network.load_tf_weights(tensors)
        return ImportedDeepSpeech(network.eval(), graph.mfcc_config() if version == "0.9.3" else None)
    finally:
        graph.close()


def _legacy(name: str) -> str:
    for new, old in _LEGACY_SUFFIX.items():
        if name.endswith(new):
            return name[: -len(new)] + old
    return name


class _GraphFile:
    """A GraphDef from a .pb or .pbmm file, its nodes by name, and their constant tensors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = open(path, "rb")
            self._data = (
                mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
            )
        except (OSError, ValueError) as e:
            raise DeepSpeechFileError(f"{path}: cannot read the model file ({e})") from None
        self._regions = _memmapped_directory(self._data)
        graph_bytes = self._region(MEMMAPPED_GRAPH) if self._regions is not None else self._data
        self.graph = graph_pb2.GraphDef()
        try:
            self.graph.ParseFromString(bytes(graph_bytes))
        except (DecodeError, RuntimeError) as e:
            raise DeepSpeechFileError(
                f"{path}: not a TensorFlow graph (.pb) or memmapped graph (.pbmm), or the file is truncated "
                f"({e})"
            ) from None
        self.nodes = {node.name: node for node in self.graph.node}

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()
        self._file.close()

    def has(self, name: str) -> bool:
        return name in self.nodes

    def version(self) -> str:
        if "metadata_version" in self.nodes:
            found = int(self.tensor("metadata_version").reshape(-1)[0])
            if found != GRAPH_VERSION:
                raise DeepSpeechFileError(
                    f"{self.path}: DeepSpeech graph version {found}; this importer reads 0.1.0 and 0.7-0.9 "
                    f"models (graph version {GRAPH_VERSION})"
                )
        if "layer_1/weights" in self.nodes:
            return "0.9.3"
        if "h1" in self.nodes:
            return "0.1.0"
        if not self.nodes:
            raise DeepSpeechFileError(f"{self.path}: not a TensorFlow graph (.pb) or memmapped graph (.pbmm)")
        raise DeepSpeechFileError(
            f"{self.path}: not a DeepSpeech 0.1.0 or 0.9.3 acoustic model (no weight node 'h1' or "
            "'layer_1/weights')"
        )

    def tensor(self, name: str) -> np.ndarray:
        """The value of a Const or ImmutableConst node."""
        node = self.nodes[name]
        if node.op == "Const":
            proto = node.attr["value"].tensor
            dtype, shape = proto.dtype, tuple(d.size for d in proto.tensor_shape.dim)
            if dtype not in _DTYPES:
                raise DeepSpeechFileError(
                    f"{self.path}: {name} has unsupported data type {types_pb2.DataType.Name(dtype)}"
                )
            count = int(np.prod(shape))
            if proto.tensor_content:
                flat = np.frombuffer(proto.tensor_content, _DTYPES[dtype])
            else:
                flat = np.asarray(
                    proto.float_val
                    if dtype == types_pb2.DT_FLOAT
                    else proto.int_val
                    if dtype == types_pb2.DT_INT32
                    else proto.int64_val
                )
                flat = (
                    np.full(count, flat[0]) if len(flat) == 1 and count > 1 else flat
                )  # TF fills from one value
            if flat.size != count:
                raise DeepSpeechFileError(
                    f"{self.path}: {name} holds {flat.size} values for shape {list(shape)}"
                )
            return flat.astype(_DTYPES[dtype]).reshape(shape)
        if node.op == "ImmutableConst" and self._regions is not None:
            dtype = node.attr["dtype"].type
            shape = tuple(d.size for d in node.attr["shape"].shape.dim)
            region_name = node.attr["memory_region_name"].s.decode()
            if dtype not in _DTYPES or region_name not in self._regions:
                raise DeepSpeechFileError(
                    f"{self.path}: {name} points to a missing or unsupported region {region_name!r}"
                )
            region = self._region(region_name)
            nbytes = int(np.prod(shape)) * _DTYPES[dtype].itemsize
            if len(region) < nbytes:
                raise DeepSpeechFileError(
                    f"{self.path}: region {region_name} holds {len(region)} bytes, {name} {list(shape)} "
                    f"needs {nbytes}"
                )
            return np.frombuffer(region[:nbytes], _DTYPES[dtype]).reshape(shape).copy()
        raise DeepSpeechFileError(f"{self.path}: {name} is a {node.op} node, not a constant")

    def mfcc_config(self) -> TfMfccConfig:
        """The AudioSpectrogram + Mfcc settings in the graph (DeepSpeech 0.9.3's defaults where absent)."""
        by_op = {node.op: node for node in self.graph.node}
        if "metadata_sample_rate" in self.nodes:
            rate = int(self.tensor("metadata_sample_rate").reshape(-1)[0])
            if rate != SAMPLE_RATE:
                raise DeepSpeechFileError(
                    f"{self.path}: the model expects {rate} Hz audio; the engine runs at {SAMPLE_RATE} Hz"
                )
        settings: dict[str, Any] = {}
        if "AudioSpectrogram" in by_op:
            attr = by_op["AudioSpectrogram"].attr
            settings.update(window=attr["window_size"].i, step=attr["stride"].i)
        if "Mfcc" in by_op:
            attr = by_op["Mfcc"].attr
            settings.update(
                coefficients=attr["dct_coefficient_count"].i,
                channels=attr["filterbank_channel_count"].i,
                lower_hz=attr["lower_frequency_limit"].f,
                upper_hz=attr["upper_frequency_limit"].f,
            )
        config = dataclasses.replace(TfMfccConfig(), **settings)
        if config.coefficients != DeepSpeechConfig().n_input:
            raise DeepSpeechFileError(
                f"{self.path}: the graph computes {config.coefficients} MFCC, the network takes "
                f"{DeepSpeechConfig().n_input}"
            )
        return config

    def _region(self, name: str) -> memoryview:
        if self._regions is None:
            raise DeepSpeechFileError(f"{self.path}: not a memory-mapped model, it has no region {name!r}")
        start, length = self._regions[name]
        return memoryview(self._data)[start : start + length]


def _memmapped_directory(data: bytes | mmap.mmap) -> dict[str, tuple[int, int]] | None:
    """Region name -> (offset, length) if `data` ends like a memmapped package, else None."""
    if len(data) <= 8:
        return None
    directory_at = struct.unpack("<Q", data[-8:])[0]
    if directory_at >= len(data) - 8:
        return None
    try:
        elements = [_decode_element(raw) for raw in _fields(bytes(data[directory_at:-8]), field=1)]
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    if not elements or MEMMAPPED_GRAPH not in {name for name, _ in elements}:
        return None
    regions, end = {}, directory_at
    for name, offset in reversed(elements):  # a region runs to the next one's start
        if offset >= end:
            return None
        regions[name] = (offset, end - offset)
        end = offset
    return regions


def _decode_element(raw: bytes) -> tuple[str, int]:
    """MemmappedFileSystemDirectoryElement {1: uint64 offset, 2: string name, 3: uint64 length}."""
    offsets, names = list(_fields(raw, field=1)), list(_fields(raw, field=2))
    return (names[-1].decode() if names else ""), (offsets[-1] if offsets else 0)


def _fields(message: bytes, field: int):
    """The values of one field number in a protobuf message (varints as int, the rest as bytes)."""
    pos = 0
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 2:
            size, pos = _varint(message, pos)
            value, pos = message[pos : pos + size], pos + size
            if pos > len(message):
                raise ValueError("truncated field")
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = message[pos : pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if number == field:
            yield value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
