// MoeLayer: one rank's data path through one MoE layer, given each token's top-k experts:
//   route (replica per (token, expert)) -> permute (one record per destination rank) ->
//   dispatch (all-to-all-v) -> expert FFN (grouped over local slots) -> unpermute with the gate
//   weights -> combine (all-to-all-v back, summed per token) -> x += moe(x).
//
// Thread contract: owned by one data-path thread. Run() takes no lock and, once its buffers
// have grown to the largest step, allocates nothing. The caller reads the routing-table pointer
// once per step and passes the same table to every layer of that step.
//
// Each Run also measures what the dispatch sent and computed (measured()), by the cost model's
// rule (policy/cost_model.h; docs/live-signal.md): the agent reports it to graced.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "core/routing_table.h"
#include "kernels/dispatch_layout.h"
#include "kernels/expert_backend.h"
#include "migrate/transport.h"

namespace grace {

// Seconds spent in each phase, summed over calls.
struct StepTimes {
  double gate = 0, route = 0, permute = 0, dispatch = 0, ffn = 0, combine = 0;
  double total() const { return gate + route + permute + dispatch + ffn + combine; }
};

// Seconds since `t`, and moves `t` to now: one phase of a StepTimes.
inline double Since(std::chrono::steady_clock::time_point& t) {
  const auto now = std::chrono::steady_clock::now();
  const double s = std::chrono::duration<double>(now - t).count();
  t = now;
  return s;
}

// One Run's traffic and compute on its rank.
struct MeasuredDispatch {
  int64_t tokens = 0;  // homed on this rank
  DispatchSends sends;
  int64_t token_bytes = 0;          // hidden x the data path's element size (f32)
  std::vector<int32_t> slot_pairs;  // [local slot] (token, expert) pairs computed
};

class MoeLayer {
 public:
  MoeLayer(const ModelShape& shape, int slots_per_rank, int ranks_per_node, Transport* transport,
           ExpertBackend* backend);

  // x: [tokens x hidden], updated in place to x + sum_k w_k FFN_{e_k}(x). token_ids are global
  // (they seed the replica choice); expert_ids and gate_weights are [tokens x top_k].
  Status Run(const RoutingTable& table, int layer_index, uint64_t step, uint64_t route_seed,
             const int64_t* token_ids, const int32_t* expert_ids, const float* gate_weights,
             int tokens, float* x, StepTimes* times);

  // Bytes this rank sent to other ranks (dispatch + combine), summed over calls.
  uint64_t remote_bytes_sent() const { return remote_bytes_sent_; }
  // The last Run's.
  const MeasuredDispatch& measured() const { return measured_; }

 private:
  ModelShape shape_;
  int slots_per_rank_;
  int ranks_per_node_;
  Transport* transport_;
  ExpertBackend* backend_;
  DispatchLayout layout_;
  std::vector<SlotId> slots_;
  std::vector<float> send_, recv_, rows_in_, rows_out_, partial_, combined_, moe_out_;
  std::vector<uint64_t> send_records_, recv_records_;
  std::vector<size_t> send_bytes_, recv_bytes_;
  uint64_t remote_bytes_sent_ = 0;
  MeasuredDispatch measured_;
};

}  // namespace grace
