// PermuteRows: gathers rows of a matrix into a new order (token copies into dispatch records,
// received records into per-expert groups).
//
//   out[i * out_stride + c] = in[src_rows[i] * in_stride + c], c in [0, cols)
//
// Strides are in floats, so the rows may sit inside larger records. The CUDA twin is
// kernels/cuda/permute_rows.cu. Pure function; any thread.
#pragma once

#include <cstdint>

namespace grace {

void PermuteRows(const float* in, int64_t in_stride, const int32_t* src_rows, int rows, int cols,
                 float* out, int64_t out_stride);

}  // namespace grace
