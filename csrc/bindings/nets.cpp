// Bindings of the network patch kernels (forward, vjp, jvp and NTK features of CNN/LCN).
// Chained operands arrive with an explicit leading chain axis (length 1 = broadcast).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "../lkr/blas_calls.hpp"
#include "../lkr/nets.hpp"
#include "../lkr/noise.hpp"
#include "../lkr/train_step.hpp"
#include "array_utils.hpp"

namespace lkr::bind {
namespace py = pybind11;

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style>;

// Shape of the patch net from Z (P, Np, M) and the filter array (chains, Nc, [Np,] M).
PatchNetShape net_shape(const py::array& Z, const py::array& W, bool local) {
  if (Z.ndim() != 3) throw py::value_error("Z must be (P, Np, M), got " + shape_str(Z));
  PatchNetShape s;
  s.P = Z.shape(0), s.Np = Z.shape(1), s.M = Z.shape(2), s.local = local;
  const py::ssize_t want = local ? 4 : 3;
  if (W.ndim() != want || W.shape(want - 1) != s.M || (local && W.shape(2) != s.Np))
    throw py::value_error(std::string("W must be (chains, Nc, ") + (local ? "Np, " : "") +
                          "M) with (Np, M) = (" + std::to_string(s.Np) + ", " +
                          std::to_string(s.M) + "), got " + shape_str(W));
  s.Nc = W.shape(1);
  return s;
}

// The chain count of an operand with leading chain axis and per-chain shape `tail`.
int64_t chains_of(const py::array& a, const std::vector<int64_t>& tail, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(tail.size() + 1);
  for (size_t d = 0; ok && d < tail.size(); ++d) ok = a.shape(d + 1) == tail[d];
  if (!ok) {
    std::string t;
    for (auto x : tail) t += ", " + std::to_string(x);
    throw py::value_error(std::string(name) + " must have shape (chains" + t + "), got " +
                          shape_str(a));
  }
  return a.shape(0);
}

int64_t common_chains(const std::vector<std::pair<int64_t, const char*>>& cs) {
  int64_t C = 1;
  for (auto& c : cs) C = std::max(C, c.first);
  for (auto& c : cs)
    if (c.first != 1 && c.first != C)
      throw py::value_error(std::string(c.second) + " has " + std::to_string(c.first) +
                            " chains, expected 1 or " + std::to_string(C));
  return C;
}

template <class T>
Chained<T> chained(const CArray<T>& a, int64_t C) {
  const int64_t n = a.shape(0);
  return {a.data(),
          (n == 1 && C > 1) ? 0 : static_cast<int64_t>(a.size() / std::max<int64_t>(n, 1))};
}

template <class T>
std::vector<int64_t> w_tail(const PatchNetShape& s) {
  return s.local ? std::vector<int64_t>{s.Nc, s.Np, s.M} : std::vector<int64_t>{s.Nc, s.M};
}

template <class T>
py::array forward_t(const py::array& z, const py::array& w, const py::array& v, bool local,
                    Activation act, int nthreads) {
  check_dtype<T>(w, "W"), check_dtype<T>(v, "v");
  const auto Z = contiguous<T>(z, "Z");
  const CArray<T> W = contiguous<T>(w, "W"), V = contiguous<T>(v, "v");
  const auto s = net_shape(Z, W, local);
  const int64_t C = common_chains({{W.shape(0), "W"}, {chains_of(V, {s.Nc, s.Np}, "v"), "v"}});
  py::array_t<T> out(std::vector<py::ssize_t>{C, s.P});
  T* o = out.mutable_data();
  const auto cw = chained(W, C), cv = chained(V, C);
  {
    py::gil_scoped_release release;
    patch_forward<T>(Z.data(), s, cw, cv, C, act, nthreads, o);
  }
  return out;
}

template <class T>
py::tuple vjp_t(const py::array& z, const py::array& w, const py::array& v, const py::array& r,
                bool local, Activation act, int nthreads) {
  check_dtype<T>(w, "W"), check_dtype<T>(v, "v"), check_dtype<T>(r, "r");
  const auto Z = contiguous<T>(z, "Z");
  const CArray<T> W = contiguous<T>(w, "W"), V = contiguous<T>(v, "v"), R = contiguous<T>(r, "r");
  const auto s = net_shape(Z, W, local);
  const int64_t C = common_chains(
      {{W.shape(0), "W"}, {chains_of(V, {s.Nc, s.Np}, "v"), "v"}, {chains_of(R, {s.P}, "r"), "r"}});
  std::vector<py::ssize_t> wshape{C};
  for (auto d : w_tail<T>(s)) wshape.push_back(d);
  py::array_t<T> dW(wshape), dv(std::vector<py::ssize_t>{C, s.Nc, s.Np});
  T *pw = dW.mutable_data(), *pv = dv.mutable_data();
  const auto cw = chained(W, C), cv = chained(V, C), cr = chained(R, C);
  {
    py::gil_scoped_release release;
    patch_vjp<T>(Z.data(), s, cw, cv, cr, C, act, nthreads, pw, pv);
  }
  return py::make_tuple(dW, dv);
}

template <class T>
py::tuple value_and_grad_t(const py::array& z, const py::array& w, const py::array& v,
                           const py::array& y, bool local, Activation act, int nthreads) {
  check_dtype<T>(w, "W"), check_dtype<T>(v, "v"), check_dtype<T>(y, "y");
  const auto Z = contiguous<T>(z, "Z");
  const CArray<T> W = contiguous<T>(w, "W"), V = contiguous<T>(v, "v"), Y = contiguous<T>(y, "y");
  const auto s = net_shape(Z, W, local);
  const int64_t C = common_chains(
      {{W.shape(0), "W"}, {chains_of(V, {s.Nc, s.Np}, "v"), "v"}, {chains_of(Y, {s.P}, "y"), "y"}});
  std::vector<py::ssize_t> wshape{C};
  for (auto d : w_tail<T>(s)) wshape.push_back(d);
  py::array_t<T> f(std::vector<py::ssize_t>{C, s.P}), dW(wshape),
      dv(std::vector<py::ssize_t>{C, s.Nc, s.Np});
  T *pf = f.mutable_data(), *pw = dW.mutable_data(), *pv = dv.mutable_data();
  const auto cw = chained(W, C), cv = chained(V, C), cy = chained(Y, C);
  {
    py::gil_scoped_release release;
    patch_value_and_grad<T>(Z.data(), s, cw, cv, cy, C, act, nthreads, pf, pw, pv);
  }
  return py::make_tuple(f, dW, dv);
}

template <class T>
py::array jvp_t(const py::array& z, const py::array& w, const py::array& v, const py::array& tw,
                const py::array& tv, bool local, Activation act, int nthreads) {
  check_dtype<T>(w, "W"), check_dtype<T>(v, "v"), check_dtype<T>(tw, "tW"),
      check_dtype<T>(tv, "tv");
  const auto Z = contiguous<T>(z, "Z");
  const CArray<T> W = contiguous<T>(w, "W"), V = contiguous<T>(v, "v");
  const CArray<T> TW = contiguous<T>(tw, "tW"), TV = contiguous<T>(tv, "tv");
  const auto s = net_shape(Z, W, local);
  const int64_t C = common_chains({{W.shape(0), "W"},
                                   {chains_of(V, {s.Nc, s.Np}, "v"), "v"},
                                   {chains_of(TW, w_tail<T>(s), "tW"), "tW"},
                                   {chains_of(TV, {s.Nc, s.Np}, "tv"), "tv"}});
  py::array_t<T> out(std::vector<py::ssize_t>{C, s.P});
  T* o = out.mutable_data();
  const auto cw = chained(W, C), cv = chained(V, C), ctw = chained(TW, C), ctv = chained(TV, C);
  {
    py::gil_scoped_release release;
    patch_jvp<T>(Z.data(), s, cw, cv, ctw, ctv, C, act, nthreads, o);
  }
  return out;
}

template <class T>
py::object features_t(const py::array& z, const py::array& w, const py::array& v, int64_t a0,
                      int64_t a1, bool local, bool combined, Activation act, int nthreads) {
  check_dtype<T>(w, "W"), check_dtype<T>(v, "v");
  const auto Z = contiguous<T>(z, "Z");
  CArray<T> W = contiguous<T>(w, "W"), V = contiguous<T>(v, "v");
  // unchained parameters: view them with a chain axis of one for the shape checks
  std::vector<py::ssize_t> ws{1}, vs{1};
  for (py::ssize_t d = 0; d < W.ndim(); ++d) ws.push_back(W.shape(d));
  for (py::ssize_t d = 0; d < V.ndim(); ++d) vs.push_back(V.shape(d));
  const auto s = net_shape(Z, W.reshape(ws), local);
  chains_of(V.reshape(vs), {s.Nc, s.Np}, "v");
  if (!(0 <= a0 && a0 < a1 && a1 <= s.Nc))
    throw py::value_error("channel block [" + std::to_string(a0) + ", " + std::to_string(a1) +
                          ") is not inside [0, " + std::to_string(s.Nc) + ")");
  const int64_t nb = a1 - a0, ng = local ? s.Np : s.M;
  if (combined) {
    // one (P, nb (Np + ng)) buffer: S in the first nb Np columns, G in the rest
    const int64_t ld = nb * (s.Np + ng);
    py::array_t<T> F(std::vector<py::ssize_t>{s.P, ld});
    T* pf = F.mutable_data();
    {
      py::gil_scoped_release release;
      patch_features<T>(Z.data(), s, W.data(), V.data(), a0, a1, act, nthreads, pf, ld,
                        pf + nb * s.Np, ld);
    }
    return std::move(F);
  }
  py::array_t<T> S(std::vector<py::ssize_t>{s.P, nb, s.Np}),
      G(std::vector<py::ssize_t>{s.P, nb, ng});
  T *ps = S.mutable_data(), *pg = G.mutable_data();
  {
    py::gil_scoped_release release;
    patch_features<T>(Z.data(), s, W.data(), V.data(), a0, a1, act, nthreads, ps, nb * s.Np, pg,
                      nb * ng);
  }
  return py::make_tuple(S, G);
}

template <class T>
py::object activation_pair_t(const py::array& h, Activation act, bool derivative, int nthreads) {
  const auto H = contiguous<T>(h, "H");
  std::vector<py::ssize_t> shape(H.shape(), H.shape() + H.ndim());
  py::array_t<T> S(shape);
  T* ps = S.mutable_data();
  if (!derivative) {
    py::gil_scoped_release release;
    activation_pair<T>(H.data(), H.size(), act, nthreads, ps, nullptr);
    return std::move(S);
  }
  py::array_t<T> D(shape);
  T* pd = D.mutable_data();
  {
    py::gil_scoped_release release;
    activation_pair<T>(H.data(), H.size(), act, nthreads, ps, pd);
  }
  return py::make_tuple(S, D);
}

// A writeable C-contiguous array of dtype T and the given shape (written in place: no
// converted copy may stand in for it).
template <class T>
T* out_buffer(const py::array& a, const char* name, const std::vector<int64_t>& shape) {
  check_dtype<T>(a, name);
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(std::string(name) + " must be a writeable C-contiguous array");
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t d = 0; ok && d < shape.size(); ++d) ok = a.shape(d) == shape[d];
  if (!ok) {
    std::string want = "(";
    for (size_t d = 0; d < shape.size(); ++d) want += (d ? ", " : "") + std::to_string(shape[d]);
    throw py::value_error(std::string(name) + " must have shape " + want +
                          (shape.size() == 1 ? ",)" : ")") + ", got " + shape_str(a));
  }
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
py::tuple train_step_t(const py::array& z, const py::array& w, const py::array& uu,
                       const py::array& yy, const py::array& h, const py::array& sbuf, int64_t R,
                       double scale, Activation act, int nthreads) {
  if (z.ndim() != 2) throw py::value_error("Z must be (rows, Kin), got " + shape_str(z));
  if (w.ndim() != 3) throw py::value_error("W must be (chains, Kout, Kin), got " + shape_str(w));
  StepShape s;
  s.C = w.shape(0), s.Kout = w.shape(1), s.Kin = w.shape(2), s.R = R;
  if (R < 1 || z.shape(0) % R != 0 || z.shape(1) != s.Kin)
    throw py::value_error("Z must be (n * " + std::to_string(R) + ", " + std::to_string(s.Kin) +
                          "), got " + shape_str(z));
  s.n = z.shape(0) / R;
  const auto Z = contiguous<T>(z, "Z");
  const CArray<T> W = contiguous<T>(w, "W"), U = contiguous<T>(uu, "u"), Y = contiguous<T>(yy, "y");
  if (U.ndim() != 2 || U.shape(0) != s.C || U.shape(1) != s.K())
    throw py::value_error("u must be (" + std::to_string(s.C) + ", " + std::to_string(s.K()) +
                          "), got " + shape_str(U));
  const int64_t yc = chains_of(Y, {s.n}, "y");
  if (yc != 1 && yc != s.C)
    throw py::value_error("y has " + std::to_string(yc) + " chains, expected 1 or " +
                          std::to_string(s.C));
  T* H = out_buffer<T>(h, "H", {s.C, s.n, s.K()});
  T* S = out_buffer<T>(sbuf, "S", {s.C, s.n, s.K()});
  py::array_t<T> f(std::vector<py::ssize_t>{s.C, s.n}), gu(std::vector<py::ssize_t>{s.C, s.K()}),
      gW(std::vector<py::ssize_t>{s.C, s.Kout, s.Kin});
  T *pf = f.mutable_data(), *pg = gu.mutable_data(), *pw = gW.mutable_data();
  const Chained<T> cy{Y.data(), yc == 1 ? 0 : s.n};
  {
    py::gil_scoped_release release;
    train_step<T>(Z.data(), s, W.data(), U.data(), cy, static_cast<T>(scale), act, nthreads, H, S,
                  pf, pg, pw);
  }
  return py::make_tuple(f, gu, gW);
}

template <class T>
void update_t(const py::array& a, const py::array& g, double decay, double lr, double amp,
              uint64_t key, uint32_t stream, uint64_t step, int nthreads) {
  std::vector<int64_t> shape(a.shape(), a.shape() + a.ndim());
  T* pa = out_buffer<T>(a, "a", shape);
  check_dtype<T>(g, "g");
  if (!(g.flags() & py::array::c_style) || g.ndim() != a.ndim() ||
      !std::equal(shape.begin(), shape.end(), g.shape()))
    throw py::value_error("g must be a C-contiguous array shaped like a " + shape_str(a) +
                          ", got " + shape_str(g));
  const T* pg = static_cast<const T*>(g.data());
  const int64_t n = a.size();
  py::gil_scoped_release release;
  langevin_update<T>(pa, pg, n, T(decay), T(lr), T(amp), key, stream, step, nthreads);
}

}  // namespace

