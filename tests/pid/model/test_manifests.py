"""Every released architecture, built on the meta device, has exactly the manifest's keys and shapes."""

import json

import pytest
import torch

import pid
from pid.configs import RELEASED_CHECKPOINTS, architecture_names, released_config
from pid.io.checkpoints import infer_config
from conftest import GOLDEN_DIR, require_golden


def manifests():
    require_golden()
    return {path.stem: json.loads(path.read_text()) for path in sorted((GOLDEN_DIR / "manifests").glob("*.json"))}


def meta_state(config):
    with torch.device("meta"):
        net = pid.PiDNet(**config)
    return net.state_dict()


@pytest.mark.parametrize("arch", architecture_names())
def test_architecture_matches_manifest(arch):
    manifest = manifests()[arch]
    assert released_config(arch) == manifest["config"]
    state = meta_state(manifest["config"])
    shapes = {f"net.{k}": list(v.shape) for k, v in state.items()}
    assert shapes == manifest["keys"]
    assert sum(v.numel() for v in state.values()) == manifest["param_count"]
    for name in manifest["checkpoint_names"]:
        assert released_config(name) == manifest["config"]


def test_every_manifest_checkpoint_is_registered():
    names = {name for manifest in manifests().values() for name in manifest["checkpoint_names"]}
    assert names <= set(RELEASED_CHECKPOINTS)
    assert set(manifests()) == set(architecture_names())


@pytest.mark.parametrize("arch", architecture_names())
def test_infer_config_from_released_shapes(arch):
    state = meta_state(released_config(arch))
    assert infer_config(state) == released_config(arch)
    without_aux = {k: v for k, v in state.items() if not k.startswith("lq_proj.lq_aux_rgb_head.")}
    assert infer_config(without_aux) == released_config(arch)


def test_unknown_checkpoint_name():
    with pytest.raises(KeyError, match="unknown PiD checkpoint 'PiD_nope'.*known checkpoints"):
        pid.build_model("PiD_nope")


def test_unknown_config_key():
    with pytest.raises(ValueError, match="unknown PiD config keys \\['hidden'\\]"):
        pid.build_model({"hidden": 3})
