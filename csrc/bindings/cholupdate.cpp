// Bindings of the collapsed sampler's factor updates (csrc/lkr/cholupdate.hpp): float64,
// in place on caller-owned, C-contiguous, writeable arrays.
#include <string>

#include "../lkr/cholupdate.hpp"
#include "array_utils.hpp"

namespace lkr::bind {
namespace {

double* inplace(const py::array& a, const char* name, int ndim) {
  check_dtype<double>(a, name);
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) +
                          " dimensions, got shape " + shape_str(a));
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(std::string(name) + " must be a writeable C-contiguous array");
  return static_cast<double*>(const_cast<void*>(a.data()));
}

void check_factor(const py::array& S) {
  if (S.ndim() != 3 || S.shape(2) < S.shape(1) || S.shape(1) < 1)
    throw py::value_error("S must have shape (C, P, P + D), got " + shape_str(S));
}

}  // namespace

void register_cholupdate(py::module_& m) {
  m.def(
      "chol_update",
      [](const py::array& S, const py::array& X, int sign, int nthreads) {
        check_factor(S);
        double* s = inplace(S, "S", 3);
        const int64_t C = S.shape(0), P = S.shape(1), D = S.shape(2) - P;
        if (sign != 1 && sign != -1)
          throw py::value_error("sign must be +1 or -1, got " + std::to_string(sign));
        auto x = contiguous<double>(X, "X");
        if (x.ndim() != 3 || x.shape(0) != C || x.shape(2) != P)
          throw py::value_error("X must have shape (C, k, P) = (" + std::to_string(C) + ", k, " +
                                std::to_string(P) + "), got " + shape_str(x));
        const int64_t k = x.shape(1);
        py::array_t<uint8_t> ok(C);
        uint8_t* pok = ok.mutable_data();
        const double* px = x.data();
        {
          py::gil_scoped_release release;
          chol_update(s, C, P, D, px, k, sign, nthreads, pok);
        }
        return ok;
      },
      py::arg("S"), py::arg("X"), py::arg("sign"), py::arg("nthreads"),
      "In place: the augmented Cholesky factor S (C, P, P + D) of A <- A + sign X^T X, "
      "X (C, k, P); returns ok (C,) uint8 (0: a downdate lost positive definiteness).");
  m.def(
      "collapsed_sweep",
      [](const py::array& S, const py::array& G, const py::array& Gp, const py::array& logu,
         int64_t block, int nthreads) {
        check_factor(S);
        double* s = inplace(S, "S", 3);
        double* g = inplace(G, "G", 3);
        const int64_t C = S.shape(0), P = S.shape(1), D = S.shape(2) - P, n = G.shape(1);
        if (G.shape(0) != C || G.shape(2) != P)
          throw py::value_error("G must have shape (C, n, P) = (" + std::to_string(C) + ", n, " +
                                std::to_string(P) + "), got " + shape_str(G));
        auto gp = contiguous<double>(Gp, "Gp");
        if (gp.ndim() != 3 || gp.shape(0) != C || gp.shape(1) != n || gp.shape(2) != P)
          throw py::value_error("Gp must have the shape of G " + shape_str(G) + ", got " +
                                shape_str(gp));
        if (block < 1 || n % block != 0)
          throw py::value_error("block must be >= 1 and divide n = " + std::to_string(n) +
                                ", got " + std::to_string(block));
        const int64_t nb = n / block;
        auto lu = contiguous<double>(logu, "logu");
        if (lu.ndim() != 2 || lu.shape(0) != C || lu.shape(1) != nb)
          throw py::value_error("logu must have shape (" + std::to_string(C) + ", " +
                                std::to_string(nb) + "), got " + shape_str(lu));
        py::array_t<uint8_t> acc({C, nb});
        py::array_t<double> delta({C, nb});
        py::array_t<int32_t> status(C);
        uint8_t* pa = acc.mutable_data();
        double* pd = delta.mutable_data();
        int32_t* ps = status.mutable_data();
        const double* pgp = gp.data();
        const double* plu = lu.data();
        {
          py::gil_scoped_release release;
          collapsed_sweep(s, g, pgp, plu, C, P, D, n, block, nthreads, pa, pd, ps);
        }
        return py::make_tuple(acc, delta, status);
      },
      py::arg("S"), py::arg("G"), py::arg("Gp"), py::arg("logu"), py::arg("block"),
      py::arg("nthreads"),
      "One Metropolis sweep over the blocks of `block` feature rows, in place on S and G; "
      "returns (accepted (C, nb) uint8, delta (C, nb), status (C,) int32).");
}

}  // namespace lkr::bind
