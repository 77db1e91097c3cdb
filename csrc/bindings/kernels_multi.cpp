// Bindings of the multi-output / non-central local-kernel contractions and the products
// with a stored (compressed) kernel; see csrc/lkr/local_kernel_multi.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <type_traits>

#include "../lkr/local_kernel_multi.hpp"
#include "array_utils.hpp"
#include "kernel_args.hpp"

namespace lkr::bind {
namespace py = pybind11;

namespace {

int64_t check_D(int64_t D) {
  if (D < 1) throw py::value_error("D must be >= 1, got " + std::to_string(D));
  return D;
}

template <class T>
py::array mean_t(const py::array& x, const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  py::array_t<T> out({a.shape[0], a.shape[1]});
  T* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    patch_mean<T>(a, p, o);
  }
  return out;
}

template <class T>
py::array renorm_t(const py::array& x, const std::optional<py::array>& y, const py::array& q,
                   const std::optional<py::array>& qm, int64_t D, double lambda1,
                   const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const int64_t ND = a.shape[1] * check_D(D);
  const auto qc = square<T>(q, ND, "Q");
  std::optional<py::array_t<T, py::array::c_style>> qmc;
  if (qm) qmc = square<T>(*qm, ND, "Qm");
  const int64_t P2 = b ? b->shape[0] : a.shape[0];
  py::array_t<T> out({a.shape[0] * D, P2 * D});
  T* o = out.mutable_data();
  const T* qd = qc.data();
  const T* qmd = qmc ? qmc->data() : nullptr;
  {
    py::gil_scoped_release release;
    renormalized_kernel_multi<T>(a, b ? &*b : nullptr, qd, qmd, D, lambda1, p, o);
  }
  return out;
}

template <class T>
py::object adjoint_t(const py::array& x, const std::optional<py::array>& y, const py::array& w,
                     bool w_symmetric, int64_t D, bool centred, const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  const auto b = second<T>(a, y);
  const auto wv = view2<T>(w, "W");
  const int64_t P2 = b ? b->shape[0] : a.shape[0], ND = a.shape[1] * check_D(D);
  if (wv.shape[0] != a.shape[0] * D || wv.shape[1] != P2 * D)
    throw py::value_error("W must have shape (" + std::to_string(a.shape[0] * D) + ", " +
                          std::to_string(P2 * D) + "), got " + shape_str(w));
  py::array_t<T> out({ND, ND});
  py::array_t<T> gm({centred ? ND : 0, centred ? ND : 0});
  T* o = out.mutable_data();
  T* g = centred ? gm.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    local_kernel_adjoint_multi<T>(a, b ? &*b : nullptr, wv, w_symmetric, D, p, o, g);
  }
  if (centred) return py::make_tuple(out, gm);
  return out;
}

template <class T>
py::array stored_t(const py::array& s, const py::array& x, bool transpose, int nthreads) {
  const auto sc = contiguous<T>(s, "S");
  const auto xc = contiguous<double>(x, "X");
  if (sc.ndim() != 2 || xc.ndim() != 2)
    throw py::value_error("S and X must be 2-D, got " + shape_str(sc) + " and " + shape_str(xc));
  const int64_t rows = sc.shape(0), cols = sc.shape(1), nrhs = xc.shape(1);
  if (xc.shape(0) != (transpose ? rows : cols))
    throw py::value_error("S " + shape_str(sc) + " and X " + shape_str(xc) + " do not match");
  py::array_t<double> out({transpose ? cols : rows, nrhs});
  double* o = out.mutable_data();
  const T* sd = sc.data();
  const double* xd = xc.data();
  {
    py::gil_scoped_release release;
    if (transpose) stored_matmul_t<T>(sd, rows, cols, xd, nrhs, nthreads, o);
    else stored_matmul<T>(sd, rows, cols, xd, nrhs, nthreads, o);
  }
  return out;
}

