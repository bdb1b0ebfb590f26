#include "kernels/permute.h"

#include <cstring>

namespace grace {

void PermuteRows(const float* in, int64_t in_stride, const int32_t* src_rows, int rows, int cols,
                 float* out, int64_t out_stride) {
  for (int i = 0; i < rows; ++i) {
    std::memcpy(out + i * out_stride, in + src_rows[i] * in_stride, sizeof(float) * cols);
  }
}

}  // namespace grace