void register_nets(py::module_& m) {
  m.def(
      "patch_forward",
      [](const py::array& Z, const py::array& W, const py::array& v, bool local,
         const std::string& activation, int nthreads) {
        const auto act = activation_from_name(activation);
        return dispatch_float(Z, [&](auto tag) {
          return forward_t<typename decltype(tag)::type>(Z, W, v, local, act, nthreads);
        });
      },
      py::arg("Z"), py::arg("W"), py::arg("v"), py::kw_only(), py::arg("local"),
      py::arg("activation"), py::arg("nthreads"),
      "CNN/LCN outputs f (C, P) from patches Z (P, Np, M), chained W and v.");
  m.def(
      "patch_vjp",
      [](const py::array& Z, const py::array& W, const py::array& v, const py::array& r, bool local,
         const std::string& activation, int nthreads) {
        const auto act = activation_from_name(activation);
        return dispatch_float(Z, [&](auto tag) {
          return vjp_t<typename decltype(tag)::type>(Z, W, v, r, local, act, nthreads);
        });
      },
      py::arg("Z"), py::arg("W"), py::arg("v"), py::arg("r"), py::kw_only(), py::arg("local"),
      py::arg("activation"), py::arg("nthreads"),
      "Gradients (dW, dv) of sum_p r[c, p] f_c(x_p), chained.");
  m.def(
      "patch_value_and_grad",
      [](const py::array& Z, const py::array& W, const py::array& v, const py::array& y, bool local,
         const std::string& activation, int nthreads) {
        const auto act = activation_from_name(activation);
        return dispatch_float(Z, [&](auto tag) {
          return value_and_grad_t<typename decltype(tag)::type>(Z, W, v, y, local, act, nthreads);
        });
      },
      py::arg("Z"), py::arg("W"), py::arg("v"), py::arg("y"), py::kw_only(), py::arg("local"),
      py::arg("activation"), py::arg("nthreads"),
      "(f (C, P), dW, dv): outputs and gradients of (1/2) sum_p (y[c, p] - f_c(x_p))^2, fused.");
  m.def(
      "patch_jvp",
      [](const py::array& Z, const py::array& W, const py::array& v, const py::array& tW,
         const py::array& tv, bool local, const std::string& activation, int nthreads) {
        const auto act = activation_from_name(activation);
        return dispatch_float(Z, [&](auto tag) {
          return jvp_t<typename decltype(tag)::type>(Z, W, v, tW, tv, local, act, nthreads);
        });
      },
      py::arg("Z"), py::arg("W"), py::arg("v"), py::arg("tW"), py::arg("tv"), py::kw_only(),
      py::arg("local"), py::arg("activation"), py::arg("nthreads"),
      "Directional derivatives J t (C, P) along tangents (tW, tv), chained.");
  m.def(
      "patch_features",
      [](const py::array& Z, const py::array& W, const py::array& v, int64_t a0, int64_t a1,
         bool local, const std::string& activation, int nthreads, bool combined) {
        const auto act = activation_from_name(activation);
        return dispatch_float(Z, [&](auto tag) {
          return features_t<typename decltype(tag)::type>(Z, W, v, a0, a1, local, combined, act,
                                                          nthreads);
        });
      },
      py::arg("Z"), py::arg("W"), py::arg("v"), py::arg("a0"), py::arg("a1"), py::kw_only(),
      py::arg("local"), py::arg("activation"), py::arg("nthreads"), py::arg("combined") = false,
      "NTK features of channels [a0, a1) for unchained W, v (see nets.hpp): (S, G), or with "
      "combined=True one (P, nb (Np + ng)) array [S | G].");
  m.def(
      "train_step",
      [](const py::array& Z, const py::array& W, const py::array& u, const py::array& y,
         const py::array& H, const py::array& S, int64_t rows_per_sample, double scale,
         const std::string& activation, int nthreads) {
        const auto act = activation_from_name(activation);
        return dispatch_float(W, [&](auto tag) {
          return train_step_t<typename decltype(tag)::type>(Z, W, u, y, H, S, rows_per_sample,
                                                            scale, act, nthreads);
        });
      },
      py::arg("Z"), py::arg("W"), py::arg("u"), py::arg("y"), py::arg("H"), py::arg("S"),
      py::kw_only(), py::arg("rows_per_sample"), py::arg("scale"), py::arg("activation"),
      py::arg("nthreads"),
      "One fused training step of the one-hidden-layer FC/CNN objective (train_step.hpp): "
      "(f (C, n), gu (C, K), gW (C, Kout, Kin)); H and S (C, n, K) are work buffers.");
  m.def(
      "set_gemm",
      [](py::object dgemm, py::object sgemm) {
        if (dgemm.is_none() || sgemm.is_none()) {
          set_gemm(nullptr, nullptr);
          return;
        }
        auto d = reinterpret_cast<FortranGemm<double>>(py::capsule(dgemm).get_pointer());
        auto f = reinterpret_cast<FortranGemm<float>>(py::capsule(sgemm).get_pointer());
        set_gemm(d, f);
      },
      py::arg("dgemm"), py::arg("sgemm"),
      "Register the Fortran-ABI dgemm/sgemm the training step calls (capsules of "
      "scipy.linalg.cython_blas); None for both: forget them (plain loops).");
  m.def("have_gemm", &have_gemm, "Whether set_gemm registered BLAS products.");
  m.def(
      "langevin_update",
      [](const py::array& a, const py::array& g, double decay, double lr, double amp, uint64_t key,
         uint32_t stream, uint64_t step, int nthreads) {
        dispatch_float(a, [&](auto tag) {
          update_t<typename decltype(tag)::type>(a, g, decay, lr, amp, key, stream, step, nthreads);
        });
      },
      py::arg("a"), py::arg("g"), py::kw_only(), py::arg("decay"), py::arg("lr"), py::arg("amp"),
      py::arg("key"), py::arg("stream"), py::arg("step"), py::arg("nthreads"),
      "In place: a <- decay a - lr g + amp xi, xi ~ N(0, 1) from Philox4x32-10 at "
      "(key, stream, step, index) (noise.hpp).");
  m.def(
      "philox_normals",
      [](int64_t n, const std::string& dtype, uint64_t key, uint32_t stream, uint64_t step) {
        if (n < 0) throw py::value_error("n must be >= 0");
        if (dtype == "float32") {
          py::array_t<float> out(n);
          philox_normals<float>(out.mutable_data(), n, key, stream, step);
          return py::array(out);
        }
        if (dtype != "float64") throw py::value_error("dtype must be 'float32' or 'float64'");
        py::array_t<double> out(n);
        philox_normals<double>(out.mutable_data(), n, key, stream, step);
        return py::array(out);
      },
      py::arg("n"), py::arg("dtype"), py::arg("key"), py::arg("stream"), py::arg("step"),
      "The noise of langevin_update alone: n standard normals.");
  m.def("set_fast_math", &set_fast_math, py::arg("enabled"),
        "Use the AVX2/FMA patch kernels with vectorised erf/exp (if the CPU has them) or the "
        "baseline ones with libm; returns the previous setting (for tests).");
  m.def(
      "activation_pair",
      [](const py::array& H, const std::string& activation, bool derivative, int nthreads) {
        const auto act = activation_from_name(activation);
        return dispatch_float(H, [&](auto tag) {
          return activation_pair_t<typename decltype(tag)::type>(H, act, derivative, nthreads);
        });
      },
      py::arg("H"), py::kw_only(), py::arg("activation"), py::arg("derivative"),
      py::arg("nthreads"),
      "sigma(H), or (sigma(H), sigma'(H)) with derivative=True, elementwise (float32/64).");
}

}  // namespace lkr::bind
