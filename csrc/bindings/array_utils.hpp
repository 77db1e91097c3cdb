// NumPy array <-> plain strided view, with the checks that turn misuse into ValueError.
// The Python layer validates user input; these checks guard the extension's own contract.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <sstream>
#include <string>

#include "../lkr/views.hpp"

namespace lkr::bind {
namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s << (d ? ", " : "") << a.shape(d);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

template <class T>
void check_dtype(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<T>>(a) && !a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) +
                         ", expected " + std::string(py::str(py::dtype::of<T>())));
}

template <class T, int N>
void fill_view(const py::array& a, const char* name, const T*& data, int64_t* shape,
               int64_t* stride) {
  check_dtype<T>(a, name);
  if (a.ndim() != N)
    throw py::value_error(std::string(name) + " must have " + std::to_string(N) +
                          " dimensions, got shape " + shape_str(a));
  data = static_cast<const T*>(a.data());
  for (int d = 0; d < N; ++d) {
    shape[d] = a.shape(d);
    if (a.strides(d) % static_cast<py::ssize_t>(sizeof(T)) != 0)
      throw py::value_error(std::string(name) +
                            " has strides that are not a multiple of its itemsize");
    stride[d] = a.strides(d) / static_cast<py::ssize_t>(sizeof(T));
  }
}

template <class T>
View3<T> view3(const py::array& a, const char* name) {
  View3<T> v;
  fill_view<T, 3>(a, name, v.data, v.shape, v.stride);
  return v;
}

template <class T>
View2<T> view2(const py::array& a, const char* name) {
  View2<T> v;
  fill_view<T, 2>(a, name, v.data, v.shape, v.stride);
  return v;
}

// The one place the bindings choose the compiled precision: f(TypeTag<float>{}) for a
// float32 array, f(TypeTag<double>{}) otherwise (the Python layer has already converted
// anything that is not float32 to float64). In f, `using T = typename decltype(tag)::type;`.
template <class T>
struct TypeTag {
  using type = T;
};

template <class F>
decltype(auto) dispatch_float(const py::array& a, F&& f) {
  if (a.dtype().is(py::dtype::of<float>())) return f(TypeTag<float>{});
  return f(TypeTag<double>{});
}

// A C-contiguous copy (or the array itself when it already is one) of the given dtype.
template <class T>
py::array_t<T, py::array::c_style> contiguous(const py::array& a, const char* name) {
  check_dtype<T>(a, name);
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

}  // namespace lkr::bind
