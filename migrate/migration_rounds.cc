#include "migrate/migration_rounds.h"

#include <algorithm>

namespace grace {
namespace {

struct Change {
  int layer = 0;
  SlotId slot = 0;
  bool done = false;
};

// One round's working state: the placement it builds, replica counts and spares left.
struct Round {
  Placement next;
  std::vector<std::vector<int>> counts;  // [layer][expert]
  std::vector<std::vector<int>> budget;  // [layer][rank]; INT32_MAX: unlimited
  int spr = 1;

  int Cost(const Placement& to, const Change& c) const {
    return to.physical_to_logical[c.layer][c.slot] == kEmptySlot ? 0 : 1;
  }
  bool Affords(const Placement& to, const Change& c, int extra = 0) const {
    return budget[c.layer][c.slot / spr] >= Cost(to, c) + extra;
  }
  // Whether the expert the slot holds now keeps a replica once it changes.
  bool Safe(const Change& c) const {
    const ExpertId old = next.physical_to_logical[c.layer][c.slot];
    return old == kEmptySlot || counts[c.layer][old] > 1;
  }
  void Apply(const Placement& to, Change& c) {
    ExpertId& cell = next.physical_to_logical[c.layer][c.slot];
    if (cell != kEmptySlot) --counts[c.layer][cell];
    budget[c.layer][c.slot / spr] -= Cost(to, c);
    cell = to.physical_to_logical[c.layer][c.slot];
    if (cell != kEmptySlot) ++counts[c.layer][cell];
    c.done = true;
  }
};

}  // namespace

int NewSlotsOnRank(const Topology& topology, const Placement& from, const Placement& to,
                   int layer_index, RankId rank) {
  const int spr = topology.slots_per_gpu;
  int n = 0;
  for (SlotId s = rank * spr; s < (rank + 1) * spr; ++s) {
    const ExpertId e = to.physical_to_logical[layer_index][s];
    if (e != kEmptySlot && e != from.physical_to_logical[layer_index][s]) ++n;
  }
  return n;
}

MigrationRounds PlanMigrationRounds(const Topology& topology, const Placement& from,
                                    const Placement& to, const std::vector<int>& spare_per_rank) {
  MigrationRounds out;
  const int ranks = topology.ranks(), layers = from.num_layers();
  auto spare = [&](RankId r) {
    const int s = r < static_cast<int>(spare_per_rank.size()) ? spare_per_rank[r] : -1;
    return s < 0 ? INT32_MAX : s;
  };
  bool fits = true;
  for (int l = 0; l < layers && fits; ++l) {
    for (RankId r = 0; r < ranks && fits; ++r) {
      fits = NewSlotsOnRank(topology, from, to, l, r) <= spare(r);
    }
  }
  if (fits) {
    out.rounds.push_back(to);
    return out;
  }
  std::vector<Change> changes;
  for (int l = 0; l < layers; ++l) {
    for (SlotId s = 0; s < topology.total_slots(); ++s) {
      if (from.physical_to_logical[l][s] != to.physical_to_logical[l][s]) {
        changes.push_back({l, s, false});
      }
    }
  }
  Placement current = from;
  size_t left = changes.size();
  while (left > 0) {
    Round round{current, {}, {}, topology.slots_per_gpu};
    for (int l = 0; l < layers; ++l) {
      round.counts.push_back(current.ReplicaCounts(l));
      round.budget.emplace_back(ranks);
      for (RankId r = 0; r < ranks; ++r) round.budget[l][r] = spare(r);
    }
    size_t taken = 0;
    for (bool progress = true; progress;) {
      progress = false;
      for (Change& c : changes) {
        if (c.done || !round.Affords(to, c) || !round.Safe(c)) continue;
        round.Apply(to, c);
        ++taken;
        progress = true;
      }
      if (progress) continue;
      // Stalled: take an unsafe change together with one that brings its expert back.
      for (Change& c : changes) {
        if (c.done || !round.Affords(to, c)) continue;
        const ExpertId lost = round.next.physical_to_logical[c.layer][c.slot];
        for (Change& d : changes) {
          if (d.done || &d == &c || d.layer != c.layer ||
              to.physical_to_logical[d.layer][d.slot] != lost) {
            continue;
          }
          const bool same_budget =
              d.slot / topology.slots_per_gpu == c.slot / topology.slots_per_gpu;
          if (!round.Affords(to, d, same_budget ? round.Cost(to, c) : 0)) continue;
          Round trial = round;
          Change tentative = c;
          trial.Apply(to, tentative);
          if (!trial.Safe(d)) continue;
          round.Apply(to, c);
          round.Apply(to, d);
          taken += 2;
          progress = true;
          break;
        }
        if (progress) break;
      }
    }
    if (taken == 0) {
      out.fell_back = true;
      out.rounds.push_back(to);
      return out;
    }
    left -= taken;
    current = round.next;
    out.rounds.push_back(left == 0 ? to : current);
  }
  return out;
}

}  // namespace grace
