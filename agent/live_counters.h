// LiveCounters: one rank's co-activation and dispatch traffic since the agent's last
// LoadReport, written by the rank's data-path worker without a lock and taken by the control
// thread (agent/daemon_client.h) when it builds the report (docs/live-signal.md).
//
// Co-activation: every `sample_every`-th token by global token index (kernels/load_stats.h's
// rule) adds 1 to each unordered pair of distinct experts it chose, in one relaxed atomic per
// (layer, a < b): L x E (E - 1) / 2 x 4 bytes per rank, 24 KB at 3 layers x 64 experts and
// 7.6 MB at 58 x 256. Traffic: per layer, the MoE layer's MeasuredDispatch summed in relaxed
// atomics (6 + slots_per_rank counters). Nothing grows after construction.
//
// The control thread exchanges a counter with 0 only where a relaxed load sees it non-zero, so
// no increment is lost or counted twice and an idle counter costs one load per report.
//
//   // worker, per layer and step
//   live.CountCoactivation(layer, ids, token_ids, tokens, top_k);
//   live.AddDispatch(layer, moe_layer.measured());
//   // control thread, per report
//   live.TakePairs(layer, sums);  ...  AppendTopPairs(layer, sums, experts, max_pairs, &report);
//
// Thread contract: CountCoactivation and AddDispatch on the rank's worker only; Take* on the
// control thread only.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "agent/moe_layer.h"
#include "core/wire_protocol.h"

namespace grace {

class LiveCounters {
 public:
  LiveCounters(int num_layers, int num_experts, int slots_per_rank, int sample_every);

  int num_experts() const { return experts_; }
  int sample_every() const { return sample_every_; }
  // Unordered pairs of one layer: E (E - 1) / 2.
  size_t pairs_per_layer() const { return pairs_per_layer_; }
  // The index of pair (a, b), a < b, within its layer.
  size_t PairIndex(int a, int b) const {
    return static_cast<size_t>(a) * experts_ - static_cast<size_t>(a) * (a + 1) / 2 + (b - a - 1);
  }

  void CountCoactivation(int layer, const int32_t* expert_ids, const int64_t* token_ids, int tokens,
                         int top_k);
  void AddDispatch(int layer, const MeasuredDispatch& d);

  // Adds this rank's pair counts of `layer` into `sums` (pairs_per_layer() entries, at
  // PairIndex) and zeroes them.
  void TakePairs(int layer, std::span<uint64_t> sums);
  // This rank's traffic of `layer` since the last take, zeroing it.
  DispatchCounts TakeDispatch(int layer);

 private:
  static constexpr int kFields = 6;  // DispatchCounts' scalars, in its order

  int experts_, slots_, sample_every_;
  size_t pairs_per_layer_;
  std::unique_ptr<std::atomic<uint32_t>[]> pairs_;       // [layer][PairIndex]
  std::unique_ptr<std::atomic<uint64_t>[]> dispatch_;    // [layer][field]
  std::unique_ptr<std::atomic<uint32_t>[]> slot_pairs_;  // [layer][local slot]
};

// Appends layer `layer`'s entry to the report's co-activation section from the agent's summed
// pair counts: the `max_pairs` highest counts (ties: the lower pair index first), highest
// first, with the sampled mass and the mass dropped beyond them. Nothing when no pair was
// sampled.
void AppendTopPairs(int layer, std::span<const uint64_t> sums, int num_experts, int max_pairs,
                    LoadReport* report);

}  // namespace grace
