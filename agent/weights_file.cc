#include "agent/weights_file.h"

#include <algorithm>

#include "agent/safetensors.h"

namespace grace {
namespace {

std::string LayerPrefix(LayerId layer) {
  return "model.layers." + std::to_string(layer) + ".mlp.";
}
std::string ExpertName(LayerId layer, int expert, const char* proj) {
  return LayerPrefix(layer) + "experts." + std::to_string(expert) + "." + proj + ".weight";
}

}  // namespace

StatusOr<ExpertWeights> LoadExpertWeightsFile(const std::string& path, const ModelShape& shape,
                                              const std::vector<LayerId>& layer_ids) {
  GRACE_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(path));
  ExpertWeights w = ExpertWeights::Zeros(shape);
  const int64_t e = shape.num_experts, h = shape.hidden, f = shape.ffn;
  std::vector<float> buf;
  for (int li = 0; li < shape.num_layers; ++li) {
    const LayerId layer = layer_ids[li];
    GRACE_RETURN_IF_ERROR(
        file.ReadFloat32(LayerPrefix(layer) + "gate.weight", {e, h}, &w.gate[li]));
    for (int x = 0; x < e; ++x) {
      struct Part {
        const char* proj;
        std::vector<int64_t> shape;
        std::vector<float>* dst;
      };
      for (const Part& p :
           {Part{"gate_proj", {f, h}, &w.w1[li]}, Part{"up_proj", {f, h}, &w.w3[li]},
            Part{"down_proj", {h, f}, &w.w2[li]}}) {
        GRACE_RETURN_IF_ERROR(file.ReadFloat32(ExpertName(layer, x, p.proj), p.shape, &buf));
        std::copy(buf.begin(), buf.end(), p.dst->begin() + static_cast<int64_t>(x) * f * h);
      }
    }
  }
  return w;
}

Status WriteExpertWeightsFile(const std::string& path, const ExpertWeights& w,
                              const std::vector<LayerId>& layer_ids) {
  const ModelShape& s = w.shape;
  const int64_t e = s.num_experts, h = s.hidden, f = s.ffn;
  std::map<std::string, Float32Tensor> tensors;
  for (int li = 0; li < s.num_layers; ++li) {
    const LayerId layer = layer_ids[li];
    tensors[LayerPrefix(layer) + "gate.weight"] = {{e, h}, w.gate[li].data()};
    for (int x = 0; x < e; ++x) {
      tensors[ExpertName(layer, x, "gate_proj")] = {{f, h}, w.W1(li, x)};
      tensors[ExpertName(layer, x, "up_proj")] = {{f, h}, w.W3(li, x)};
      tensors[ExpertName(layer, x, "down_proj")] = {{h, f}, w.W2(li, x)};
    }
  }
  return WriteSafetensors(path, tensors);
}

}  // namespace grace
