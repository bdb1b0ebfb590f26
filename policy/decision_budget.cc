// ReplacementDecider's sharing of an interval among layers (decision.h): the byte budget as a
// knapsack over each layer's acceptable changes, then the changes that ride on the interval's
// transfer, and the records of what was adopted.
#include <algorithm>

#include "policy/decision.h"

namespace grace {

std::vector<const ReplacementDecider::Candidate*> ReplacementDecider::AllocateBudget(
    const std::vector<LayerChoice>& choices, double unit_bytes) const {
  // Each layer's ladder: from no change, the acceptable changes on the upper hull of
  // (bytes, net benefit), so that every rung adds less net benefit per byte than the one before.
  struct Rung {
    size_t choice;
    int level;  // 1-based rung of its ladder
    const Candidate* candidate;
    double bytes = 0;  // added over the rung below
    double density = 0;
  };
  std::vector<Rung> rungs;
  for (size_t i = 0; i < choices.size(); ++i) {
    std::vector<const Candidate*> by_bytes;
    for (const Candidate& c : choices[i].acceptable) by_bytes.push_back(&c);
    std::stable_sort(by_bytes.begin(), by_bytes.end(), [](const Candidate* a, const Candidate* b) {
      return a->bytes != b->bytes ? a->bytes < b->bytes : a->net_ms > b->net_ms;
    });
    std::vector<const Candidate*> hull;
    auto slope = [&](double from_bytes, double from_net, const Candidate* to) {
      return (to->net_ms - from_net) /
             std::max(static_cast<double>(to->bytes) - from_bytes, unit_bytes);
    };
    for (const Candidate* c : by_bytes) {
      if (!hull.empty() && c->net_ms <= hull.back()->net_ms) continue;
      // Drop rungs that a later, larger change overtakes per byte.
      while (!hull.empty()) {
        const double lower_bytes = hull.size() > 1 ? hull[hull.size() - 2]->bytes : 0.0;
        const double lower_net = hull.size() > 1 ? hull[hull.size() - 2]->net_ms : 0.0;
        if (slope(lower_bytes, lower_net, c) < slope(lower_bytes, lower_net, hull.back())) break;
        hull.pop_back();
      }
      hull.push_back(c);
    }
    double bytes = 0, net = 0;
    for (size_t k = 0; k < hull.size(); ++k) {
      rungs.push_back({i, static_cast<int>(k + 1), hull[k], hull[k]->bytes - bytes,
                       slope(bytes, net, hull[k])});
      bytes = static_cast<double>(hull[k]->bytes);
      net = hull[k]->net_ms;
    }
  }
  std::stable_sort(rungs.begin(), rungs.end(),
                   [](const Rung& a, const Rung& b) { return a.density > b.density; });
  std::vector<const Candidate*> picks(choices.size(), nullptr);
  std::vector<int> level(choices.size(), 0);
  double used = 0;
  const double budget = static_cast<double>(options_.byte_budget);
  for (const Rung& r : rungs) {
    if (level[r.choice] != r.level - 1 || used + r.bytes > budget) continue;
    used += r.bytes;
    level[r.choice] = r.level;
    picks[r.choice] = r.candidate;
  }
  // The ladders skip changes under their hull: with the budget left, each layer in turn moves
  // up to its highest-net change that still fits.
  for (size_t i = 0; i < choices.size(); ++i) {
    const double held = picks[i] != nullptr ? static_cast<double>(picks[i]->bytes) : 0.0;
    for (const Candidate& a : choices[i].acceptable) {
      if (picks[i] != nullptr && a.net_ms <= picks[i]->net_ms) break;
      if (used - held + static_cast<double>(a.bytes) <= budget) {
        used += static_cast<double>(a.bytes) - held;
        picks[i] = &a;
        break;
      }
    }
  }
  return picks;
}

void ReplacementDecider::ShareTransfer(int64_t step, std::span<const LayerState> current,
                                       std::span<const LayerChoice* const> idle,
                                       MigrationLoad* load, Decision* decision) const {
  struct Option {
    const LayerChoice* choice;
    const Candidate* candidate;
    double gain_per_byte;
  };
  std::vector<Option> options;
  for (const LayerChoice* c : idle) {
    for (const Candidate& s : c->sharing) {
      options.push_back({c, &s, (c->base_ms - s.step_ms) / static_cast<double>(s.bytes)});
    }
  }
  std::stable_sort(options.begin(), options.end(), [](const Option& a, const Option& b) {
    return a.gain_per_byte > b.gain_per_byte;
  });
  std::vector<int> taken;
  for (const Option& o : options) {
    const LayerChoice& c = *o.choice;
    const Candidate& s = *o.candidate;
    if (std::ranges::find(taken, c.layer) != taken.end() ||
        decision->bytes + s.bytes > options_.byte_budget) {
      continue;
    }
    MigrationLoad with = *load;
    with.Add(current[c.layer].row, s.state.row, options_.expert_bytes);
    const double added_ms = with.TransferMs() - load->TransferMs();
    if (!Pays(s, c.base_ms, c.min_gain, added_ms)) continue;
    *load = std::move(with);
    taken.push_back(c.layer);
    Adopt(step, c, s, added_ms, s.reason + " (its copies share the interval's transfer)", decision);
  }
}

void ReplacementDecider::Adopt(int64_t step, const LayerChoice& choice, const Candidate& change,
                               double migration_ms, std::string reason, Decision* decision) const {
  DecisionRecord record;
  record.step = step;
  record.layer_index = choice.layer;
  record.kind = change.kind;
  record.reason = std::move(reason);
  record.predicted_step_ms_before = choice.base_ms;
  record.predicted_step_ms_after = change.step_ms;
  record.predicted_gain_ms = (choice.base_ms - change.step_ms) * horizon_;
  record.migration_ms = migration_ms;
  record.bytes = change.bytes;
  decision->bytes += change.bytes;
  decision->records.push_back(std::move(record));
  decision->changed_layers.push_back(choice.layer);
  decision->new_states.push_back(change.state);
}

}  // namespace grace
