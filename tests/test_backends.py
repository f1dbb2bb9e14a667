"""engine/backends: every backend available here agrees with eager PyTorch, batches included."""
from __future__ import annotations

import pytest
import torch

from engine.backends import BACKENDS, BackendError, available_backends, make_backend
from models.r2v import R2V, R2VConfig

ATOL = 1e-4  # fp32 backends vs eager, on frames in 0..1 (they reorder float sums differently)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny tensors, and cores shared with other jobs (oversubscribed OpenMP
    threads made the compile test 6x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = R2V(R2VConfig(size=32, widths=(8, 16), future=0))
    for p in net.parameters():  # a trained-like network: every path contributes
        p.data.normal_(0, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def stacks(model):
    torch.manual_seed(1)
    return torch.rand(3, model.config.in_channels, 32, 32)


def _agrees(name, model, stacks):
    backend = make_backend(name, model)
    reference = model.generate(stacks)
    batched = backend(stacks)  # three sessions' frames in one call
    single = backend(stacks[1:2])
    assert batched.shape == (3, 3, 32, 32) and batched.dtype == torch.float32
    assert (batched - reference).abs().max() < ATOL
    assert (single - reference[1:2]).abs().max() < ATOL
    assert 0.05 < reference.std()  # the comparison is not between two constant images


@pytest.mark.parametrize("name", ["eager", "onnxruntime"])
def test_backend_agrees_with_eager(name, model, stacks):
    if name not in available_backends():
        pytest.skip(f"{name} is not installed here")
    _agrees(name, model, stacks)


@pytest.mark.slow
def test_compiled_backend_agrees_with_eager(model, stacks):
    if "compile" not in available_backends():
        pytest.skip("torch.compile needs a C++ compiler on CPU")
    _agrees("compile", model, stacks)


def test_tensorrt_only_where_it_can_run(model, stacks):
    if "tensorrt" in available_backends("cuda"):
        _agrees("tensorrt", model.cuda(), stacks.cuda())
    else:
        with pytest.raises(BackendError, match="not available"):
            make_backend("tensorrt", model)


def test_backend_errors(model):
    assert set(available_backends()) <= set(BACKENDS) and "eager" in available_backends()
    with pytest.raises(BackendError, match="unknown backend"):
        make_backend("tpu", model)
    with pytest.raises(BackendError, match="CUDA"):
        make_backend("eager", model, precision="fp16")
    with pytest.raises(BackendError, match="must be"):
        make_backend("eager", model)(torch.zeros(1, 3, 32, 32))
