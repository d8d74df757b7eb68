"""Every valid peer config round-trips: Hugging Face RegNetConfig, timm RegNetCfg, pycls YAML.

Random configs over the ranges users meet (hypothesis); a config is valid when its library
builds it, and then config -> spec -> config gives it back (Hugging Face's groups_width: a
value that gives every stage the same groups), and the spec builds the peer's network.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from regnet_space.core.errors import InteropError, PlanError
from regnet_space.core.generator import make_plan
from regnet_space.core.hf import HfRegNetConfig, hf_config_from_spec, spec_from_hf_config
from regnet_space.core.pycls import pycls_yaml_from_spec, spec_from_pycls_yaml
from regnet_space.interop.timm import TimmRegNetCfg, spec_from_timm_cfg, timm_cfg_from_spec
from regnet_space.nn.hf import transformers_config
from regnet_space.nn.model import build_model

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# ---------------------------------------------------------------------------------------------
# Hugging Face


def hf_groups(width: int, groups_width: int) -> int:
    """transformers' RegNet rule for the 3x3 conv's groups."""
    return max(1, width // groups_width)


@st.composite
def hf_configs(draw: st.DrawFn) -> HfRegNetConfig:
    n = draw(st.integers(1, 5))
    gw = draw(st.integers(1, 128))
    # any width, or (as published configs have them) a multiple of groups_width
    multiples = st.integers(1, 512 // gw).map(lambda k: max(8, k * gw))
    return HfRegNetConfig(
        hidden_sizes=tuple(draw(st.one_of(st.integers(8, 512), multiples)) for _ in range(n)),
        depths=tuple(draw(st.integers(1, 4)) for _ in range(n)),
        groups_width=gw,
        layer_type=draw(st.sampled_from(["x", "y"])),
        num_channels=draw(st.integers(1, 4)),
        embedding_size=draw(st.integers(8, 64)),
        hidden_act=draw(st.sampled_from(["relu", "silu", "gelu"])),
        downsample_in_first_stage=draw(st.booleans()),
        num_labels=draw(st.integers(0, 12)),
    )


def hf_builds(cfg: HfRegNetConfig) -> bool:
    """Whether transformers builds the config: every stage splits into its groups."""
    return all(w % hf_groups(w, cfg.groups_width) == 0 for w in cfg.hidden_sizes)


def assert_hf_round_trip(cfg: HfRegNetConfig) -> None:
    spec = spec_from_hf_config(dataclasses.asdict(cfg))
    back = hf_config_from_spec(spec)
    assert dataclasses.replace(back, groups_width=cfg.groups_width) == cfg
    assert [hf_groups(w, back.groups_width) for w in cfg.hidden_sizes] == [
        hf_groups(w, cfg.groups_width) for w in cfg.hidden_sizes
    ]
    assert spec_from_hf_config(dataclasses.asdict(back)) == spec


def test_the_issues_config_round_trips_exactly() -> None:
    """Group widths 10, 10, 10, 8: only groups_width 8 gives them (not the largest, 10)."""
    cfg = HfRegNetConfig(
        hidden_sizes=(10, 20, 30, 40),
        depths=(1, 1, 2, 1),
        groups_width=8,
        layer_type="y",
        embedding_size=10,
    )
    assert make_plan(spec_from_hf_config(dataclasses.asdict(cfg))).group_widths == (10, 10, 10, 8)
    assert hf_config_from_spec(spec_from_hf_config(dataclasses.asdict(cfg))) == cfg


@SETTINGS
@given(hf_configs())
def test_every_valid_hf_config_round_trips(cfg: HfRegNetConfig) -> None:
    if not hf_builds(cfg):
        with pytest.raises(InteropError, match="do not split"):
            spec_from_hf_config(dataclasses.asdict(cfg))
        return
    assert_hf_round_trip(cfg)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(hf_configs())
def test_hf_configs_build_the_same_modules_as_transformers(cfg: HfRegNetConfig) -> None:
    transformers = pytest.importorskip("transformers")
    assume(hf_builds(cfg))
    back = hf_config_from_spec(spec_from_hf_config(dataclasses.asdict(cfg)))
    with torch.device("meta"):
        theirs = transformers.RegNetForImageClassification(transformers_config(cfg))
        ours = build_model(spec_from_hf_config(dataclasses.asdict(back)))
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in theirs.state_dict().items()}
    groups = {n: m.groups for n, m in ours.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert groups == {
        n: m.groups for n, m in theirs.named_modules() if isinstance(m, torch.nn.Conv2d)
    }


# ---------------------------------------------------------------------------------------------
# timm


@st.composite
def timm_cfgs(draw: st.DrawFn) -> TimmRegNetCfg:
    se = draw(st.sampled_from([0.0, 0.25]))
    w0 = 8 * draw(st.integers(1, 40))
    wa = round(w0 * draw(st.floats(0.2, 1.8)), 2)
    wm = round(draw(st.floats(1.8, 3.0)), 2)
    # a depth whose last exponent is about `span`: 3 (4 stages) most of the time
    span = draw(st.floats(2.4, 3.6))
    depth = min(60, max(1, round((wm**span - 1) * w0 / wa) + 1))
    return TimmRegNetCfg(
        depth=depth,
        w0=w0,
        wa=wa,
        wm=wm,
        group_size=draw(st.sampled_from([1, 2, 4, 8, 16, 24, 32, 48, 64, 128])),
        bottle_ratio=draw(st.sampled_from([1.0, 0.5, 0.25])),
        se_ratio=se,
        group_min_ratio=draw(st.sampled_from([0.0, 0.9])),
        stem_width=draw(st.sampled_from([16, 24, 32, 64])),
        act_layer=draw(st.sampled_from(["relu", "silu"])),
        in_chans=draw(st.integers(1, 4)),
        num_classes=draw(st.integers(0, 1000)),
    )


@SETTINGS
@given(timm_cfgs())
def test_every_timm_cfg_round_trips(cfg: TimmRegNetCfg) -> None:
    spec = spec_from_timm_cfg(cfg)
    assert spec.rounding == ("torchvision" if cfg.group_min_ratio else "timm")
    try:
        p = make_plan(spec)
    except PlanError:
        return  # a design no library builds (a zero-width stage)
    if p.num_stages != 4:
        with pytest.raises(InteropError, match="timm builds exactly 4"):
            timm_cfg_from_spec(spec)
        return
    assert timm_cfg_from_spec(spec) == cfg
    assert spec_from_timm_cfg(cfg.as_kwargs(), num_classes=cfg.num_classes,
                              num_channels=cfg.in_chans) == spec  # fmt: skip


# ---------------------------------------------------------------------------------------------
# pycls


def _pycls_text(model: dict[str, Any], section: str, body: dict[str, Any]) -> str:
    return yaml.safe_dump({"MODEL": model, section: body}, sort_keys=False)


@st.composite
def pycls_regnet(draw: st.DrawFn) -> str:
    se_on = draw(st.booleans())
    body: dict[str, Any] = {
        "DEPTH": draw(st.integers(1, 30)),
        "W0": 8 * draw(st.integers(1, 40)),
        "WA": round(draw(st.floats(0.0, 120.0)), 2),
        "WM": round(draw(st.floats(1.5, 3.0)), 2),
        "GROUP_W": draw(st.sampled_from([1, 4, 8, 16, 24, 48, 64])),
        "BOT_MUL": draw(st.sampled_from([1.0, 0.5, 0.25, 2.0])),
        "STEM_W": draw(st.sampled_from([16, 32, 48])),
        "SE_ON": se_on,
    }
    if se_on:
        body["SE_R"] = draw(st.sampled_from([0.25, 0.125, 0.5]))
    model = {"TYPE": "regnet", "NUM_CLASSES": draw(st.integers(1, 1000))}
    model["ACTIVATION_FUN"] = draw(st.sampled_from(["relu", "silu", "gelu"]))
    return _pycls_text(model, "REGNET", body)


@st.composite
def pycls_anynet(draw: st.DrawFn) -> str:
    n = draw(st.integers(1, 5))
    gws = [draw(st.sampled_from([1, 2, 8, 16])) for _ in range(n)]
    bms = [draw(st.sampled_from([1.0, 0.5, 0.25])) for _ in range(n)]
    # widths whose bottleneck width is a multiple of the group width
    widths = [int(g / b) * draw(st.integers(1, 16)) for g, b in zip(gws, bms, strict=True)]
    body = {
        "STEM_TYPE": "simple_stem_in",
        "STEM_W": draw(st.sampled_from([16, 32])),
        "BLOCK_TYPE": "res_bottleneck_block",
        "DEPTHS": [draw(st.integers(1, 4)) for _ in range(n)],
        "WIDTHS": widths,
        "STRIDES": [draw(st.sampled_from([1, 2])) for _ in range(n)],
        "BOT_MULS": bms,
        "GROUP_WS": gws,
        "SE_ON": draw(st.booleans()),
    }
    return _pycls_text({"TYPE": "anynet", "NUM_CLASSES": draw(st.integers(1, 100))}, "ANYNET", body)


@SETTINGS
@given(st.one_of(pycls_regnet(), pycls_anynet()))
def test_every_pycls_config_round_trips(text: str) -> None:
    spec = spec_from_pycls_yaml(text, name="random")
    out = pycls_yaml_from_spec(spec)
    assert spec_from_pycls_yaml(out, name="random") == spec
    written, given_ = yaml.safe_load(out), yaml.safe_load(text)
    for section, values in given_.items():
        for key, value in values.items():
            default = {"ACTIVATION_FUN": "relu", "BOT_MUL": 1.0, "STEM_W": 32, "SE_R": 0.25}
            assert written[section].get(key, default.get(key)) == value, (section, key)
