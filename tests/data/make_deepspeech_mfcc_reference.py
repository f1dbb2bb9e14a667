"""Writes deepspeech_mfcc_reference.npz: MFCC of a short test signal by the original code, for
tests/test_audio_mfcc.py. Needs TensorFlow and python_speech_features 0.6, which the project does
not depend on; run once, in a separate environment:
    python -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 python_speech_features==0.6 scipy
    /tmp/tfvenv/bin/python tests/data/make_deepspeech_mfcc_reference.py
"""
from pathlib import Path

import numpy as np
import tensorflow as tf
from python_speech_features import mfcc

rate = 16000
t = np.arange(int(0.3 * rate)) / rate
x = 0.4 * np.sin(2 * np.pi * (150 + 2000 * t) * t) + 0.02 * np.random.default_rng(0).standard_normal(len(t))
x[1500:2600] = 0  # digital silence: the filterbank floors
x = x.astype(np.float32)
spectrogram = tf.raw_ops.AudioSpectrogram(
    input=x[:, None], window_size=512, stride=320, magnitude_squared=True
)
tf_mfcc = tf.raw_ops.Mfcc(
    spectrogram=spectrogram, sample_rate=rate, upper_frequency_limit=8000.0, lower_frequency_limit=20.0,
    filterbank_channel_count=40, dct_coefficient_count=26,
)
np.savez(
    Path(__file__).with_name("deepspeech_mfcc_reference.npz"),
    audio=x,
    tf_mfcc=tf_mfcc.numpy()[0],  # DeepSpeech 0.9.3's feature graph
    psf_mfcc=mfcc(x * 32768, samplerate=rate, numcep=26),  # DeepSpeech 0.1.0 / VOCA / FACIAL
    versions=np.array([tf.__version__, "python_speech_features 0.6"]),
)
