import numpy as np
import torch

from models.phonetic import (
    LogMel,
    PhoneticConfig,
    PhoneticNet,
    RunningCMVN,
    load_phonetic,
    mel_filterbank,
    save_phonetic,
)

CONFIG = PhoneticConfig(channels=16, dilations=(1, 2), lookahead_steps=2)


def _chunks(x, sizes):
    out, pos = [], 0
    for n in sizes:
        out.append(x[pos : pos + n])
        pos += n
    out.append(x[pos:])
    return out


def test_log_mel_streaming_equals_offline():
    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    offline = LogMel(CONFIG).push(audio)
    stream = LogMel(CONFIG)
    streamed = np.concatenate([stream.push(c) for c in _chunks(audio, [1, 159, 400, 37, 3000])])
    assert offline.shape == (8000 // CONFIG.hop, CONFIG.n_mels)
    np.testing.assert_allclose(streamed, offline, atol=1e-5)


def test_log_mel_is_causal_frame_m_ends_at_its_hop():
    audio = np.zeros(1600, np.float32)
    audio[800:] = 0.5  # a step at 50 ms: frames ending at or before sample 800 see none of it
    mels = LogMel(CONFIG).push(audio)
    assert np.allclose(mels[:5], mels[0]) and not np.allclose(mels[5], mels[0])


def test_vocal_tract_warp_moves_filters_down():
    plain, warped = mel_filterbank(CONFIG), mel_filterbank(CONFIG, warp=1.1)
    assert warped.argmax(0)[10] < plain.argmax(0)[10]


def test_running_cmvn_streams_and_normalises():
    frames = np.random.default_rng(1).normal(3.0, 2.0, (2000, 4)).astype(np.float32)
    decay = 0.99
    offline = RunningCMVN(np.zeros(4), np.ones(4), decay).push(frames)
    cmvn = RunningCMVN(np.zeros(4), np.ones(4), decay)
    streamed = np.concatenate([cmvn.push(c) for c in _chunks(frames, [3, 300, 1, 700])])
    np.testing.assert_allclose(streamed, offline, atol=1e-4)
    assert abs(offline[1000:].mean()) < 0.2 and abs(offline[1000:].std() - 1) < 0.2


def test_network_streaming_equals_offline_and_is_causal():
    torch.manual_seed(0)
    net = PhoneticNet(CONFIG).eval()
    x = torch.randn(1, CONFIG.n_mels, 120)
    with torch.no_grad():
        offline = net(x)
        changed = x.clone()
        changed[:, :, 60:] = 0
        assert torch.allclose(net(changed)[:, :, :30], offline[:, :, :30])  # step j sees frames < 2j + 2
    state, outs = net.initial_state(), []
    for start in range(0, 120, 10):
        out, state = net.stream(x[:, :, start : start + 10], state)
        outs.append(out)
    assert offline.shape == (1, CONFIG.num_phones + 1, 60)
    torch.testing.assert_close(torch.cat(outs, 2), offline, atol=1e-5, rtol=1e-4)


def test_checkpoint_rebuilds_the_model(tmp_path):
    net = PhoneticNet(CONFIG).eval()
    save_phonetic(net, str(tmp_path / "m.pt"), note="test")
    loaded = load_phonetic(str(tmp_path / "m.pt"))
    assert loaded.config == CONFIG
    x = torch.randn(1, CONFIG.n_mels, 20)
    torch.testing.assert_close(loaded(x), net(x), atol=2e-2, rtol=1e-2)  # weights stored in half precision
