// Bindings of the deep-CNN kernel engine (csrc/lkr/deep_kernel.hpp): one entry point per
// contraction, dispatching on dtype. Inputs are flattened (P, n0); the layers come as a tuple
// (index1, tables, norms): the layer-1 patch index (n1, M1), the int32 window tables
// (n_l, k_l) of layers 2..L and their norms; the pair plan as a tuple (pairs, gathers,
// chunks) built by lkr.DeepGeometry.pair_plan. All are checked here (a bad index would read
// out of bounds).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "../lkr/deep_kernel.hpp"
#include "array_utils.hpp"
#include "kernel_args.hpp"

namespace lkr::bind {
namespace py = pybind11;

namespace {

using Int32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using Int64 = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using Layers = std::tuple<Int32, std::vector<Int32>, std::vector<double>>;
using Plan = std::tuple<std::vector<Int32>, std::vector<Int32>, Int64>;

// DeepParams over arrays that must outlive the call (they are held here).
struct Deep {
  Layers layers;
  Plan plan;
  DeepParams p;
  int64_t d = 0;
};

Deep deep_params(const py::array& x, const Layers& layers, const Plan& plan,
                 const std::string& activation, double lambda0, int nthreads) {
  if (x.ndim() != 2)
    throw py::value_error("X must be flattened inputs (P, n0), got " + shape_str(x));
  Deep r;
  r.layers = layers;
  r.plan = plan;
  const auto& [index1, tables, norms] = r.layers;
  if (tables.size() != norms.size())
    throw py::value_error("deep kernel: " + std::to_string(tables.size()) + " layer tables but " +
                          std::to_string(norms.size()) + " norms");
  if (index1.ndim() != 2 || index1.shape(1) < 1)
    throw py::value_error("the layer-1 index must be (n1, M1), got " + shape_str(index1));
  DeepParams& p = r.p;
  const KernelParams kp = kernel_params(activation, lambda0, nthreads);
  p.activation = kp.activation;
  p.lambda0 = kp.lambda0;
  p.nthreads = kp.nthreads;
  p.index1 = index1.data();
  p.n0 = x.shape(1);
  p.n1 = index1.shape(0);
  p.m1 = index1.shape(1);
  int64_t n_in = p.n1;
  for (size_t l = 0; l < tables.size(); ++l) {
    const auto& t = tables[l];
    if (t.ndim() != 2 || t.shape(1) < 1)
      throw py::value_error("layer table " + std::to_string(l + 2) + " must be (n_out, k), got " +
                            shape_str(t));
    const int32_t* d = t.data();
    for (py::ssize_t e = 0; e < t.size(); ++e)
      if (d[e] < 0 || d[e] > n_in)
        throw py::value_error("layer table " + std::to_string(l + 2) + " has index " +
                              std::to_string(d[e]) + " outside [0, " + std::to_string(n_in) + "]");
    DeepLayer L;
    L.n_in = n_in;
    L.n_out = t.shape(0);
    L.k = t.shape(1);
    L.index = d;
    L.norm = norms[l];
    p.layers.push_back(L);
    n_in = L.n_out;
  }
  r.d = n_in;
  const auto& [pairs, gathers, chunks] = r.plan;
  const size_t L = p.layers.size() + 1;
  if (pairs.size() != L || gathers.size() + 1 != L)
    throw py::value_error("deep pair plan: " + std::to_string(pairs.size()) + " pair levels and " +
                          std::to_string(gathers.size()) + " gather levels for " +
                          std::to_string(L) + " layers");
  if (chunks.ndim() != 2 || chunks.shape(0) < 1 || size_t(chunks.shape(1)) != L)
    throw py::value_error("deep pair plan: chunks must be (nchunks + 1, " + std::to_string(L) +
                          "), got " + shape_str(chunks));
  for (size_t l = 0; l < L; ++l) {
    const auto& pr = pairs[l];
    if (pr.ndim() != 2 || pr.shape(1) != 2)
      throw py::value_error("deep pair plan: level " + std::to_string(l + 1) +
                            " pairs must be (n, 2), got " + shape_str(pr));
    DeepLevel v;
    v.npairs = pr.shape(0);
    v.pairs = pr.data();
    if (l > 0) {
      const auto& g = gathers[l - 1];
      if (g.ndim() != 2 || g.shape(0) != v.npairs || g.shape(1) != p.layers[l - 1].k)
        throw py::value_error("deep pair plan: level " + std::to_string(l + 1) +
                              " gathers must be (" + std::to_string(v.npairs) + ", " +
                              std::to_string(p.layers[l - 1].k) + "), got " + shape_str(g));
      v.gather = g.data();
    }
    p.plan.levels.push_back(v);
  }
  p.plan.chunks = chunks.data();
  p.plan.nchunks = chunks.shape(0) - 1;
  try {
    check_deep_plan(p);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return r;
}

template <class T>
std::optional<View2<T>> second2(const View2<T>& a, const std::optional<py::array>& y) {
  if (!y) return std::nullopt;
  auto b = view2<T>(*y, "Y");
  if (a.shape[1] != b.shape[1])
    throw py::value_error("X and Y differ in input size: " + std::to_string(a.shape[1]) + " vs " +
                          std::to_string(b.shape[1]));
  return b;
}

template <class T>
py::array full_t(const py::array& x, const std::optional<py::array>& y, const Deep& dp) {
  const auto a = view2<T>(x, "X");
  const auto b = second2<T>(a, y);
  const int64_t P2 = b ? b->shape[0] : a.shape[0], d = dp.d;
  py::array_t<T> out({a.shape[0], P2, d, d});
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    deep_local_kernel<T>(a, b ? &*b : nullptr, dp.p, o);
  }
  return out;
}

template <class T>
py::array renorm_t(const py::array& x, const std::optional<py::array>& y, const py::array& q,
                   double lambdaL, const Deep& dp) {
  const auto a = view2<T>(x, "X");
  const auto b = second2<T>(a, y);
  const auto qc = square<T>(q, dp.d, "Q");
  const int64_t P2 = b ? b->shape[0] : a.shape[0];
  py::array_t<T> out({a.shape[0], P2});
  T* o = out.mutable_data();
  const T* qd = qc.data();
  {
    py::gil_scoped_release release;
    deep_renormalized_kernel<T>(a, b ? &*b : nullptr, qd, lambdaL, dp.p, o);
  }
  return out;
}

template <class T>
py::array diag_t(const py::array& x, const py::array& q, double lambdaL, const Deep& dp) {
  const auto a = view2<T>(x, "X");
  const auto qc = square<T>(q, dp.d, "Q");
  py::array_t<T> out(a.shape[0]);
  T* o = out.mutable_data();
  const T* qd = qc.data();
  {
    py::gil_scoped_release release;
    deep_renormalized_kernel_diag<T>(a, qd, lambdaL, dp.p, o);
  }
  return out;
}

template <class T>
py::array adjoint_t(const py::array& x, const std::optional<py::array>& y, const py::array& w,
                    bool w_symmetric, const Deep& dp) {
  const auto a = view2<T>(x, "X");
  const auto b = second2<T>(a, y);
  const auto wv = view2<T>(w, "W");
  const int64_t P2 = b ? b->shape[0] : a.shape[0], d = dp.d;
  if (wv.shape[0] != a.shape[0] || wv.shape[1] != P2)
    throw py::value_error("W must have shape (" + std::to_string(a.shape[0]) + ", " +
                          std::to_string(P2) + "), got " + shape_str(w));
  py::array_t<T> out({d, d});
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    deep_local_kernel_adjoint<T>(a, b ? &*b : nullptr, wv, w_symmetric, dp.p, o);
  }
  return out;
}

template <class T>
py::array pack_t(const py::array& x, const Int32& cols, int64_t ncols, const Deep& dp) {
  const auto a = view2<T>(x, "X");
  const int64_t nf = dp.p.plan.levels.back().npairs;
  if (cols.ndim() != 1 || cols.shape(0) != nf)
    throw py::value_error("cols must have one entry per final pair (" + std::to_string(nf) +
                          "), got shape " + shape_str(cols));
  if (ncols < 0) throw py::value_error("ncols must be >= 0, got " + std::to_string(ncols));
  const int64_t P = a.shape[0];
  py::array_t<T> out({P * (P + 1) / 2, ncols});
  T* o = out.mutable_data();
  const int32_t* c = cols.data();
  try {
    py::gil_scoped_release release;
    deep_pack_compressed<T>(a, c, ncols, dp.p, o);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return out;
}

}  // namespace

void register_deep(py::module_& m) {
  m.def(
      "deep_local_kernel",
      [](const py::array& x, const std::optional<py::array>& y, const Layers& layers,
         const Plan& plan, const std::string& activation, double lambda0, int nthreads) {
        const auto dp = deep_params(x, layers, plan, activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return full_t<typename decltype(tag)::type>(x, y, dp);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("layers"), py::arg("plan"), py::arg("activation"),
      py::arg("lambda0"), py::arg("nthreads"),
      "Final blocks K_L (P, P2, d, d) of the deep-CNN kernel from layer-1 patches (P, n1, M1).");
  m.def(
      "deep_renormalized_kernel",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& q,
         const Layers& layers, const Plan& plan, const std::string& activation, double lambda0,
         double lambdaL, int nthreads) {
        const auto dp = deep_params(x, layers, plan, activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return renorm_t<typename decltype(tag)::type>(x, y, q, lambdaL, dp);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("Q"), py::arg("layers"), py::arg("plan"),
      py::arg("activation"), py::arg("lambda0"), py::arg("lambdaL"), py::arg("nthreads"),
      "Streaming deep K_R(Q) (P, P2) over the plan's pairs.");
  m.def(
      "deep_renormalized_kernel_diag",
      [](const py::array& x, const py::array& q, const Layers& layers, const Plan& plan,
         const std::string& activation, double lambda0, double lambdaL, int nthreads) {
        const auto dp = deep_params(x, layers, plan, activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return diag_t<typename decltype(tag)::type>(x, q, lambdaL, dp);
        });
      },
      py::arg("X"), py::arg("Q"), py::arg("layers"), py::arg("plan"), py::arg("activation"),
      py::arg("lambda0"), py::arg("lambdaL"), py::arg("nthreads"), "Deep K_R(Q)^{mu mu} (P,).");
  m.def(
      "deep_local_kernel_adjoint",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& w,
         bool w_symmetric, const Layers& layers, const Plan& plan, const std::string& activation,
         double lambda0, int nthreads) {
        const auto dp = deep_params(x, layers, plan, activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return adjoint_t<typename decltype(tag)::type>(x, y, w, w_symmetric, dp);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("w_symmetric"), py::arg("layers"),
      py::arg("plan"), py::arg("activation"), py::arg("lambda0"), py::arg("nthreads"),
      "Deep adjoint G(W) (d, d) on the plan's final pairs (0 elsewhere).");
  m.def(
      "deep_pack_compressed",
      [](const py::array& x, const Int32& cols, int64_t ncols, const Layers& layers,
         const Plan& plan, const std::string& activation, double lambda0, int nthreads) {
        const auto dp = deep_params(x, layers, plan, activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return pack_t<typename decltype(tag)::type>(x, cols, ncols, dp);
        });
      },
      py::arg("X"), py::arg("cols"), py::arg("ncols"), py::arg("layers"), py::arg("plan"),
      py::arg("activation"), py::arg("lambda0"), py::arg("nthreads"),
      "The stored deep kernel (P (P + 1) / 2, ncols): final pair e adds K_L,ij into column "
      "cols[e] of the row of (mu <= nu).");
}

}  // namespace lkr::bind
