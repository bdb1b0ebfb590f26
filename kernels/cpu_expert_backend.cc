// The CPU expert backend: one Eigen GEMM triple per non-empty slot. Each slot reads its
// weights through a pointer, into the backend's own storage (LoadSlot) or into a staged buffer
// it shares (AdoptSlot: a switch copies nothing).
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "kernels/expert_backend.h"

namespace grace {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;
using Map = Eigen::Map<RowMajor>;

class CpuExpertBackend final : public ExpertBackend {
 public:
  CpuExpertBackend(const ModelShape& shape, int num_layers, int local_slots)
      : shape_(shape), local_slots_(local_slots) {
    const size_t per_slot = static_cast<size_t>(shape.ffn) * shape.hidden;
    w1_.assign(num_layers, std::vector<float>(per_slot * local_slots));
    w3_.assign(num_layers, std::vector<float>(per_slot * local_slots));
    w2_.assign(num_layers, std::vector<float>(per_slot * local_slots));
    slot_w_.assign(num_layers, std::vector<const float*>(local_slots));
    adopted_.assign(num_layers,
                    std::vector<std::shared_ptr<const std::vector<float>>>(local_slots));
    for (int l = 0; l < num_layers; ++l) {
      for (int s = 0; s < local_slots; ++s) slot_w_[l][s] = nullptr;
    }
  }

  const char* name() const override { return "cpu"; }

  Status LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                  const float* w2) override {
    if (layer_index < 0 || layer_index >= static_cast<int>(w1_.size()) || local_slot < 0 ||
        local_slot >= local_slots_) {
      return InvalidArgument("cpu expert backend: no slot " + std::to_string(local_slot) +
                             " in layer " + std::to_string(layer_index));
    }
    const size_t n = static_cast<size_t>(shape_.ffn) * shape_.hidden;
    std::copy(w1, w1 + n, w1_[layer_index].begin() + n * local_slot);
    std::copy(w3, w3 + n, w3_[layer_index].begin() + n * local_slot);
    std::copy(w2, w2 + n, w2_[layer_index].begin() + n * local_slot);
    slot_w_[layer_index][local_slot] = nullptr;  // its own storage
    adopted_[layer_index][local_slot].reset();
    return Status::Ok();
  }

  Status AdoptSlot(int layer_index, int local_slot,
                   std::shared_ptr<const std::vector<float>> weights) override {
    const size_t n = static_cast<size_t>(shape_.ffn) * shape_.hidden;
    if (layer_index < 0 || layer_index >= static_cast<int>(w1_.size()) || local_slot < 0 ||
        local_slot >= local_slots_ || weights == nullptr || weights->size() != 3 * n) {
      return InvalidArgument("cpu expert backend: cannot adopt " +
                             std::to_string(weights ? weights->size() : 0) + " floats into slot " +
                             std::to_string(local_slot) + " of layer " +
                             std::to_string(layer_index) + " (want 3 x " + std::to_string(n) + ")");
    }
    slot_w_[layer_index][local_slot] = weights->data();
    adopted_[layer_index][local_slot] = std::move(weights);  // the old buffer goes here
    return Status::Ok();
  }

  Status Run(int layer_index, const float* input, const int32_t* slot_row_offsets,
             float* output) override {
    const int h = shape_.hidden, f = shape_.ffn;
    const size_t n = static_cast<size_t>(f) * h;
    int max_rows = 0;
    for (int s = 0; s < local_slots_; ++s) {
      max_rows = std::max(max_rows, slot_row_offsets[s + 1] - slot_row_offsets[s]);
    }
    // Grows to the largest group seen, then reused: no allocation in steady state.
    if (gate_.rows() < max_rows) {
      gate_.resize(max_rows, f);
      up_.resize(max_rows, f);
    }
    for (int s = 0; s < local_slots_; ++s) {
      const int begin = slot_row_offsets[s], rows = slot_row_offsets[s + 1] - begin;
      if (rows == 0) continue;
      ConstMap x(input + static_cast<int64_t>(begin) * h, rows, h);
      const float* adopted = slot_w_[layer_index][s];
      ConstMap w1(adopted ? adopted : w1_[layer_index].data() + n * s, f, h);
      ConstMap w3(adopted ? adopted + n : w3_[layer_index].data() + n * s, f, h);
      ConstMap w2(adopted ? adopted + 2 * n : w2_[layer_index].data() + n * s, h, f);
      Map g(gate_.data(), rows, f);
      Map u(up_.data(), rows, f);
      g.noalias() = x * w1.transpose();
      u.noalias() = x * w3.transpose();
      // SwiGLU: silu(g) * u, in place in g.
      g = (g.array() / (1.0f + (-g.array()).exp())) * u.array();
      Map y(output + static_cast<int64_t>(begin) * h, rows, h);
      y.noalias() = g * w2.transpose();
    }
    return Status::Ok();
  }

 private:
  ModelShape shape_;
  int local_slots_;
  std::vector<std::vector<float>> w1_, w3_, w2_;  // [layer][slot * ffn * hidden]
  // [layer][slot]: an adopted buffer (w1 | w3 | w2) and its data, or null for own storage.
  std::vector<std::vector<const float*>> slot_w_;
  std::vector<std::vector<std::shared_ptr<const std::vector<float>>>> adopted_;
  RowMajor gate_, up_;
};

}  // namespace

std::unique_ptr<ExpertBackend> MakeCpuExpertBackend(const ModelShape& shape, int num_layers,
                                                    int local_slots) {
  return std::make_unique<CpuExpertBackend>(shape, num_layers, local_slots);
}

}  // namespace grace
