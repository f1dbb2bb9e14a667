"""run_server.py's command line: every option lands in its config field, typed as declared."""

from __future__ import annotations

import pytest

import run_server
from streaming.cluster.config import ClusterConfig
from streaming.config import ServerConfig


def test_no_options_give_the_configs_defaults():
    config, threads, cluster = run_server.parse_args([])
    assert config == ServerConfig() and threads == 1 and cluster is None


def test_options_land_in_their_fields():
    config, threads, cluster = run_server.parse_args(
        ["--port", "0", "--size", "256", "--max-say-s", "2.5", "--stun-server", "", "--renderer", "composite",
         "--allowed-origin", "https://a.example", "--allowed-origin", "https://b.example", "--threads", "2",
         "--cluster", "--replicas", "3", "--drain-s", "4.5", "--max-sessions", "6"]
    )  # fmt: skip
    assert (config.port, config.size, config.max_say_s, config.stun_server, config.renderer) == (
        0, 256, 2.5, "", "composite"
    )  # fmt: skip
    assert config.allowed_origins == ("https://a.example", "https://b.example") and threads == 2
    assert cluster is not None
    assert (cluster.replicas, cluster.drain_s, cluster.sessions_per_replica, cluster.torch_threads) == (
        3,
        4.5,
        6,
        2,
    )
    assert cluster.host_cpus == ClusterConfig().host_cpus


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "x"],
        ["--size", "7"],
        ["--device", "tpu"],
        ["--threads", "0"],
        ["--replicas", "0", "--cluster"],
    ],
)
def test_bad_options_exit_with_status_2(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit:
        run_server.parse_args(argv)
    assert exit.value.code == 2 and "error:" in capsys.readouterr().err
