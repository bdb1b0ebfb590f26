#include "core/routing_table.h"

#include <cmath>
#include <limits>

namespace grace {

const char* TierName(Tier tier) {
  switch (tier) {
    case Tier::kLocal: return "local";
    case Tier::kSameNode: return "same-node";
    case Tier::kRemote: return "remote";
  }
  return "?";
}

RoutingTableBuilder::RoutingTableBuilder(Epoch epoch, const Topology& topology, Placement placement)
    : epoch_(epoch), topology_(topology), placement_(std::move(placement)) {
  deferred_error_ = placement_.Validate(topology_);
  if (!deferred_error_.ok()) return;
  const int layers = placement_.num_layers();
  const int experts = placement_.num_experts;
  replicas_.assign(layers, std::vector<std::vector<SlotId>>(experts));
  for (int li = 0; li < layers; ++li) {
    const auto& row = placement_.physical_to_logical[li];
    for (SlotId s = 0; s < static_cast<SlotId>(row.size()); ++s) {
      if (row[s] != kEmptySlot) replicas_[li][row[s]].push_back(s);
    }
  }
  weights_.resize(static_cast<size_t>(layers) * topology_.ranks() * experts);
}

Tier RoutingTableBuilder::BestTier(int layer_index, RankId rank, ExpertId expert) const {
  Tier best = Tier::kRemote;
  for (SlotId s : replicas_[layer_index][expert]) {
    RankId r = topology_.RankOfSlot(s);
    if (r == rank) return Tier::kLocal;
    if (topology_.NodeOfRank(r) == topology_.NodeOfRank(rank)) best = Tier::kSameNode;
  }
  return best;
}

std::vector<SlotId> RoutingTableBuilder::BestTierSlots(int layer_index, RankId rank,
                                                       ExpertId expert) const {
  const Tier best = BestTier(layer_index, rank, expert);
  std::vector<SlotId> out;
  for (SlotId s : replicas_[layer_index][expert]) {
    RankId r = topology_.RankOfSlot(s);
    Tier t = r == rank                                               ? Tier::kLocal
             : topology_.NodeOfRank(r) == topology_.NodeOfRank(rank) ? Tier::kSameNode
                                                                     : Tier::kRemote;
    if (t == best) out.push_back(s);
  }
  return out;
}

void RoutingTableBuilder::SetWeights(int layer_index, RankId rank, ExpertId expert,
                                     std::span<const double> weights) {
  if (!deferred_error_.ok()) return;
  const size_t idx =
      (static_cast<size_t>(layer_index) * topology_.ranks() + rank) * placement_.num_experts +
      expert;
  weights_[idx].assign(weights.begin(), weights.end());
}

StatusOr<std::shared_ptr<const RoutingTable>> RoutingTableBuilder::Build() {
  GRACE_RETURN_IF_ERROR(deferred_error_);
  auto table = std::make_shared<RoutingTable>();
  table->epoch_ = epoch_;
  table->topology_ = topology_;
  table->ranks_ = topology_.ranks();
  table->num_experts_ = placement_.num_experts;
  const int layers = placement_.num_layers();
  table->entries_.resize(weights_.size());
  for (int li = 0; li < layers; ++li) {
    for (RankId r = 0; r < topology_.ranks(); ++r) {
      for (ExpertId e = 0; e < placement_.num_experts; ++e) {
        const size_t idx = table->Index(li, r, e);
        std::vector<SlotId> slots = BestTierSlots(li, r, e);
        std::vector<double> w = weights_[idx];
        const std::string where = "routing table layer " +
                                  std::to_string(placement_.layer_ids[li]) + ", rank " +
                                  std::to_string(r) + ", expert " + std::to_string(e);
        if (w.empty()) w.assign(slots.size(), 1.0);
        if (w.size() != slots.size()) {
          return InvalidArgument(where + ": " + std::to_string(w.size()) + " weights for " +
                                 std::to_string(slots.size()) + " replicas");
        }
        double sum = 0;
        for (double x : w) {
          if (!(x >= 0) || !std::isfinite(x))
            return InvalidArgument(where + ": negative or non-finite weight");
          sum += x;
        }
        if (!(sum > 0)) return InvalidArgument(where + ": weights sum to zero");
        if (slots.size() > std::numeric_limits<uint16_t>::max()) {
          return InvalidArgument(where + ": too many replicas");
        }
        RoutingTable::Entry& entry = table->entries_[idx];
        entry.offset = static_cast<uint32_t>(table->candidates_.size());
        entry.count = static_cast<uint16_t>(slots.size());
        entry.tier = BestTier(li, r, e);
        double acc = 0;
        for (size_t i = 0; i < slots.size(); ++i) {
          acc += w[i] / sum;
          float cum = i + 1 == slots.size() ? 1.0f : static_cast<float>(acc);
          table->candidates_.push_back({slots[i], topology_.RankOfSlot(slots[i]), cum});
        }
      }
    }
  }
  table->placement_ = std::move(placement_);
  return std::shared_ptr<const RoutingTable>(std::move(table));
}

}  // namespace grace
