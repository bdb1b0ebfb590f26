#include "agent/live_counters.h"

#include <algorithm>
#include <limits>
#include <vector>

namespace grace {

LiveCounters::LiveCounters(int num_layers, int num_experts, int slots_per_rank, int sample_every)
    : experts_(num_experts),
      slots_(slots_per_rank),
      sample_every_(std::max(1, sample_every)),
      pairs_per_layer_(static_cast<size_t>(num_experts) * (num_experts - 1) / 2),
      pairs_(std::make_unique<std::atomic<uint32_t>[]>(num_layers * pairs_per_layer_)),
      dispatch_(std::make_unique<std::atomic<uint64_t>[]>(num_layers * kFields)),
      slot_pairs_(
          std::make_unique<std::atomic<uint32_t>[]>(static_cast<size_t>(num_layers) * slots_)) {}

void LiveCounters::CountCoactivation(int layer, const int32_t* expert_ids, const int64_t* token_ids,
                                     int tokens, int top_k) {
  std::atomic<uint32_t>* pairs = pairs_.get() + layer * pairs_per_layer_;
  for (int t = 0; t < tokens; ++t) {
    if (token_ids[t] % sample_every_ != 0) continue;
    const int32_t* ids = expert_ids + static_cast<size_t>(t) * top_k;
    for (int i = 0; i < top_k; ++i) {
      for (int j = i + 1; j < top_k; ++j) {
        if (ids[i] == ids[j]) continue;
        const size_t p = PairIndex(std::min(ids[i], ids[j]), std::max(ids[i], ids[j]));
        pairs[p].fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
}

void LiveCounters::AddDispatch(int layer, const MeasuredDispatch& d) {
  std::atomic<uint64_t>* f = dispatch_.get() + layer * kFields;
  const int64_t values[kFields] = {d.tokens,
                                   d.sends.node,
                                   d.sends.remote,
                                   d.sends.cross_node,
                                   d.sends.node * d.token_bytes,
                                   d.sends.cross_node * d.token_bytes};
  for (int i = 0; i < kFields; ++i) {
    if (values[i] != 0) f[i].fetch_add(static_cast<uint64_t>(values[i]), std::memory_order_relaxed);
  }
  std::atomic<uint32_t>* s = slot_pairs_.get() + static_cast<size_t>(layer) * slots_;
  for (int i = 0; i < slots_; ++i) {
    if (d.slot_pairs[i] != 0) s[i].fetch_add(d.slot_pairs[i], std::memory_order_relaxed);
  }
}

void LiveCounters::TakePairs(int layer, std::span<uint64_t> sums) {
  std::atomic<uint32_t>* pairs = pairs_.get() + layer * pairs_per_layer_;
  for (size_t p = 0; p < pairs_per_layer_; ++p) {
    if (pairs[p].load(std::memory_order_relaxed) == 0) continue;
    sums[p] += pairs[p].exchange(0, std::memory_order_relaxed);
  }
}

DispatchCounts LiveCounters::TakeDispatch(int layer) {
  std::atomic<uint64_t>* f = dispatch_.get() + layer * kFields;
  uint64_t v[kFields];
  for (int i = 0; i < kFields; ++i) v[i] = f[i].exchange(0, std::memory_order_relaxed);
  DispatchCounts d{v[0], v[1], v[2], v[3], v[4], v[5], {}};
  d.slot_pairs.resize(slots_);
  std::atomic<uint32_t>* s = slot_pairs_.get() + static_cast<size_t>(layer) * slots_;
  for (int i = 0; i < slots_; ++i) d.slot_pairs[i] = s[i].exchange(0, std::memory_order_relaxed);
  return d;
}

void AppendTopPairs(int layer, std::span<const uint64_t> sums, int num_experts, int max_pairs,
                    LoadReport* report) {
  struct Entry {
    uint64_t count;
    int a, b;
  };
  std::vector<Entry> entries;
  uint64_t mass = 0;
  size_t p = 0;
  for (int a = 0; a < num_experts; ++a) {
    for (int b = a + 1; b < num_experts; ++b, ++p) {
      if (sums[p] == 0) continue;
      entries.push_back({sums[p], a, b});
      mass += sums[p];
    }
  }
  if (entries.empty()) return;
  const size_t keep = std::min(entries.size(), static_cast<size_t>(std::max(0, max_pairs)));
  // Stable order: highest count first, then the lower pair (a, b first, as scanned).
  auto higher = [](const Entry& x, const Entry& y) {
    return x.count != y.count ? x.count > y.count : (x.a != y.a ? x.a < y.a : x.b < y.b);
  };
  std::partial_sort(entries.begin(), entries.begin() + keep, entries.end(), higher);
  LoadReport::CoactivationLayer out;
  out.layer_index = static_cast<uint32_t>(layer);
  out.pairs.reserve(keep);
  uint64_t sent = 0;
  for (size_t i = 0; i < keep; ++i) {
    // A window's count above 2^32 - 1 is clipped, and the excess counted as dropped mass.
    const uint32_t count = static_cast<uint32_t>(
        std::min<uint64_t>(entries[i].count, std::numeric_limits<uint32_t>::max()));
    out.pairs.push_back(
        {static_cast<uint16_t>(entries[i].a), static_cast<uint16_t>(entries[i].b), count});
    sent += count;
  }
  out.sampled_mass = mass;
  out.dropped_mass = mass - sent;
  report->coactivation.push_back(std::move(out));
}

}  // namespace grace
