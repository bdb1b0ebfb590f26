#include "kernels/slot_map.h"

#include <algorithm>
#include <string>

namespace grace {

SlotMap SlotMap::Identity(int num_layers, int local_slots) {
  SlotMap m;
  m.num_layers_ = num_layers;
  m.local_slots_ = local_slots;
  m.physical_.resize(static_cast<size_t>(num_layers) * local_slots);
  for (size_t i = 0; i < m.physical_.size(); ++i) {
    m.physical_[i] = static_cast<int32_t>(i % local_slots);
  }
  return m;
}

SlotMap SlotMap::With(int layer_index, int local_slot, int physical_slot) const {
  SlotMap m = *this;
  m.physical_[static_cast<size_t>(layer_index) * local_slots_ + local_slot] = physical_slot;
  return m;
}

Status SlotMap::Validate(int num_layers, int local_slots, int physical_slots) const {
  if (num_layers_ != num_layers || local_slots_ != local_slots) {
    return InvalidArgument("slot map of " + std::to_string(num_layers_) + " layers x " +
                           std::to_string(local_slots_) + " slots; the backend has " +
                           std::to_string(num_layers) + " x " + std::to_string(local_slots));
  }
  std::vector<bool> seen(physical_slots);
  for (int l = 0; l < num_layers; ++l) {
    std::fill(seen.begin(), seen.end(), false);
    for (int s = 0; s < local_slots; ++s) {
      const int p = physical(l, s);
      if (p < 0 || p >= physical_slots || seen[p]) {
        return InvalidArgument("slot map: layer " + std::to_string(l) + " slot " +
                               std::to_string(s) + " names physical slot " + std::to_string(p) +
                               " (out of " + std::to_string(physical_slots) + " or named twice)");
      }
      seen[p] = true;
    }
  }
  return Status::Ok();
}

SlotPool::SlotPool(int num_layers, int local_slots, int spare_slots)
    : num_layers_(num_layers),
      local_slots_(local_slots),
      spare_slots_(spare_slots),
      free_(num_layers) {
  for (auto& f : free_) {
    // Taken from the back: the lowest spare first.
    for (int p = local_slots + spare_slots - 1; p >= local_slots; --p) f.push_back(p);
  }
}

StatusOr<int> SlotPool::Acquire(int layer_index) {
  if (layer_index < 0 || layer_index >= num_layers_) {
    return InvalidArgument("slot pool: no layer " + std::to_string(layer_index));
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int>& f = free_[layer_index];
  if (f.empty()) {
    return FailedPrecondition("no free spare slot in layer " + std::to_string(layer_index) + " (" +
                              std::to_string(spare_slots_) +
                              " spare; raise [migration].spare_slots, or let graced run the "
                              "migration in rounds)");
  }
  const int p = f.back();
  f.pop_back();
  return p;
}

Status SlotPool::Release(int layer_index, int physical_slot) {
  if (layer_index < 0 || layer_index >= num_layers_ || physical_slot < 0 ||
      physical_slot >= physical_slots()) {
    return InvalidArgument("slot pool: no physical slot " + std::to_string(physical_slot) +
                           " in layer " + std::to_string(layer_index));
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int>& f = free_[layer_index];
  if (std::find(f.begin(), f.end(), physical_slot) != f.end()) {
    return FailedPrecondition("slot pool: physical slot " + std::to_string(physical_slot) +
                              " of layer " + std::to_string(layer_index) + " is already free");
  }
  f.push_back(physical_slot);
  return Status::Ok();
}

int SlotPool::free_slots(int layer_index) const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(free_[layer_index].size());
}

}  // namespace grace
