// Argument helpers shared by the kernel bindings (kernels.cpp, kernels_multi.cpp, deep.cpp):
// the kernel parameters, the optional second patch tensor Y and the square order parameters,
// each check turning misuse into a ValueError that names the shapes.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "../lkr/local_kernel.hpp"
#include "array_utils.hpp"

namespace lkr::bind {
namespace py = pybind11;

inline KernelParams kernel_params(const std::string& activation, double lambda0, int nthreads) {
  KernelParams p;
  p.activation = activation_from_name(activation);
  p.lambda0 = lambda0;
  p.nthreads = nthreads;
  return p;
}

// The view of Y when given, which must have X's patch count and patch size.
template <class T>
std::optional<View3<T>> second(const View3<T>& a, const std::optional<py::array>& y) {
  if (!y) return std::nullopt;
  auto b = view3<T>(*y, "Y");
  if (a.shape[1] != b.shape[1] || a.shape[2] != b.shape[2])
    throw py::value_error("X and Y patch tensors differ in (patches, patch size): (" +
                          std::to_string(a.shape[1]) + ", " + std::to_string(a.shape[2]) +
                          ") vs (" + std::to_string(b.shape[1]) + ", " +
                          std::to_string(b.shape[2]) + ")");
  return b;
}

// A C-contiguous (n, n) copy of q (or q itself), else a ValueError naming its shape.
template <class T>
py::array_t<T, py::array::c_style> square(const py::array& q, int64_t n, const char* name) {
  auto qc = contiguous<T>(q, name);
  if (qc.ndim() != 2 || qc.shape(0) != n || qc.shape(1) != n)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(n) + ", " +
                          std::to_string(n) + "), got " + shape_str(qc));
  return qc;
}

}  // namespace lkr::bind
