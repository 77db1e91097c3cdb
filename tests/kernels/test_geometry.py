"""PatchGeometry and lkr.patches against slicing by hand (tests/reference.py)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kernel_strategies import geometries, make_inputs
from reference import ref_patches

import lkr
from lkr.geometry import PatchGeometry


def test_design_examples():
    g = PatchGeometry(input_shape=(256,), filter_size=4, stride=4)
    assert (g.num_patches, g.patch_size, g.input_size) == (64, 4, 256)
    g2 = PatchGeometry((32, 32), (8, 8), (8, 8))
    assert (g2.num_patches, g2.patch_size, g2.grid_shape) == (16, 64, (4, 4))
    g3 = PatchGeometry((64,), 4, 1, boundary="valid")
    assert g3.num_patches == 61
    assert PatchGeometry((64,), 4, 1).num_patches == 64  # periodic: N0 / S
    assert PatchGeometry((10,), 4, 3, channels=2, boundary="valid").patch_size == 8


def test_stride_defaults_to_filter_size():
    g = PatchGeometry((12,), 3)
    assert g.stride == (3,) and g.num_patches == 4


def test_periodic_wraps_explicitly():
    X = np.arange(12.0).reshape(2, 6)
    P = lkr.patches(X, PatchGeometry((6,), 3, 2))
    np.testing.assert_array_equal(P[0], [[0, 1, 2], [2, 3, 4], [4, 5, 0]])
    np.testing.assert_array_equal(P[1], [[6, 7, 8], [8, 9, 10], [10, 11, 6]])
    V = lkr.patches(X, PatchGeometry((6,), 3, 2, boundary="valid"))
    np.testing.assert_array_equal(V[0], [[0, 1, 2], [2, 3, 4]])


def test_2d_order_row_major_grid_and_row_col_channel_entries():
    # value = 100 * row + 10 * col + channel
    H, W, C = 4, 6, 2
    r, c, ch = np.meshgrid(np.arange(H), np.arange(W), np.arange(C), indexing="ij")
    X = (100 * r + 10 * c + ch)[None].astype(float)  # (1, H, W, C)
    g = PatchGeometry((H, W), (2, 3), (2, 3), channels=C)
    P = lkr.patches(X, g)
    assert P.shape == (1, 4, 12)
    # patch i = a * n_w + b with n_w = 2: patch 1 is grid (0, 1), starting at column 3
    expected = [100 * rr + 10 * cc + k for rr in (0, 1) for cc in (3, 4, 5) for k in (0, 1)]
    np.testing.assert_array_equal(P[0, 1], expected)
    # patch 2 is grid (1, 0), starting at row 2
    assert P[0, 2, 0] == 200


def test_layouts_agree():
    rng = np.random.default_rng(0)
    Xl = rng.standard_normal((3, 5, 4, 2))  # (P, H, W, C)
    Xf = np.ascontiguousarray(np.moveaxis(Xl, -1, 1))  # (P, C, H, W)
    gl = PatchGeometry((5, 4), (2, 2), (1, 2), channels=2, layout="channels_last")
    gf = PatchGeometry((5, 4), (2, 2), (1, 2), channels=2, layout="channels_first")
    np.testing.assert_array_equal(lkr.patches(Xl, gl), lkr.patches(Xf, gf))
    # flat inputs follow the layout too: channels-first flat is (channel, site) ordered
    np.testing.assert_array_equal(lkr.patches(Xf.reshape(3, -1), gf), lkr.patches(Xl, gl))
    np.testing.assert_array_equal(lkr.patches(Xl.reshape(3, -1), gl), lkr.patches(Xl, gl))


@given(geometries(), st.integers(1, 4), st.sampled_from(["natural", "flat", "spatial", "strided"]),
       st.sampled_from(["float64", "float32", "int64"]), st.integers(0, 2**31 - 1))
def test_patches_match_slicing(geom, P, form, dtype, seed):
    rng = np.random.default_rng(seed)
    X, _ = make_inputs(rng, geom, P, form, dtype)
    got = lkr.patches(X, geom)
    want = ref_patches(X, geom.input_shape, geom.filter_size, geom.stride, geom.channels,
                       geom.boundary, geom.layout)
    assert got.shape == (P, geom.num_patches, geom.patch_size)
    assert got.dtype == (np.float32 if dtype == "float32" else np.float64)
    np.testing.assert_array_equal(got, want)


@given(geometries())
def test_sizes_formulas(g):
    for n, m, s, k in zip(g.input_shape, g.filter_size, g.stride, g.grid_shape):
        assert k == (n // s if g.boundary == "periodic" else (n - m) // s + 1)
    assert g.num_patches == int(np.prod(g.grid_shape))
    assert g.patch_size == int(np.prod(g.filter_size)) * g.channels
    assert PatchGeometry(**g.to_dict()) == g
    assert hash(PatchGeometry(**g.to_dict())) == hash(g)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(4,), filter_size=5), "filter_size .* larger than input_shape"),
    (dict(input_shape=(8, 8), filter_size=(3, 9)), "larger than input_shape"),
    (dict(input_shape=(8,), filter_size=2, stride=0), "stride must be positive"),
    (dict(input_shape=(8,), filter_size=2, stride=-1), "stride must be positive"),
    (dict(input_shape=(8,), filter_size=0), "filter_size must be positive"),
    (dict(input_shape=(0,), filter_size=1), "input_shape must be positive"),
    (dict(input_shape=(8,), filter_size=2, channels=0), "channels must be positive"),
    (dict(input_shape=(8,), filter_size=2, boundary="zeros"), "boundary must be one of"),
    (dict(input_shape=(8,), filter_size=2, layout="NCHW"), "layout must be one of"),
    (dict(input_shape=(2, 2, 2), filter_size=1), r"input_shape must be \(N0,\) or \(H, W\)"),
    (dict(input_shape=(8, 8), filter_size=(2, 2, 2)), "filter_size must have 2 entries"),
    (dict(input_shape=(5,), filter_size=2, stride=6), "leaves no patch"),
])
def test_bad_geometry_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchGeometry(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(input_shape=(8,), filter_size=2.0),
    dict(input_shape=(8,), filter_size=2, stride=1.5),
    dict(input_shape=(8,), filter_size=2, channels=1.0),
    dict(input_shape=(8,), filter_size=True),
])
def test_bad_geometry_type_errors(kwargs):
    with pytest.raises(TypeError):
        PatchGeometry(**kwargs)


def test_bad_inputs_name_shape():
    g = PatchGeometry((8,), 2, channels=2)
    with pytest.raises(ValueError, match=r"X has shape \(3, 9\).*expected"):
        lkr.patches(np.zeros((3, 9)), g)
    with pytest.raises(ValueError, match=r"X has shape \(8,\)"):
        lkr.patches(np.zeros(8), g)
    with pytest.raises(ValueError, match=r"\(P, 8, 2\)"):
        lkr.patches(np.zeros((3, 2, 8)), g)  # channels-first data given to a channels-last geometry
    with pytest.raises(TypeError, match="real-valued"):
        lkr.patches(np.zeros((3, 16), complex), g)
    with pytest.raises(TypeError, match="geometry must be a PatchGeometry"):
        lkr.patches(np.zeros((3, 16)), {"input_shape": (8,)})
