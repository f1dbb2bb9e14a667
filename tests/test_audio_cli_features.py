"""`features` command logic (engine/audio/cli_features.py): the .npy it writes and its errors, which
are all EngineError / OSError so that `python -m engine` prints one line and exits 2."""
import argparse

import numpy as np
import pytest
from audio_signals import speech_like, write_wav_float, write_wav_int
from deepspeech_files import write_pb, write_pbmm

from engine.audio import cli_features
from engine.audio.decode import load_audio
from engine.audio.features import extractor
from engine.errors import EngineError
from engine.types import SAMPLE_RATE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def parse(*argv):
    parser = argparse.ArgumentParser()
    cli_features.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["features", *map(str, argv)])


@pytest.mark.parametrize(
    "version,writer,name", [("0.9.3", write_pbmm, "m.pbmm"), ("0.1.0", write_pb, "m.pb")]
)
def test_writes_features_per_video_frame(tmp_path, version, writer, name):
    writer(tmp_path / name, version, n_hidden=32)
    audio = write_wav_int(tmp_path / "a.wav", speech_like(1.5), SAMPLE_RATE)
    args = parse(
        "--audio", audio, "--kind", "deepspeech", "--model", tmp_path / name, "--out", tmp_path / "f.npy"
    )
    args.run(args)
    features = np.load(tmp_path / "f.npy")
    expected = extractor("deepspeech", str(tmp_path / name)).offline(load_audio(audio))
    assert features.shape == (45, 29) and features.dtype == np.float32
    np.testing.assert_allclose(features, expected, atol=1e-4)


@pytest.mark.parametrize(
    "audio,model,out,error,message",
    [
        ("silent.wav", "m.pbmm", "f.npy", EngineError, "the audio is silent"),
        ("empty.wav", "m.pbmm", "f.npy", EngineError, "the audio is empty"),
        ("junk.wav", "m.pbmm", "f.npy", EngineError, "cannot decode audio"),
        ("a.wav", None, "f.npy", EngineError, "needs a model file"),
        ("a.wav", "junk.wav", "f.npy", EngineError, "not a TensorFlow graph"),
        ("a.wav", "m.pbmm", "missing/f.npy", OSError, "does not exist"),
    ],
)
def test_bad_input_one_error_no_output(tmp_path, audio, model, out, error, message):
    write_pbmm(tmp_path / "m.pbmm", n_hidden=16)
    write_wav_int(tmp_path / "a.wav", speech_like(0.5), SAMPLE_RATE)
    write_wav_int(tmp_path / "silent.wav", np.zeros(8000), SAMPLE_RATE)
    write_wav_float(tmp_path / "empty.wav", np.zeros(0), SAMPLE_RATE)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 100)
    argv = ["--audio", tmp_path / audio, "--kind", "deepspeech", "--out", tmp_path / out]
    args = parse(*argv, *(["--model", tmp_path / model] if model else []))
    with pytest.raises(error, match=message):
        args.run(args)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".npy", ".tmp")) == []
