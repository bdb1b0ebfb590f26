// GRACE_REQUIRE_GPUS(n): skips the running GoogleTest test, saying why, unless at least n CUDA
// devices can be used (no driver, an old driver or no device counts as none). For tests built
// only with CUDA; NCCL takes one device per rank, so an n-rank NCCL test requires n.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "kernels/cuda_device.h"

namespace grace::testing {

// The usable CUDA devices; *why says what is missing when there are none.
inline int UsableCudaDevices(std::string* why) {
  if (!CudaDeviceAvailable(why)) return 0;
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

}  // namespace grace::testing

#define GRACE_REQUIRE_GPUS(n)                                                       \
  do {                                                                              \
    std::string grace_why_;                                                         \
    const int grace_have_ = ::grace::testing::UsableCudaDevices(&grace_why_);       \
    if (grace_have_ < (n)) {                                                        \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s), "                        \
                   << "found " << grace_have_                                       \
                   << (grace_have_ == 0 ? " (" + grace_why_ + ")" : std::string()); \
    }                                                                               \
  } while (false)
