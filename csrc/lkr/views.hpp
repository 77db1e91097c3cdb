// Plain strided views: the compiled core's only array type. Strides are in elements.
#pragma once
#include <cstdint>

namespace lkr {

template <class T>
struct View3 {
  const T* data = nullptr;
  int64_t shape[3] = {0, 0, 0};
  int64_t stride[3] = {0, 0, 0};
  const T& operator()(int64_t a, int64_t b, int64_t c) const {
    return data[a * stride[0] + b * stride[1] + c * stride[2]];
  }
};

template <class T>
struct View2 {
  const T* data = nullptr;
  int64_t shape[2] = {0, 0};
  int64_t stride[2] = {0, 0};
  const T& operator()(int64_t a, int64_t b) const { return data[a * stride[0] + b * stride[1]]; }
};

}  // namespace lkr
