// The CPU expert backend: one Eigen GEMM triple per non-empty slot. Every physical slot is a
// shared buffer (w1 | w3 | w2): LoadSlot fills a new one, StageSlot adopts the caller's, so a
// spare slot costs a pointer and a migration's switch copies nothing.
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
using Buffer = std::shared_ptr<const std::vector<float>>;

class CpuExpertBackend final : public ExpertBackend {
 public:
  CpuExpertBackend(const ModelShape& shape, int num_layers, int local_slots, int spare_slots)
      : shape_(shape),
        local_slots_(local_slots),
        pool_(num_layers, local_slots, spare_slots),
        map_(std::make_shared<const SlotMap>(SlotMap::Identity(num_layers, local_slots))),
        slots_(num_layers, std::vector<Buffer>(local_slots + spare_slots)) {}

  const char* name() const override { return "cpu"; }

  Status LoadSlot(int layer_index, int local_slot, const float* w1, const float* w3,
                  const float* w2) override {
    if (layer_index < 0 || layer_index >= num_layers() || local_slot < 0 ||
        local_slot >= local_slots_) {
      return InvalidArgument("cpu expert backend: no slot " + std::to_string(local_slot) +
                             " in layer " + std::to_string(layer_index));
    }
    const size_t n = SlotFloats();
    auto w = std::make_shared<std::vector<float>>(3 * n);
    std::copy(w1, w1 + n, w->begin());
    std::copy(w3, w3 + n, w->begin() + n);
    std::copy(w2, w2 + n, w->begin() + 2 * n);
    slots_[layer_index][map_->physical(layer_index, local_slot)] = std::move(w);
    return Status::Ok();
  }

  StatusOr<int> StageSlot(int layer_index, Buffer weights) override {
    if (layer_index < 0 || layer_index >= num_layers() || weights == nullptr ||
        weights->size() != 3 * SlotFloats()) {
      return InvalidArgument("cpu expert backend: cannot stage " +
                             std::to_string(weights ? weights->size() : 0) + " floats into layer " +
                             std::to_string(layer_index) + " (want 3 x " +
                             std::to_string(SlotFloats()) + ")");
    }
    GRACE_ASSIGN_OR_RETURN(const int p, pool_.Acquire(layer_index));
    // A free slot: no published map names it, so Run does not read this element.
    slots_[layer_index][p] = std::move(weights);
    return p;
  }

  Status FinishStaging() override { return Status::Ok(); }  // adopted in place

  Status UseSlotMap(std::shared_ptr<const SlotMap> map) override {
    if (map == nullptr) return InvalidArgument("cpu expert backend: null slot map");
    GRACE_RETURN_IF_ERROR(map->Validate(num_layers(), local_slots_, pool_.physical_slots()));
    map_ = std::move(map);
    return Status::Ok();
  }

  Status ReleaseSlot(int layer_index, int physical_slot) override {
    // The buffer stays until the slot is staged again: whoever releases it may run on another
    // thread than Run, and the buffer is shared with the agent's weight sources anyway.
    return pool_.Release(layer_index, physical_slot);
  }

  int free_slots(int layer_index) const override { return pool_.free_slots(layer_index); }

  Status Run(int layer_index, const float* input, const int32_t* slot_row_offsets,
             float* output) override {
    const int h = shape_.hidden, f = shape_.ffn;
    const size_t n = SlotFloats();
    int max_rows = 0;
    for (int s = 0; s < local_slots_; ++s) {
      max_rows = std::max(max_rows, slot_row_offsets[s + 1] - slot_row_offsets[s]);
    }
    // Grows to the largest group seen, then reused: no allocation in steady state.
    if (gate_.rows() < max_rows) {
      gate_.resize(max_rows, f);
      up_.resize(max_rows, f);
    }
    const SlotMap& map = *map_;
    for (int s = 0; s < local_slots_; ++s) {
      const int begin = slot_row_offsets[s], rows = slot_row_offsets[s + 1] - begin;
      if (rows == 0) continue;
      Map y(output + static_cast<int64_t>(begin) * h, rows, h);
      const std::vector<float>* w = slots_[layer_index][map.physical(layer_index, s)].get();
      if (w == nullptr) {  // never loaded: zero weights, zero output
        y.setZero();
        continue;
      }
      ConstMap x(input + static_cast<int64_t>(begin) * h, rows, h);
      ConstMap w1(w->data(), f, h);
      ConstMap w3(w->data() + n, f, h);
      ConstMap w2(w->data() + 2 * n, h, f);
      Map g(gate_.data(), rows, f);
      Map u(up_.data(), rows, f);
      g.noalias() = x * w1.transpose();
      u.noalias() = x * w3.transpose();
      // SwiGLU: silu(g) * u, in place in g.
      g = (g.array() / (1.0f + (-g.array()).exp())) * u.array();
      y.noalias() = g * w2.transpose();
    }
    return Status::Ok();
  }

 private:
  int num_layers() const { return static_cast<int>(slots_.size()); }
  size_t SlotFloats() const { return static_cast<size_t>(shape_.ffn) * shape_.hidden; }

  ModelShape shape_;
  int local_slots_;
  SlotPool pool_;
  std::shared_ptr<const SlotMap> map_;  // the published map; the data path's own
  // [layer][physical slot]: w1 | w3 | w2, null when never written. The data path reads the
  // elements map_ names; the staging thread writes free ones.
  std::vector<std::vector<Buffer>> slots_;
  RowMajor gate_, up_;
};

}  // namespace

std::unique_ptr<ExpertBackend> MakeCpuExpertBackend(const ModelShape& shape, int num_layers,
                                                    int local_slots, int spare_slots) {
  return std::make_unique<CpuExpertBackend>(shape, num_layers, local_slots, spare_slots);
}

}  // namespace grace