template <class T>
py::array pack_t(const py::array& x, bool antisym, bool diagonal, bool store32,
                 const KernelParams& p) {
  const auto a = view3<T>(x, "X");
  const int64_t P = a.shape[0], Np = a.shape[1];
  const int64_t ncols = diagonal ? Np : (antisym ? Np * (Np - 1) / 2 : Np * (Np + 1) / 2);
  const int64_t rows = P * (P + 1) / 2;
  if (store32) {
    py::array_t<float> out({rows, ncols});
    float* o = out.mutable_data();
    py::gil_scoped_release release;
    pack_compressed<T, float>(a, antisym, diagonal, p, o);
    return out;
  }
  if constexpr (std::is_same_v<T, float>) {
    throw py::type_error("float32 patches pack into float32 storage only");
  } else {
    py::array_t<double> out({rows, ncols});
    double* o = out.mutable_data();
    py::gil_scoped_release release;
    pack_compressed<T, double>(a, antisym, diagonal, p, o);
    return out;
  }
}

template <class S>
py::array stored_sym_t(const py::array& s, const py::array& x, int64_t P, bool adjoint,
                       double scale, int nthreads) {
  const auto sc = contiguous<S>(s, "S");
  const auto xc = contiguous<double>(x, "X");
  if (sc.ndim() != 2 || sc.shape(0) != P * (P + 1) / 2)
    throw py::value_error("S must have P(P+1)/2 rows, got " + shape_str(sc));
  const int64_t ncols = sc.shape(1);
  const S* sd = sc.data();
  const double* xd = xc.data();
  if (adjoint) {
    if (xc.ndim() != 2 || xc.shape(0) != P || xc.shape(1) != P)
      throw py::value_error("B must have shape (P, P), got " + shape_str(xc));
    py::array_t<double> out(ncols);
    double* o = out.mutable_data();
    py::gil_scoped_release release;
    stored_adjoint_sym<S>(sd, P, ncols, xd, nthreads, o);
    return out;
  }
  if (xc.size() != ncols)
    throw py::value_error("q must have " + std::to_string(ncols) + " entries");
  py::array_t<double> out({P, P});
  double* o = out.mutable_data();
  py::gil_scoped_release release;
  stored_kr_sym<S>(sd, P, ncols, xd, scale, nthreads, o);
  return out;
}

py::array assemble_t(const py::array& vs, const std::optional<py::array>& va, int64_t P, int64_t D,
                     double scale, int nthreads) {
  const auto sc = contiguous<double>(vs, "vS");
  const int64_t rows = P * (P + 1) / 2;
  if (sc.ndim() != 2 || sc.shape(0) != rows || sc.shape(1) != D * (D + 1) / 2)
    throw py::value_error("vS must have shape (P(P+1)/2, D(D+1)/2), got " + shape_str(sc));
  std::optional<py::array_t<double, py::array::c_style>> ac;
  if (va) {
    ac = contiguous<double>(*va, "vA");
    if (ac->ndim() != 2 || ac->shape(0) != rows || ac->shape(1) != D * (D - 1) / 2)
      throw py::value_error("vA must have shape (P(P+1)/2, D(D-1)/2), got " + shape_str(*ac));
  }
  py::array_t<double> out({P * D, P * D});
  double* o = out.mutable_data();
  const double* sd = sc.data();
  const double* ad = ac ? ac->data() : nullptr;
  py::gil_scoped_release release;
  stored_assemble(sd, ad, P, D, scale, nthreads, o);
  return out;
}

py::tuple gather_t(const py::array& b, int64_t P, int64_t D, int nthreads) {
  const auto bc = contiguous<double>(b, "B");
  if (bc.ndim() != 2 || bc.shape(0) != P * D || bc.shape(1) != P * D)
    throw py::value_error("B must have shape (P D, P D), got " + shape_str(bc));
  const int64_t rows = P * (P + 1) / 2;
  py::array_t<double> ws({rows, D * (D + 1) / 2}), wa({rows, D * (D - 1) / 2});
  double* s = ws.mutable_data();
  double* a = wa.mutable_data();
  const double* bd = bc.data();
  {
    py::gil_scoped_release release;
    stored_gather(bd, P, D, nthreads, s, a);
  }
  return py::make_tuple(ws, wa);
}

}  // namespace

