"""Every shipped spec (specs/*.yaml) against the published numbers of the RegNet model zoo.

The expected values are transcribed by hand from the project's zoo table (pycls model zoo,
the paper, torchvision, timm and Hugging Face) as literal data: the tests never read the
reference table itself and never compute an expected value with the library.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import NamedTuple

import pytest

from regnet_space import count, load_spec, plan

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"


class Zoo(NamedTuple):
    """One row of the pycls zoo table (flops, params and acts at 224, paper convention)."""

    model: str
    d: int
    w0: int
    wa: float
    wm: float
    g: int
    se: float
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    group_widths: tuple[int, ...]
    params: int  # exact
    gf: str  # as published (1 decimal)
    m_params: str  # as published (1 decimal)
    m_acts: str  # as published (1 decimal)


# fmt: off
ZOO: dict[str, Zoo] = {
    "x002": Zoo("RegNetX-200MF", 13, 24, 36.44, 2.49, 8, 0, (24, 56, 152, 368), (1, 1, 4, 7), (8, 8, 8, 8), 2684792, "0.2", "2.7", "2.2"),  # noqa: E501
    "x004": Zoo("RegNetX-400MF", 22, 24, 24.48, 2.54, 16, 0, (32, 64, 160, 384), (1, 2, 7, 12), (16, 16, 16, 16), 5157512, "0.4", "5.2", "3.1"),  # noqa: E501
    "x006": Zoo("RegNetX-600MF", 16, 48, 36.97, 2.24, 24, 0, (48, 96, 240, 528), (1, 3, 5, 7), (24, 24, 24, 24), 6196040, "0.6", "6.2", "4.0"),  # noqa: E501
    "x008": Zoo("RegNetX-800MF", 16, 56, 35.73, 2.28, 16, 0, (64, 128, 288, 672), (1, 3, 7, 5), (16, 16, 16, 16), 7259656, "0.8", "7.3", "5.1"),  # noqa: E501
    "x016": Zoo("RegNetX-1.6GF", 18, 80, 34.01, 2.25, 24, 0, (72, 168, 408, 912), (2, 4, 10, 2), (24, 24, 24, 24), 9190136, "1.6", "9.2", "7.9"),  # noqa: E501
    "x032": Zoo("RegNetX-3.2GF", 25, 88, 26.31, 2.25, 48, 0, (96, 192, 432, 1008), (2, 6, 15, 2), (48, 48, 48, 48), 15296552, "3.2", "15.3", "11.4"),  # noqa: E501
    "x040": Zoo("RegNetX-4.0GF", 23, 96, 38.65, 2.43, 40, 0, (80, 240, 560, 1360), (2, 5, 14, 2), (40, 40, 40, 40), 22118248, "4.0", "22.1", "12.2"),  # noqa: E501
    "x064": Zoo("RegNetX-6.4GF", 17, 184, 60.83, 2.07, 56, 0, (168, 392, 784, 1624), (2, 4, 10, 1), (56, 56, 56, 56), 26209256, "6.5", "26.2", "16.4"),  # noqa: E501
    "x080": Zoo("RegNetX-8.0GF", 23, 80, 49.56, 2.88, 120, 0, (80, 240, 720, 1920), (2, 5, 15, 1), (80, 120, 120, 120), 39572648, "8.0", "39.6", "14.1"),  # noqa: E501
    "x120": Zoo("RegNetX-12GF", 19, 168, 73.36, 2.37, 112, 0, (224, 448, 896, 2240), (2, 5, 11, 1), (112, 112, 112, 112), 46106056, "12.1", "46.1", "21.4"),  # noqa: E501
    "x160": Zoo("RegNetX-16GF", 22, 216, 55.59, 2.1, 128, 0, (256, 512, 896, 2048), (2, 6, 13, 1), (128, 128, 128, 128), 54278536, "15.9", "54.3", "25.5"),  # noqa: E501
    "x320": Zoo("RegNetX-32GF", 23, 320, 69.86, 2.0, 168, 0, (336, 672, 1344, 2520), (2, 7, 13, 1), (168, 168, 168, 168), 107811560, "31.7", "107.8", "36.3"),  # noqa: E501
    "y002": Zoo("RegNetY-200MF", 13, 24, 36.44, 2.49, 8, 0.25, (24, 56, 152, 368), (1, 1, 4, 7), (8, 8, 8, 8), 3162996, "0.2", "3.2", "2.2"),  # noqa: E501
    "y004": Zoo("RegNetY-400MF", 16, 48, 27.89, 2.09, 8, 0.25, (48, 104, 208, 440), (1, 3, 6, 6), (8, 8, 8, 8), 4344144, "0.4", "4.3", "3.9"),  # noqa: E501
    "y006": Zoo("RegNetY-600MF", 15, 48, 32.54, 2.32, 16, 0.25, (48, 112, 256, 608), (1, 3, 7, 4), (16, 16, 16, 16), 6055160, "0.6", "6.1", "4.3"),  # noqa: E501
    "y008": Zoo("RegNetY-800MF", 14, 56, 38.84, 2.4, 16, 0.25, (64, 128, 320, 768), (1, 3, 8, 2), (16, 16, 16, 16), 6263168, "0.8", "6.3", "5.2"),  # noqa: E501
    "y016": Zoo("RegNetY-1.6GF", 27, 48, 20.71, 2.65, 24, 0.25, (48, 120, 336, 888), (2, 6, 17, 2), (24, 24, 24, 24), 11202430, "1.6", "11.2", "8.0"),  # noqa: E501
    "y032": Zoo("RegNetY-3.2GF", 21, 80, 42.63, 2.66, 24, 0.25, (72, 216, 576, 1512), (2, 5, 13, 1), (24, 24, 24, 24), 19436338, "3.2", "19.4", "11.3"),  # noqa: E501
    "y040": Zoo("RegNetY-4.0GF", 22, 96, 31.41, 2.24, 64, 0.25, (128, 192, 512, 1088), (2, 6, 12, 2), (64, 64, 64, 64), 20646656, "4.0", "20.6", "12.3"),  # noqa: E501
    "y064": Zoo("RegNetY-6.4GF", 25, 112, 33.22, 2.27, 72, 0.25, (144, 288, 576, 1296), (2, 7, 14, 2), (72, 72, 72, 72), 30583252, "6.4", "30.6", "16.4"),  # noqa: E501
    "y080": Zoo("RegNetY-8.0GF", 17, 192, 76.82, 2.19, 56, 0.25, (168, 448, 896, 2016), (2, 4, 10, 1), (56, 56, 56, 56), 39180068, "8.0", "39.2", "18.0"),  # noqa: E501
    "y120": Zoo("RegNetY-12GF", 19, 168, 73.36, 2.37, 112, 0.25, (224, 448, 896, 2240), (2, 5, 11, 1), (112, 112, 112, 112), 51822544, "12.1", "51.8", "21.4"),  # noqa: E501
    "y160": Zoo("RegNetY-16GF", 18, 200, 106.23, 2.48, 112, 0.25, (224, 448, 1232, 3024), (2, 4, 11, 1), (112, 112, 112, 112), 83590140, "15.9", "83.6", "23.0"),  # noqa: E501
    "y320": Zoo("RegNetY-32GF", 20, 232, 115.89, 2.53, 232, 0.25, (232, 696, 1392, 3712), (2, 5, 12, 1), (232, 232, 232, 232), 145046770, "32.3", "145.0", "30.3"),  # noqa: E501
}
# fmt: on


class TorchvisionZoo(NamedTuple):
    """torchvision's rounding: same design parameters as `base`, torchvision's GF at 224."""

    base: str  # file of the pycls spec with the same design parameters
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    params: int  # exact
    gf_torchvision: str  # as published (3 decimals)


TV_ZOO: dict[str, TorchvisionZoo] = {
    "x004_tv": TorchvisionZoo("x004", (32, 64, 160, 400), (1, 2, 7, 12), 5495976, "0.414"),
    "y008_tv": TorchvisionZoo("y008", (64, 144, 320, 784), (1, 3, 8, 2), 6432512, "0.834"),
    "y080_tv": TorchvisionZoo("y080", (224, 448, 896, 2016), (2, 4, 10, 1), 39381472, "8.473"),
}


class LargeZoo(NamedTuple):
    """Large RegNetY (SEER / SWAG): se 0.25, bm 1, stem 32."""

    model: str
    d: int
    w0: int
    wa: float
    wm: float
    g: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    params: int | None  # exact; None when not published


LARGE_ZOO: dict[str, LargeZoo] = {
    "y640": LargeZoo(
        "RegNetY-64GF", 20, 352, 147.48, 2.4, 328, (328, 984, 1968, 4920), (2, 5, 12, 1), 281378786
    ),
    "y1280": LargeZoo(
        "RegNetY-128GF",
        27,
        456,
        160.83,
        2.52,
        264,
        (528, 1056, 2904, 7392),
        (2, 7, 17, 1),
        644812894,
    ),
    "y10b": LargeZoo(
        "RegNetY-10B (SEER)",
        27,
        1744,
        620.83,
        2.52,
        1010,
        (2020, 4040, 11110, 28280),
        (2, 7, 17, 1),
        None,
    ),
}


def _spec(stem: str):
    return load_spec(SPECS_DIR / f"{stem}.yaml")


def _gf(flops: int, digits: int) -> str:
    return f"{flops / 1e9:.{digits}f}"


def _m(n: int) -> str:
    return f"{n / 1e6:.1f}"


# timm's RegNet family beyond X and Y (timm 1.0.31): parameters of timm's model (1000
# classes) and timm's train input side; regnety_2560's count, not published with the others,
# is pinned to timm's own model in test_peers.py.
FAMILY: dict[str, tuple[int | None, int]] = {
    "regnetz_b16": (9715480, 224),
    "regnetz_c16": (13459880, 256),
    "regnetz_d8": (23373792, 256),
    "regnetz_d32": (27576288, 256),
    "regnetz_e8": (57698176, 256),
    "regnetz_005": (7122742, 224),
    "regnetz_040": (27116800, 256),
    "regnetz_040_h": (28938880, 256),
    "regnetv_040": (20640640, 224),
    "regnetv_064": (30576052, 224),
    "regnety_040_sgn": (20646656, 224),
    "regnety_2560": (None, 384),
}


@pytest.mark.parametrize("stem", sorted(FAMILY))
def test_family_presets_have_timms_parameters_and_input_size(stem):
    params, size = FAMILY[stem]
    s = _spec(stem)
    assert s.input_size == size and s.name == stem
    if params is not None:
        assert count(s).params == params


# ---------------------------------------------------------------------------------------------
# Coverage: every shipped spec has golden numbers, every golden row has a spec


def test_every_shipped_spec_has_golden_numbers():
    shipped = {p.stem for p in SPECS_DIR.glob("*.yaml")}
    golden = set(ZOO) | set(TV_ZOO) | set(LARGE_ZOO) | set(FAMILY)
    assert shipped, f"no specs found in {SPECS_DIR}"
    assert not shipped - golden, f"specs without golden numbers: {sorted(shipped - golden)}"
    assert not golden - shipped, f"golden rows without a shipped spec: {sorted(golden - shipped)}"


def test_golden_tables_are_disjoint():
    assert not set(ZOO) & set(TV_ZOO)
    assert not set(ZOO) & set(LARGE_ZOO)
    assert not set(TV_ZOO) & set(LARGE_ZOO)


# ---------------------------------------------------------------------------------------------
# The pycls zoo (paper convention at 224)


@pytest.mark.parametrize("stem", sorted(ZOO))
def test_zoo_spec_fields(stem):
    z = ZOO[stem]
    s = _spec(stem)
    assert s.name == z.model
    assert s.block == ("y" if z.se else "x")
    assert (s.depth, s.w0, s.wa, s.wm, s.group_width, s.se_ratio) == (
        z.d,
        z.w0,
        z.wa,
        z.wm,
        z.g,
        z.se,
    )
    assert s.bottleneck_multiplier == 1.0
    assert s.stem_width == 32
    assert s.q == 8
    assert s.rounding == "pycls"
    assert s.num_classes == 1000
    assert s.num_channels == 3


@pytest.mark.parametrize("stem", sorted(ZOO))
def test_zoo_structure(stem):
    z = ZOO[stem]
    p = plan(_spec(stem))
    assert p.widths == z.widths
    assert p.depths == z.depths
    assert p.group_widths == z.group_widths
    assert p.depth == z.d


@pytest.mark.parametrize("stem", sorted(ZOO))
def test_zoo_counts(stem):
    z = ZOO[stem]
    c = count(_spec(stem), 224)
    assert c.params == z.params
    assert _gf(c.flops, 1) == z.gf
    assert _m(c.params) == z.m_params
    assert _m(c.acts) == z.m_acts


def test_x064_publishes_6_5_gf():
    # 6.46 GF rounds to 6.5: the model's name (6.4GF) is not its published flops.
    assert _gf(count(_spec("x064")).flops, 1) == "6.5"


def test_seed_example_feature_maps():
    # facebook/regnet-y-040: 32@112, 128@56, 192@28, 512@14, 1088@7; last state [1, 1088, 7, 7]
    p = plan(_spec("y040"), 224)
    assert p.stem_width == 32
    assert p.stem_size == 112
    assert [(s.width, s.out_size) for s in p.stages] == [(128, 56), (192, 28), (512, 14), (1088, 7)]
    assert p.output_shape == (1, 1088, 7, 7)


# ---------------------------------------------------------------------------------------------
# torchvision's rounding


@pytest.mark.parametrize("stem", sorted(TV_ZOO))
def test_torchvision_spec_fields(stem):
    t = TV_ZOO[stem]
    s, base = _spec(stem), _spec(t.base)
    assert s.rounding == "torchvision"
    fields = ("block", "depth", "w0", "wa", "wm", "group_width", "se_ratio", "q")
    assert [getattr(s, f) for f in fields] == [getattr(base, f) for f in fields]
    assert (s.depth, s.w0, s.wa, s.wm, s.group_width) == (
        ZOO[t.base].d,
        ZOO[t.base].w0,
        ZOO[t.base].wa,
        ZOO[t.base].wm,
        ZOO[t.base].g,
    )
    # The zoo names these "<model> (tv)": the name must be the model's, qualified, and differ
    # from the pycls spec's name.
    model = ZOO[t.base].model
    assert s.name.startswith(model + " (")
    assert s.name.endswith(")")
    qualifier = s.name[len(model) + 2 : -1]
    assert qualifier in ("tv", "torchvision", "torchvision rounding")
    assert s.name != base.name


@pytest.mark.parametrize("stem", sorted(TV_ZOO))
def test_torchvision_structure_and_counts(stem):
    t = TV_ZOO[stem]
    s = _spec(stem)
    p = plan(s, 224)
    assert p.widths == t.widths
    assert p.depths == t.depths
    c = count(p, convention="torchvision")
    assert c.params == t.params
    assert _gf(c.flops, 3) == t.gf_torchvision


@pytest.mark.parametrize("stem", sorted(TV_ZOO))
def test_torchvision_rounding_changes_the_network(stem):
    # X-400MF, Y-800MF and Y-8.0GF are the models where the two rules disagree.
    t = TV_ZOO[stem]
    assert t.widths != ZOO[t.base].widths
    assert plan(_spec(stem)).widths != plan(_spec(t.base)).widths


# ---------------------------------------------------------------------------------------------
# Large RegNetY


@pytest.mark.parametrize("stem", sorted(LARGE_ZOO))
def test_large_spec_fields_and_structure(stem):
    z = LARGE_ZOO[stem]
    s = _spec(stem)
    assert s.name == z.model
    assert s.block == "y"
    assert s.se_ratio == 0.25
    assert s.bottleneck_multiplier == 1.0
    assert s.stem_width == 32
    assert (s.depth, s.w0, s.wa, s.wm, s.group_width) == (z.d, z.w0, z.wa, z.wm, z.g)
    p = plan(s)
    assert p.widths == z.widths
    assert p.depths == z.depths


@pytest.mark.parametrize("stem", sorted(k for k, v in LARGE_ZOO.items() if v.params is not None))
def test_large_params(stem):
    s = _spec(stem)
    for convention in ("paper", "fvcore", "torchvision"):
        assert count(s, convention=convention).params == LARGE_ZOO[stem].params


def test_y1280_torchvision_flops():
    s = _spec("y1280")
    assert _gf(count(s, 224, convention="torchvision").flops, 3) == "127.518"
    assert _gf(count(s, 384, convention="torchvision").flops, 2) == "374.57"


def test_y10b_counts_without_allocating():
    s = _spec("y10b")
    tracemalloc.start()
    try:
        c = count(s, 224)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Billions of parameters, but counting is arithmetic: no weights in memory, no build.
    assert c.params > 5 * 10**9
    assert c.flops > 10**12
    assert peak < 16 * 2**20, f"counting RegNetY-10B allocated {peak} bytes"
