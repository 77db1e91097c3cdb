// Bindings of the local-kernel engine: one entry point per kernel, dispatching on dtype.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "../lkr/local_kernel.hpp"
#include "array_utils.hpp"
#include "kernel_args.hpp"

namespace lkr::bind {
namespace py = pybind11;

namespace {

template <class T>
py::array local_kernel_t(const py::array& x, const std::optional<py::array>& y,
                         const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const int64_t P2 = b ? b->shape[0] : a.shape[0], Np = a.shape[1];
  py::array_t<T> out({a.shape[0], P2, Np, Np});
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    local_kernel<T>(a, b ? &*b : nullptr, p, o);
  }
  return out;
}

template <class T>
py::array renormalized_t(const py::array& x, const std::optional<py::array>& y, const py::array& q,
                         double lambda1, const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const auto qc = square<T>(q, a.shape[1], "Q");
  const int64_t P2 = b ? b->shape[0] : a.shape[0];
  py::array_t<T> out({a.shape[0], P2});
  T* o = out.mutable_data();
  const T* qd = qc.data();
  {
    py::gil_scoped_release release;
    renormalized_kernel<T>(a, b ? &*b : nullptr, qd, lambda1, p, o);
  }
  return out;
}

template <class T>
py::array renormalized_diag_t(const py::array& x, const py::array& q, double lambda1,
                              const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  const auto qc = square<T>(q, a.shape[1], "Q");
  py::array_t<T> out(a.shape[0]);
  T* o = out.mutable_data();
  const T* qd = qc.data();
  {
    py::gil_scoped_release release;
    renormalized_kernel_diag<T>(a, qd, lambda1, p, o);
  }
  return out;
}

template <class T>
py::array adjoint_t(const py::array& x, const std::optional<py::array>& y, const py::array& w,
                    bool w_symmetric, const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const auto wv = view2<T>(w, "W");
  const int64_t P2 = b ? b->shape[0] : a.shape[0], Np = a.shape[1];
  if (wv.shape[0] != a.shape[0] || wv.shape[1] != P2)
    throw py::value_error("W must have shape (" + std::to_string(a.shape[0]) + ", " +
                          std::to_string(P2) + "), got " + shape_str(w));
  py::array_t<T> out({Np, Np});
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    local_kernel_adjoint<T>(a, b ? &*b : nullptr, wv, w_symmetric, p, o);
  }
  return out;
}

template <class T>
void nngp_map_t(py::array& k, const py::array& dx, const py::array& dy, Activation act,
                int nthreads) {
  if (!(k.flags() & py::array::c_style) || !k.writeable())
    throw py::value_error("K must be a writeable C-contiguous array");
  check_dtype<T>(k, "K");
  if (k.ndim() != 2) throw py::value_error("K must be 2-D, got " + shape_str(k));
  const auto dxc = contiguous<T>(dx, "dx");
  const auto dyc = contiguous<T>(dy, "dy");
  const int64_t P = k.shape(0), P2 = k.shape(1);
  if (dxc.size() != P || dyc.size() != P2)
    throw py::value_error("dx, dy must have lengths " + std::to_string(P) + ", " +
                          std::to_string(P2));
  T* kd = static_cast<T*>(k.mutable_data());
  const T* a = dxc.data();
  const T* b = dyc.data();
  {
    py::gil_scoped_release release;
    nngp_map_inplace<T>(act, kd, P, P2, a, b, nthreads);
  }
}

}  // namespace

void register_kernels(py::module_& m) {
  m.def(
      "local_kernel",
      [](const py::array& x, const std::optional<py::array>& y, const std::string& activation,
         double lambda0, int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return local_kernel_t<typename decltype(tag)::type>(x, y, p);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("activation"), py::arg("lambda0"), py::arg("nthreads"),
      "Materialised local kernel (P, P2, Np, Np) from patch tensors (P, Np, M).");
  m.def(
      "renormalized_kernel",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& q,
         const std::string& activation, double lambda0, double lambda1, int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return renormalized_t<typename decltype(tag)::type>(x, y, q, lambda1, p);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("Q"), py::arg("activation"), py::arg("lambda0"),
      py::arg("lambda1"), py::arg("nthreads"), "Streaming K_R(Q) (P, P2) from patch tensors.");
  m.def(
      "renormalized_kernel_diag",
      [](const py::array& x, const py::array& q, const std::string& activation, double lambda0,
         double lambda1, int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return renormalized_diag_t<typename decltype(tag)::type>(x, q, lambda1, p);
        });
      },
      py::arg("X"), py::arg("Q"), py::arg("activation"), py::arg("lambda0"), py::arg("lambda1"),
      py::arg("nthreads"), "Diagonal K_R(Q)^{mu mu} (P,) from a patch tensor.");
  m.def(
      "local_kernel_adjoint",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& w,
         bool w_symmetric, const std::string& activation, double lambda0, int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return adjoint_t<typename decltype(tag)::type>(x, y, w, w_symmetric, p);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("w_symmetric"), py::arg("activation"),
      py::arg("lambda0"), py::arg("nthreads"), "Adjoint G(W) (Np, Np) from patch tensors.");
  m.def(
      "nngp_map_inplace",
      [](py::array& k, const py::array& dx, const py::array& dy, const std::string& activation,
         int nthreads) {
        const auto act = activation_from_name(activation);
        dispatch_float(k, [&](auto tag) {
          nngp_map_t<typename decltype(tag)::type>(k, dx, dy, act, nthreads);
        });
      },
      py::arg("K"), py::arg("dx"), py::arg("dy"), py::arg("activation"), py::arg("nthreads"),
      "In place K[m, n] <- K_sigma(dx[m], K[m, n], dy[n]).");
}

}  // namespace lkr::bind
