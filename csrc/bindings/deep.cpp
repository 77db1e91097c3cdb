// Bindings of the deep-CNN kernel engine (csrc/lkr/deep_kernel.hpp): one entry point per
// contraction, dispatching on dtype. The layer tables come as a list of int32 arrays
// (n_l, k_l) with their norms; they are checked here, since a bad index would read out of
// bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "../lkr/deep_kernel.hpp"
#include "array_utils.hpp"

namespace lkr::bind {
namespace py = pybind11;

namespace {

using Tables = std::vector<py::array_t<int32_t, py::array::c_style | py::array::forcecast>>;

DeepParams deep_params(const Tables& tables, const std::vector<double>& norms, int64_t n1,
                       const std::string& activation, double lambda0, int nthreads) {
  if (tables.size() != norms.size())
    throw py::value_error("deep kernel: " + std::to_string(tables.size()) + " layer tables but " +
                          std::to_string(norms.size()) + " norms");
  DeepParams p;
  p.activation = activation_from_name(activation);
  p.lambda0 = lambda0;
  p.nthreads = nthreads;
  int64_t n_in = n1;
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
  return p;
}

bool f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }

int64_t final_d(const DeepParams& p, int64_t n1) {
  return p.layers.empty() ? n1 : p.layers.back().n_out;
}

template <class T>
std::optional<View3<T>> second(const View3<T>& a, const std::optional<py::array>& y) {
  if (!y) return std::nullopt;
  auto b = view3<T>(*y, "Y");
  if (b.shape[1] != a.shape[1] || b.shape[2] != a.shape[2])
    throw py::value_error("X and Y patch tensors differ in (n1, M1)");
  return b;
}

template <class T>
py::array full_t(const py::array& x, const std::optional<py::array>& y, const DeepParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const int64_t P2 = b ? b->shape[0] : a.shape[0], d = final_d(p, a.shape[1]);
  py::array_t<T> out({a.shape[0], P2, d, d});
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    deep_local_kernel<T>(a, b ? &*b : nullptr, p, o);
  }
  return out;
}

template <class T>
py::array renorm_t(const py::array& x, const std::optional<py::array>& y, const py::array& q,
                   double lambdaL, const DeepParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const auto qc = contiguous<T>(q, "Q");
  const int64_t d = final_d(p, a.shape[1]);
  if (qc.ndim() != 2 || qc.shape(0) != d || qc.shape(1) != d)
    throw py::value_error("Q must have shape (" + std::to_string(d) + ", " + std::to_string(d) +
                          "), got " + shape_str(qc));
  const int64_t P2 = b ? b->shape[0] : a.shape[0];
  py::array_t<T> out({a.shape[0], P2});
  T* o = out.mutable_data();
  const T* qd = qc.data();
  {
    py::gil_scoped_release release;
    deep_renormalized_kernel<T>(a, b ? &*b : nullptr, qd, lambdaL, p, o);
  }
  return out;
}

template <class T>
py::array diag_t(const py::array& x, const py::array& q, double lambdaL, const DeepParams& p) {
  const auto a = view3<T>(x, "X");
  const auto qc = contiguous<T>(q, "Q");
  const int64_t d = final_d(p, a.shape[1]);
  if (qc.ndim() != 2 || qc.shape(0) != d || qc.shape(1) != d)
    throw py::value_error("Q must have shape (" + std::to_string(d) + ", " + std::to_string(d) +
                          "), got " + shape_str(qc));
  py::array_t<T> out(a.shape[0]);
  T* o = out.mutable_data();
  const T* qd = qc.data();
  {
    py::gil_scoped_release release;
    deep_renormalized_kernel_diag<T>(a, qd, lambdaL, p, o);
  }
  return out;
}

template <class T>
py::array adjoint_t(const py::array& x, const std::optional<py::array>& y, const py::array& w,
                    bool w_symmetric, const DeepParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const auto wv = view2<T>(w, "W");
  const int64_t P2 = b ? b->shape[0] : a.shape[0], d = final_d(p, a.shape[1]);
  if (wv.shape[0] != a.shape[0] || wv.shape[1] != P2)
    throw py::value_error("W must have shape (" + std::to_string(a.shape[0]) + ", " +
                          std::to_string(P2) + "), got " + shape_str(w));
  py::array_t<T> out({d, d});
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    deep_local_kernel_adjoint<T>(a, b ? &*b : nullptr, wv, w_symmetric, p, o);
  }
  return out;
}

int64_t n1_of(const py::array& x) {
  if (x.ndim() != 3) throw py::value_error("X must be a (P, n1, M1) patch tensor, got " + shape_str(x));
  return x.shape(1);
}

}  // namespace

void register_deep(py::module_& m) {
  m.def(
      "deep_local_kernel",
      [](const py::array& x, const std::optional<py::array>& y, const Tables& tables,
         const std::vector<double>& norms, const std::string& activation, double lambda0,
         int nthreads) {
        const auto p = deep_params(tables, norms, n1_of(x), activation, lambda0, nthreads);
        return f32(x) ? full_t<float>(x, y, p) : full_t<double>(x, y, p);
      },
      py::arg("X"), py::arg("Y"), py::arg("tables"), py::arg("norms"), py::arg("activation"),
      py::arg("lambda0"), py::arg("nthreads"),
      "Final blocks K_L (P, P2, d, d) of the deep-CNN kernel from layer-1 patches (P, n1, M1).");
  m.def(
      "deep_renormalized_kernel",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& q,
         const Tables& tables, const std::vector<double>& norms, const std::string& activation,
         double lambda0, double lambdaL, int nthreads) {
        const auto p = deep_params(tables, norms, n1_of(x), activation, lambda0, nthreads);
        return f32(x) ? renorm_t<float>(x, y, q, lambdaL, p) : renorm_t<double>(x, y, q, lambdaL, p);
      },
      py::arg("X"), py::arg("Y"), py::arg("Q"), py::arg("tables"), py::arg("norms"),
      py::arg("activation"), py::arg("lambda0"), py::arg("lambdaL"), py::arg("nthreads"),
      "Streaming deep K_R(Q) (P, P2).");
  m.def(
      "deep_renormalized_kernel_diag",
      [](const py::array& x, const py::array& q, const Tables& tables,
         const std::vector<double>& norms, const std::string& activation, double lambda0,
         double lambdaL, int nthreads) {
        const auto p = deep_params(tables, norms, n1_of(x), activation, lambda0, nthreads);
        return f32(x) ? diag_t<float>(x, q, lambdaL, p) : diag_t<double>(x, q, lambdaL, p);
      },
      py::arg("X"), py::arg("Q"), py::arg("tables"), py::arg("norms"), py::arg("activation"),
      py::arg("lambda0"), py::arg("lambdaL"), py::arg("nthreads"), "Deep K_R(Q)^{mu mu} (P,).");
  m.def(
      "deep_local_kernel_adjoint",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& w,
         bool w_symmetric, const Tables& tables, const std::vector<double>& norms,
         const std::string& activation, double lambda0, int nthreads) {
        const auto p = deep_params(tables, norms, n1_of(x), activation, lambda0, nthreads);
        return f32(x) ? adjoint_t<float>(x, y, w, w_symmetric, p)
                      : adjoint_t<double>(x, y, w, w_symmetric, p);
      },
      py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("w_symmetric"), py::arg("tables"),
      py::arg("norms"), py::arg("activation"), py::arg("lambda0"), py::arg("nthreads"),
      "Deep adjoint G(W) (d, d).");
}

}  // namespace lkr::bind
