"""The chain-beside-network GIF (dnn_spring.analysis._animate, `dnn-spring animate`)."""

import json

import numpy as np
import pytest
from PIL import Image

from dnn_spring.analysis._animate import animate_chain_and_network, fitted_chain, setting_config
from dnn_spring.cli import main as cli_main
from dnn_spring.spring import FirstOrderConfig


def _record(n_points=8, epochs=(0, 5, 10)):
    """A record whose load curve bends from straight to concave over training."""
    ell = np.linspace(0, 1, n_points)
    trajectory = [{"epoch": e, "log_d": [*(2.0 - (ell ** (1 + e / 5))).tolist(), 9.0]}
                  for e in epochs]
    return {"slope": 0.0, "noise": 0.0, "log_d": trajectory[-1]["log_d"],
            "trajectory": trajectory}


def test_gif_has_the_frames_and_fits_in_size(tmp_path):
    chain = FirstOrderConfig(n_blocks=7, mu_right=0.1, mu_left=0.1, noise=0.05, n_steps=500)
    out = animate_chain_and_network(chain, _record(), tmp_path / "a.gif", frames=6, fps=5)
    with Image.open(out) as gif:
        assert gif.n_frames == 6 and gif.size[0] > gif.size[1] > 100
    assert out.stat().st_size < 3_000_000
    with pytest.raises(ValueError, match="must have 7 blocks"):
        animate_chain_and_network(chain.replace(n_blocks=5), _record(), tmp_path / "b.gif")
    with pytest.raises(ValueError, match="trajectory of at least 2"):
        animate_chain_and_network(chain, {"trajectory": []}, tmp_path / "c.gif")


def test_fitted_chain_and_settings():
    chain = fitted_chain(_record())
    assert chain.n_blocks == 7 and chain.mu_left == chain.mu_right  # symmetric friction
    lazy, active = setting_config("lazy", epochs=50), setting_config("active", epochs=50)
    assert (lazy.model.slope, lazy.train.noise) == (0.0, 0.0)
    assert active.model.slope > 0 and active.train.noise > 0
    assert lazy.data.dataset == "mnist5k" and lazy.train.curve_every == 2
    with pytest.raises(ValueError, match="`setting` must be one of"):
        setting_config("sleepy")


@pytest.mark.slow
def test_cli_animates_a_record_and_a_run_it_trains(tmp_path, capsys):
    source = tmp_path / "run.json"
    source.write_text(json.dumps(_record()))
    out = tmp_path / "from_record.gif"
    assert cli_main(["animate", "--record", str(source), "--frames", "4", "--out", str(out)]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 4
    trained = tmp_path / "trained.gif"
    assert cli_main(["animate", "--setting", "lazy", "--epochs", "20", "--frames", "3",
                     "--out", str(trained)]) == 0
    assert trained.stat().st_size > 0
    capsys.readouterr()
    # after 2 epochs log D still rises with depth: no chain makes that, one line says so
    assert cli_main(["animate", "--setting", "active", "--epochs", "2", "--frames", "3",
                     "--out", str(trained)]) == 2
    assert "must fall from its first to its last point" in capsys.readouterr().err
    assert cli_main(["animate", "--frames", "1"]) == 2  # checked before any training
    assert "`--frames` must be >= 2, got 1" in capsys.readouterr().err
    source.write_text("not json")
    assert cli_main(["animate", "--record", str(source), "--out", str(out)]) == 2
    assert "is not JSON" in capsys.readouterr().err
