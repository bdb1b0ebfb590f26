// Safetensors: the checkpoint format of Hugging Face models, read and written.
//
// A file is: u64 little-endian header length N, N bytes of JSON
//   {"<name>": {"dtype": "F32"|"F16"|"BF16"|"F64", "shape": [...], "data_offsets": [b, e]}, ...,
//    "__metadata__": {"k": "v"}}
// and then the raw little-endian tensor bytes (offsets are relative to the end of the header).
//
//   GRACE_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open("experts.safetensors"));
//   std::vector<float> w;
//   GRACE_RETURN_IF_ERROR(f.ReadFloat32("model.layers.0.mlp.gate.weight", {60, 2048}, &w));
//
// Every error names the file and the tensor. A plain value, read by one thread at start-up.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace grace {

struct SafetensorInfo {
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  static StatusOr<SafetensorsFile> Open(const std::string& path);
  static StatusOr<SafetensorsFile> FromBytes(std::string bytes, std::string name);

  const std::map<std::string, SafetensorInfo>& tensors() const { return tensors_; }
  const std::string& name() const { return name_; }

  // Reads tensor `tensor` converted to float32; fails naming it when it is missing or its shape
  // is not `expected_shape`.
  Status ReadFloat32(const std::string& tensor, const std::vector<int64_t>& expected_shape,
                     std::vector<float>* out) const;

 private:
  std::string name_;
  std::string bytes_;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorInfo> tensors_;
};

// Writes float32 tensors (name -> (shape, values)) as a safetensors file.
struct Float32Tensor {
  std::vector<int64_t> shape;
  const float* data = nullptr;
};
Status WriteSafetensors(const std::string& path,
                        const std::map<std::string, Float32Tensor>& tensors);

}  // namespace grace
