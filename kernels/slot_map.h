// SlotMap and SlotPool: the physical expert slots behind a backend's logical slots.
//
// A backend (kernels/expert_backend.h) holds, per layer, local_slots + spare_slots physical
// slots. The slot map names, per layer, the physical slot each of its local_slots logical slots
// reads; it is immutable once built, and a backend's data path swaps one map for another in a
// pointer (a migration's switch copies nothing). The pool keeps the physical slots no published
// map names: a migration takes free ones to stage the new weights into before READY and returns
// the old ones once every rank serves the new epoch.
//
//   SlotPool pool(layers, local_slots, spare_slots);      // slots [local, local + spare) free
//   StatusOr<int> p = pool.Acquire(layer);                // a free physical slot, or
//   FailedPrecondition SlotMap next = current.With(layer, logical, *p);      // the map the switch
//   publishes pool.Release(layer, old_physical);                    // once no step can read it
//
// Thread contract: a SlotMap is immutable and read from any thread. SlotPool is thread-safe
// (one mutex); the data path never calls it.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "core/status.h"

namespace grace {

class SlotMap {
 public:
  SlotMap() = default;
  // Logical slot s of every layer reads physical slot s.
  static SlotMap Identity(int num_layers, int local_slots);

  int num_layers() const { return num_layers_; }
  int local_slots() const { return local_slots_; }
  int physical(int layer_index, int local_slot) const {
    return physical_[static_cast<size_t>(layer_index) * local_slots_ + local_slot];
  }
  // A copy with one entry changed.
  SlotMap With(int layer_index, int local_slot, int physical_slot) const;
  // Fails unless the shape matches and every entry is a distinct physical slot of a layer,
  // below `physical_slots`.
  Status Validate(int num_layers, int local_slots, int physical_slots) const;

 private:
  int num_layers_ = 0;
  int local_slots_ = 0;
  std::vector<int32_t> physical_;  // [layer][local slot]
};

class SlotPool {
 public:
  // Physical slots [0, local_slots) are in use (the identity map), the spares free.
  SlotPool(int num_layers, int local_slots, int spare_slots);

  int physical_slots() const { return local_slots_ + spare_slots_; }
  int spare_slots() const { return spare_slots_; }
  // A free physical slot of the layer; FailedPrecondition when the spares are all in use.
  StatusOr<int> Acquire(int layer_index);
  // Returns a slot taken by Acquire or named by a replaced map; fails on a slot already free.
  Status Release(int layer_index, int physical_slot);
  int free_slots(int layer_index) const;

 private:
  const int num_layers_, local_slots_, spare_slots_;
  mutable std::mutex mu_;
  std::vector<std::vector<int>> free_;  // [layer]: free physical slots, GUARDED_BY(mu_)
};

}  // namespace grace
