// lkr._core: one private extension, one register function per feature.
#include <pybind11/pybind11.h>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lkr::bind {
void register_kernels(pybind11::module_& m);
void register_nets(pybind11::module_& m);
void register_readout(pybind11::module_& m);
void register_kernels_multi(pybind11::module_& m);
void register_deep(pybind11::module_& m);
void register_cholupdate(pybind11::module_& m);
}  // namespace lkr::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "lkr's compiled kernels (private; use the lkr package's public functions).";
  m.def("max_threads", [] {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });
  m.attr("openmp") =
#ifdef _OPENMP
      true;
#else
      false;
#endif
  lkr::bind::register_kernels(m);
  lkr::bind::register_nets(m);
  lkr::bind::register_readout(m);
  lkr::bind::register_kernels_multi(m);
  lkr::bind::register_deep(m);
  lkr::bind::register_cholupdate(m);
}
