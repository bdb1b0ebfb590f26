// RoutingTable: for every layer, rank and expert, which replica slots a token on that rank may
// use, and with what probability. Immutable once built; carries an epoch that only grows.
//
// Locality tiers (DESIGN.md, "Locality-aware routing"): a token uses a replica on its own GPU if
// there is one (tier kLocal); else one on its own node (kSameNode); else a remote one (kRemote).
// The table stores, per (layer, rank, expert), only the candidates of the best tier present, with
// cumulative weights, so choosing a replica is one short scan. Weights come from policy/ (inverse
// predicted load); RoutingTable only checks and stores them.
//
// Thread contract: built on the control thread by RoutingTableBuilder, then shared as
// std::shared_ptr<const RoutingTable>; any number of data-path threads may read it with no lock.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/ids.h"
#include "core/placement.h"
#include "core/status.h"
#include "core/topology.h"

namespace grace {

enum class Tier : uint8_t { kLocal = 0, kSameNode = 1, kRemote = 2 };
const char* TierName(Tier tier);

struct RouteCandidate {
  SlotId slot = 0;
  RankId rank = 0;
  float cumulative_weight = 0;  // the last candidate's is exactly 1
};

class RoutingTable {
 public:
  Epoch epoch() const { return epoch_; }
  const Topology& topology() const { return topology_; }
  const Placement& placement() const { return placement_; }
  int num_layers() const { return placement_.num_layers(); }
  int num_experts() const { return placement_.num_experts; }

  std::span<const RouteCandidate> Candidates(int layer_index, RankId rank, ExpertId expert) const {
    const Entry& e = entries_[Index(layer_index, rank, expert)];
    return {candidates_.data() + e.offset, e.count};
  }
  Tier TierOf(int layer_index, RankId rank, ExpertId expert) const {
    return entries_[Index(layer_index, rank, expert)].tier;
  }

  // The slot a token on `rank` uses for `expert`, given `u` uniform in [0, 1).
  SlotId Choose(int layer_index, RankId rank, ExpertId expert, float u) const {
    const Entry& e = entries_[Index(layer_index, rank, expert)];
    const RouteCandidate* c = candidates_.data() + e.offset;
    uint32_t i = 0;
    while (i + 1 < e.count && u >= c[i].cumulative_weight) ++i;
    return c[i].slot;
  }

 private:
  friend class RoutingTableBuilder;
  struct Entry {
    uint32_t offset = 0;
    uint16_t count = 0;
    Tier tier = Tier::kRemote;
  };
  size_t Index(int layer_index, RankId rank, ExpertId expert) const {
    return (static_cast<size_t>(layer_index) * ranks_ + rank) * num_experts_ + expert;
  }

  Epoch epoch_ = 0;
  Topology topology_;
  Placement placement_;
  int ranks_ = 0;
  int num_experts_ = 0;
  std::vector<Entry> entries_;
  std::vector<RouteCandidate> candidates_;
};

// Builds a RoutingTable. By default every (layer, rank, expert) gets its best-tier replicas with
// equal weights; SetWeights overrides one entry. Build() checks everything and freezes the table.
class RoutingTableBuilder {
 public:
  // `placement` must be valid for `topology` (Build() re-checks).
  RoutingTableBuilder(Epoch epoch, const Topology& topology, Placement placement);

  // The best tier's replica slots of `expert` as seen from `rank` (ascending slot order).
  std::vector<SlotId> BestTierSlots(int layer_index, RankId rank, ExpertId expert) const;
  Tier BestTier(int layer_index, RankId rank, ExpertId expert) const;

  // Weights for the slots BestTierSlots() returns, same order; non-negative, not all zero; they
  // are normalised to sum to 1.
  void SetWeights(int layer_index, RankId rank, ExpertId expert, std::span<const double> weights);

  StatusOr<std::shared_ptr<const RoutingTable>> Build();

 private:
  Epoch epoch_;
  Topology topology_;
  Placement placement_;
  // replicas_[layer][expert] = slots holding it
  std::vector<std::vector<std::vector<SlotId>>> replicas_;
  // Overrides: flat index -> weights
  std::vector<std::vector<double>> weights_;
  Status deferred_error_;
};

}  // namespace grace