void register_kernels_multi(py::module_& m) {
  m.def("stored_assemble", &assemble_t, py::arg("vS"), py::arg("vA"), py::arg("P"), py::arg("D"),
        py::arg("scale"), py::arg("nthreads"),
        "K (P D, P D) example-major from the D-output products vS (and vA) of the stored "
        "kernel, times scale.");
  m.def("stored_gather", &gather_t, py::arg("B"), py::arg("P"), py::arg("D"), py::arg("nthreads"),
        "(Ws, Wa): the output-symmetric and -antisymmetric parts of B's (mu <= nu) blocks, "
        "the right-hand sides of the D-output adjoint.");
  m.def(
      "patch_mean",
      [](const py::array& x, const std::string& activation, double lambda0, int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return mean_t<typename decltype(tag)::type>(x, p);
        });
      },
      py::arg("X"), py::arg("activation"), py::arg("lambda0"), py::arg("nthreads"),
      "Mean patch activations m (P, Np) from a patch tensor (P, Np, M).");
  m.def(
      "renormalized_kernel_multi",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& q,
         const std::optional<py::array>& qm, int64_t D, const std::string& activation,
         double lambda0, double lambda1, int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return renorm_t<typename decltype(tag)::type>(x, y, q, qm, D, lambda1, p);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("Q"), py::arg("Qm"), py::arg("D"), py::arg("activation"),
      py::arg("lambda0"), py::arg("lambda1"), py::arg("nthreads"),
      "K_R (P D, P2 D) for a (Np D, Np D) Q, plus the mean term with Qm when given.");
  m.def(
      "local_kernel_adjoint_multi",
      [](const py::array& x, const std::optional<py::array>& y, const py::array& w,
         bool w_symmetric, int64_t D, bool centred, const std::string& activation, double lambda0,
         int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return adjoint_t<typename decltype(tag)::type>(x, y, w, w_symmetric, D, centred, p);
        });
      },
      py::arg("X"), py::arg("Y"), py::arg("W"), py::arg("w_symmetric"), py::arg("D"),
      py::arg("centred"), py::arg("activation"), py::arg("lambda0"), py::arg("nthreads"),
      "G(W) (Np D, Np D); with centred, (G(W) - G_m(W), G_m(W)) in one pass.");
  m.def(
      "stored_matmul",
      [](const py::array& s, const py::array& x, bool transpose, int nthreads) {
        return dispatch_float(s, [&](auto tag) {
          return stored_t<typename decltype(tag)::type>(s, x, transpose, nthreads);
        });
      },
      py::arg("S"), py::arg("X"), py::arg("transpose"), py::arg("nthreads"),
      "S @ X (or S.T @ X) for a float32/float64 S and a float64 X, accumulated in float64.");
  m.def(
      "pack_compressed",
      [](const py::array& x, bool antisym, bool diagonal, bool store32,
         const std::string& activation, double lambda0, int nthreads) {
        const auto p = kernel_params(activation, lambda0, nthreads);
        return dispatch_float(x, [&](auto tag) {
          return pack_t<typename decltype(tag)::type>(x, antisym, diagonal, store32, p);
        });
      },
      py::arg("X"), py::arg("antisym"), py::arg("diagonal"), py::arg("store32"),
      py::arg("activation"), py::arg("lambda0"), py::arg("nthreads"),
      "The compressed local kernel (P(P+1)/2, patch pairs) of the theories.");
  m.def(
      "stored_sym",
      [](const py::array& s, const py::array& x, int64_t P, bool adjoint, double scale,
         int nthreads) {
        return dispatch_float(s, [&](auto tag) {
          return stored_sym_t<typename decltype(tag)::type>(s, x, P, adjoint, scale, nthreads);
        });
      },
      py::arg("S"), py::arg("X"), py::arg("P"), py::arg("adjoint"), py::arg("scale"),
      py::arg("nthreads"),
      "K_R (P, P) = scale unpack(S q), or the adjoint S^T w(B) (upper triangle of B).");
}

}  // namespace lkr::bind
