// Bindings of the training objectives' elementwise passes (csrc/lkr/readout.hpp): in place on
// caller-owned buffers, so that a training step allocates no (P, K) arrays.
#include <initializer_list>
#include <string>

#include "../lkr/readout.hpp"
#include "array_utils.hpp"

namespace lkr::bind {
namespace {

// A writeable C-contiguous array of dtype T and the given shape (the buffers are written in
// place, so no converted copy may stand in for them).
template <class T>
T* buffer(const py::array& a, const char* name, std::initializer_list<int64_t> shape) {
  check_dtype<T>(a, name);
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(std::string(name) + " must be a writeable C-contiguous array");
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  int d = 0;
  for (int64_t n : shape) ok = ok && a.shape(d++) == n;
  if (!ok) {
    std::string want = "(";
    d = 0;
    for (int64_t n : shape) want += (d++ ? ", " : "") + std::to_string(n);
    throw py::value_error(std::string(name) + " must have shape " + want + (d == 1 ? ",)" : ")") +
                          ", got " + shape_str(a));
  }
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
void forward_t(const py::array& H, const py::array& u, const py::array& S, const py::array& f,
               double scale, Activation act, int nthreads) {
  if (H.ndim() != 3) throw py::value_error("H must have shape (C, P, K), got " + shape_str(H));
  const int64_t C = H.shape(0), P = H.shape(1), K = H.shape(2);
  T* h = buffer<T>(H, "H", {C, P, K});
  const T* pu = buffer<T>(u, "u", {C, K});
  T* ps = buffer<T>(S, "S", {C, P, K});
  T* pf = buffer<T>(f, "f", {C, P});
  py::gil_scoped_release release;
  readout_forward<T>(h, pu, C, P, K, static_cast<T>(scale), act, nthreads, ps, pf);
}

template <class T>
void backward_t(const py::array& D, const py::array& S, const py::array& rc, const py::array& g,
                int nthreads) {
  if (D.ndim() != 3) throw py::value_error("D must have shape (C, P, K), got " + shape_str(D));
  const int64_t C = D.shape(0), P = D.shape(1), K = D.shape(2);
  T* pd = buffer<T>(D, "D", {C, P, K});
  const T* ps = buffer<T>(S, "S", {C, P, K});
  const T* pr = buffer<T>(rc, "rc", {C, P});
  T* pg = buffer<T>(g, "g", {C, K});
  py::gil_scoped_release release;
  readout_backward<T>(pd, ps, pr, C, P, K, nthreads, pg);
}

}  // namespace

void register_readout(py::module_& m) {
  m.def(
      "readout_forward",
      [](const py::array& H, const py::array& u, const py::array& S, const py::array& f,
         double scale, const std::string& activation, int nthreads) {
        const auto act = activation_from_name(activation);
        dispatch_float(H, [&](auto tag) {
          forward_t<typename decltype(tag)::type>(H, u, S, f, scale, act, nthreads);
        });
      },
      py::arg("H"), py::arg("u"), py::arg("S"), py::arg("f"), py::kw_only(), py::arg("scale"),
      py::arg("activation"), py::arg("nthreads"),
      "In place: S = sigma(H), H <- sigma'(H) u, f = scale sum_k u S (H (C, P, K), u (C, K)).");
  m.def(
      "readout_backward",
      [](const py::array& D, const py::array& S, const py::array& rc, const py::array& g,
         int nthreads) {
        dispatch_float(D, [&](auto tag) {
          backward_t<typename decltype(tag)::type>(D, S, rc, g, nthreads);
        });
      },
      py::arg("D"), py::arg("S"), py::arg("rc"), py::arg("g"), py::kw_only(), py::arg("nthreads"),
      "In place: g[c, k] = sum_p rc[c, p] S[c, p, k] and D[c, p, k] *= rc[c, p].");
}

}  // namespace lkr::bind
