// Bindings of the network patch kernels (forward/backward of CNN/LCN layers).
#include <pybind11/pybind11.h>

namespace lkr::bind {
void register_nets(pybind11::module_& m) { (void)m; }
}  // namespace lkr::bind
