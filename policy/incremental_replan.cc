#include "policy/incremental_replan.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <set>
#include <tuple>

#include "policy/decision.h"
#include "policy/locality_routing.h"

namespace grace {
namespace {

// One change to a row: swap slots a and b (b >= 0), or put `expert` into slot a (b < 0; a new
// replica over an empty slot or a spare copy, or kEmptySlot to drop a spare).
struct Move {
  SlotId a = -1;
  SlotId b = -1;
  ExpertId expert = kEmptySlot;
  double proxy = 0;  // higher first, within its source
};

class Search {
 public:
  // Starts from `start` (a row); bytes and transfer are counted from `current`.
  Search(std::span<const ExpertId> current, std::span<const ExpertId> start,
         const LayerStats& forecast, const Topology& topology, const CostParams& params,
         const IncrementalReplanOptions& options)
      : current_(current),
        forecast_(forecast),
        t_(topology),
        params_(params),
        options_(options),
        row_(start.begin(), start.end()),
        copies_(forecast.num_experts(), 0) {
    for (ExpertId e : row_) {
      if (e != kEmptySlot) ++copies_[e];
    }
    step_ms_ = Evaluate(row_, &cost_, &routing_);
    guided_ms_ = Guided(cost_);
    UpdateSlotLoads();
    transfer_ms_ = Transfer(row_, &bytes_);
  }

  double step_ms() const { return step_ms_; }
  double transfer_ms() const { return transfer_ms_; }
  uint64_t bytes() const { return bytes_; }

  const std::vector<ExpertId>& row() const { return row_; }

  // Chooses and applies the best paying move; false when none pays.
  bool Step(std::span<const ExpertId> target, IncrementalStep* out) {
    std::vector<Move> moves = Candidates(target);
    const double horizon = std::max(1, options_.horizon_steps);
    double best_score = 0;
    const Move* best = nullptr;
    std::vector<ExpertId> best_row;
    LayerCost best_cost;
    LayerRouting best_routing;
    double best_ms = 0, best_guided = 0, best_transfer = 0;
    uint64_t best_bytes = 0;
    for (const Move& m : moves) {
      std::vector<ExpertId> next = row_;
      Apply(m, &next);
      uint64_t bytes = 0;
      const double transfer = Transfer(next, &bytes);
      if (options_.byte_budget > 0 && bytes > options_.byte_budget) continue;
      LayerCost cost;
      LayerRouting routing;
      const double ms = Evaluate(next, &cost, &routing);
      const double guided = Guided(cost);
      const double gain = (guided_ms_ - guided) * horizon;
      const double added = transfer - transfer_ms_;
      // The move must pay the transfer time it adds (or save more transfer than the gain it
      // gives up, when undoing a move), with margin, and change something real.
      const double value = gain - options_.gain_to_cost_ratio * added;
      if (value <= 1e-6 * guided_ms_ * horizon) continue;
      // Gain per expert copied (a move that copies nothing new counts as one copy).
      const double copies = std::max<double>(
          1.0, std::abs(static_cast<double>(bytes) - static_cast<double>(bytes_)) /
                   static_cast<double>(std::max<uint64_t>(1, options_.expert_bytes)));
      const double score = value / copies;
      if (score > best_score) {
        best_score = score;
        best = &m;
        best_row = std::move(next);
        best_cost = std::move(cost);
        best_routing = std::move(routing);
        best_ms = ms;
        best_guided = guided;
        best_transfer = transfer;
        best_bytes = bytes;
      }
    }
    if (best == nullptr) return false;
    out->move = Describe(*best);
    for (ExpertId e : row_) {
      if (e != kEmptySlot) --copies_[e];
    }
    row_ = std::move(best_row);
    for (ExpertId e : row_) {
      if (e != kEmptySlot) ++copies_[e];
    }
    cost_ = std::move(best_cost);
    routing_ = std::move(best_routing);
    UpdateSlotLoads();
    step_ms_ = best_ms;
    guided_ms_ = best_guided;
    transfer_ms_ = best_transfer;
    bytes_ = best_bytes;
    out->row = row_;
    out->step_ms = step_ms_;
    out->transfer_ms = transfer_ms_;
    out->bytes = bytes_;
    return true;
  }

 private:
  double Evaluate(const std::vector<ExpertId>& row, LayerCost* cost, LayerRouting* routing) const {
    *routing = LocalityRouting(row, forecast_.load, t_);
    *cost = EvaluateLayer(forecast_, *routing, t_, params_);
    return cost->layer_ms;
  }
  // What the search climbs: the layer time, plus (guided) the compute of the next hottest GPUs,
  // the i-th weighted 2^-i (IncrementalReplanOptions::guided).
  double Guided(const LayerCost& cost) const {
    if (!options_.guided || cost.rank_load.empty()) return cost.layer_ms;
    std::vector<double>& loads = guide_scratch_;
    loads = cost.rank_load;
    const size_t top = std::min<size_t>(loads.size(), kGuidedRanks);
    std::partial_sort(loads.begin(), loads.begin() + top, loads.end(), std::greater<>());
    if (loads[0] <= 0) return cost.layer_ms;
    const double ms_per_pair = cost.compute_ms / loads[0];
    double rest = 0, weight = 1.0;
    for (size_t i = 1; i < top; ++i) {
      weight *= 0.5;
      rest += weight * loads[i];
    }
    return cost.layer_ms + ms_per_pair * rest;
  }
  // Each slot's (token, expert) pairs under the current routing.
  void UpdateSlotLoads() {
    slot_load_.assign(row_.size(), 0.0);
    const double ranks = t_.ranks();
    for (ExpertId e = 0; e < routing_.num_experts(); ++e) {
      std::span<const SlotId> slots = routing_.Replicas(e);
      for (int v = 0; v < routing_.NumViews(e); ++v) {
        const double share = forecast_.load[e] / ranks * routing_.ViewRanks(e, v);
        std::span<const double> p = routing_.ViewProbabilities(e, v);
        for (size_t i = 0; i < slots.size(); ++i) slot_load_[slots[i]] += share * p[i];
      }
    }
    rank_now_.assign(t_.ranks(), 0.0);
    for (SlotId s = 0; s < static_cast<SlotId>(row_.size()); ++s) {
      rank_now_[t_.RankOfSlot(s)] += slot_load_[s];
    }
    peak_now_ = std::max(1e-12, *std::max_element(rank_now_.begin(), rank_now_.end()));
  }

  // How much a move evens the GPUs' compute, cheaply: the drop in the sum over GPUs of
  // (load / hottest load)^8, with each moved copy carrying its slot's load, a new copy taking an
  // even share of its expert and a removed copy's load spread over the expert's others. Smooth
  // where the hottest GPU alone is flat, and blind to traffic: it only orders the moves that are
  // then evaluated exactly.
  double Balance(const Move& m) const {
    std::vector<std::pair<RankId, double>>& d = proxy_scratch_;
    d.clear();
    auto add = [&](RankId r, double delta) {
      for (auto& [rank, sum] : d) {
        if (rank == r) {
          sum += delta;
          return;
        }
      }
      d.emplace_back(r, delta);
    };
    auto spread = [&](ExpertId e, SlotId except, double load) {  // over e's other copies
      if (e == kEmptySlot || copies_[e] < 2) return;
      for (SlotId s : routing_.Replicas(e)) {
        if (s != except) add(t_.RankOfSlot(s), load / (copies_[e] - 1));
      }
    };
    if (m.b >= 0) {
      add(t_.RankOfSlot(m.a), slot_load_[m.b] - slot_load_[m.a]);
      add(t_.RankOfSlot(m.b), slot_load_[m.a] - slot_load_[m.b]);
    } else {
      const ExpertId y = row_[m.a];
      add(t_.RankOfSlot(m.a), -slot_load_[m.a]);
      spread(y, m.a, slot_load_[m.a]);
      if (m.expert != kEmptySlot) {
        const double share = forecast_.load[m.expert] / (copies_[m.expert] + 1);
        add(t_.RankOfSlot(m.a), share);
        for (SlotId s : routing_.Replicas(m.expert)) {
          add(t_.RankOfSlot(s), -slot_load_[s] / (copies_[m.expert] + 1));
        }
      }
    }
    double drop = 0;
    for (const auto& [r, delta] : d) {
      drop += std::pow(rank_now_[r] / peak_now_, 8) -
              std::pow(std::max(0.0, rank_now_[r] + delta) / peak_now_, 8);
    }
    return drop;
  }

  double Transfer(const std::vector<ExpertId>& row, uint64_t* bytes) const {
    MigrationLoad load(t_);
    load.Add(current_, row, options_.expert_bytes);
    *bytes = load.bytes;
    return load.TransferMs();
  }
  bool OnRank(RankId r, ExpertId e) const {
    for (int i = 0; i < t_.slots_per_gpu; ++i) {
      if (row_[r * t_.slots_per_gpu + i] == e) return true;
    }
    return false;
  }
  double PerReplica(ExpertId e) const {
    return e == kEmptySlot ? 0.0 : forecast_.load[e] / std::max(1, copies_[e]);
  }
  bool SwapValid(SlotId a, SlotId b) const {
    const ExpertId ea = row_[a], eb = row_[b];
    const RankId ra = t_.RankOfSlot(a), rb = t_.RankOfSlot(b);
    if (ra == rb || ea == eb) return false;
    if (ea != kEmptySlot && OnRank(rb, ea)) return false;
    if (eb != kEmptySlot && OnRank(ra, eb)) return false;
    return true;
  }
  bool SetValid(SlotId s, ExpertId x) const {
    const ExpertId y = row_[s];
    if (x == y) return false;
    if (y != kEmptySlot && copies_[y] < 2) return false;  // the last copy of y stays
    const int cap = options_.max_replicas_per_expert;
    if (x != kEmptySlot && cap > 0 && copies_[x] >= cap) return false;
    return x == kEmptySlot || !OnRank(t_.RankOfSlot(s), x);
  }
  static void Apply(const Move& m, std::vector<ExpertId>* row) {
    if (m.b >= 0) {
      std::swap((*row)[m.a], (*row)[m.b]);
    } else {
      (*row)[m.a] = m.expert;
    }
  }
  std::string Describe(const Move& m) const {
    auto name = [](ExpertId e) {
      return e == kEmptySlot ? std::string("empty") : std::to_string(e);
    };
    if (m.b >= 0) {
      return name(row_[m.a]) + "@GPU" + std::to_string(t_.RankOfSlot(m.a)) + "<->" +
             name(row_[m.b]) + "@GPU" + std::to_string(t_.RankOfSlot(m.b));
    }
    if (m.expert == kEmptySlot) {
      return "drop spare " + name(row_[m.a]) + "@GPU" + std::to_string(t_.RankOfSlot(m.a));
    }
    return "replica " + name(m.expert) + "@GPU" + std::to_string(t_.RankOfSlot(m.a)) +
           (row_[m.a] == kEmptySlot ? "" : " over spare " + name(row_[m.a]));
  }

  // A spare slot of rank r a new replica may take: empty first, else the copy of an expert with
  // several copies and the lowest load per replica. -1 if none.
  SlotId SpareSlot(RankId r) const {
    SlotId best = -1;
    for (int i = 0; i < t_.slots_per_gpu; ++i) {
      const SlotId s = r * t_.slots_per_gpu + i;
      const ExpertId e = row_[s];
      if (e == kEmptySlot) return s;
      if (copies_[e] < 2) continue;
      if (best < 0 || PerReplica(e) < PerReplica(row_[best])) best = s;
    }
    return best;
  }

  std::vector<Move> Candidates(std::span<const ExpertId> target) const {
    const int budget = std::max(4, options_.evaluations_per_round);
    const SlotId slots = static_cast<SlotId>(row_.size());
    std::vector<Move> toward, swaps, replicas;

    // Toward the target: slot s takes target[s]; its expert goes where target[s] was, unless it
    // is a spare copy (then it is simply replaced).
    if (target.size() == row_.size()) {
      for (SlotId s = 0; s < slots; ++s) {
        const ExpertId x = target[s], y = row_[s];
        if (x == y) continue;
        if (x == kEmptySlot) {
          if (SetValid(s, kEmptySlot)) toward.push_back({s, -1, kEmptySlot, PerReplica(y)});
          continue;
        }
        const double weight = forecast_.load[x] + (y == kEmptySlot ? 0.0 : forecast_.load[y]);
        if (SetValid(s, x) && (y == kEmptySlot || target[s] != y)) {
          toward.push_back({s, -1, x, weight});
          continue;
        }
        // Swap with a copy of x that the target does not keep where it is.
        SlotId from = -1;
        for (SlotId j = 0; j < slots; ++j) {
          if (row_[j] != x || j == s || !SwapValid(s, j)) continue;
          if (from < 0 || (target[j] != x && target[from] == x)) from = j;
        }
        if (from >= 0) toward.push_back({s, from, kEmptySlot, weight});
      }
    }

    // Off the most loaded GPU: the exchanges that lower its load most on the per-replica proxy.
    const std::vector<double>& rank_load = cost_.rank_load;
    if (!rank_load.empty()) {
      std::vector<RankId> hottest(t_.ranks());
      std::iota(hottest.begin(), hottest.end(), 0);
      const size_t hot_n = std::min<size_t>(hottest.size(), options_.guided ? kGuidedHotRanks : 1);
      std::partial_sort(hottest.begin(), hottest.begin() + hot_n, hottest.end(),
                        [&](RankId a, RankId b) { return rank_load[a] > rank_load[b]; });
      for (size_t h = 0; h < hot_n; ++h) {
        const RankId hot = hottest[h];
        for (int i = 0; i < t_.slots_per_gpu; ++i) {
          const SlotId a = hot * t_.slots_per_gpu + i;
          if (row_[a] == kEmptySlot) continue;
          for (SlotId b = 0; b < slots; ++b) {
            if (t_.RankOfSlot(b) == hot || !SwapValid(a, b)) continue;
            const double delta = PerReplica(row_[a]) - PerReplica(row_[b]);
            if (delta <= 0) continue;
            const double peak =
                std::max(rank_load[hot] - delta, rank_load[t_.RankOfSlot(b)] + delta);
            if (peak < rank_load[hot]) swaps.push_back({a, b, kEmptySlot, rank_load[hot] - peak});
          }
        }
      }
      // New replicas of the experts with the highest load per replica, on the least loaded GPU
      // without one, and on the least loaded GPU of each node without one.
      std::vector<ExpertId> hot_experts(copies_.size());
      std::iota(hot_experts.begin(), hot_experts.end(), 0);
      const size_t top = std::min<size_t>(4, hot_experts.size());
      std::partial_sort(hot_experts.begin(), hot_experts.begin() + top, hot_experts.end(),
                        [&](ExpertId a, ExpertId b) { return PerReplica(a) > PerReplica(b); });
      std::vector<RankId> by_load(t_.ranks());
      std::iota(by_load.begin(), by_load.end(), 0);
      std::sort(by_load.begin(), by_load.end(),
                [&](RankId a, RankId b) { return rank_load[a] < rank_load[b]; });
      for (size_t i = 0; i < top; ++i) {
        const ExpertId e = hot_experts[i];
        std::vector<char> node_has(t_.nodes, 0);
        for (SlotId s = 0; s < slots; ++s) {
          if (row_[s] == e) node_has[t_.NodeOfSlot(s)] = 1;
        }
        bool coolest = false;
        for (RankId r : by_load) {
          const SlotId s = SpareSlot(r);
          if (s < 0 || !SetValid(s, e)) continue;
          if (!coolest || !node_has[t_.NodeOfRank(r)]) {
            replicas.push_back({s, -1, e, PerReplica(e)});
            node_has[t_.NodeOfRank(r)] = 1;
            coolest = true;
          }
        }
      }
    }

    // A few replicas and swaps, then the target's moves, then whatever room is left.
    auto by_proxy = [](const Move& a, const Move& b) { return a.proxy > b.proxy; };
    std::stable_sort(toward.begin(), toward.end(), by_proxy);
    std::stable_sort(swaps.begin(), swaps.end(), by_proxy);
    std::stable_sort(replicas.begin(), replicas.end(), by_proxy);
    std::vector<Move> out;
    std::set<std::tuple<SlotId, SlotId, ExpertId>> seen;
    auto take = [&](const std::vector<Move>& from, size_t* cursor, size_t count) {
      const size_t limit = std::min(out.size() + count, static_cast<size_t>(budget));
      for (; *cursor < from.size() && out.size() < limit; ++*cursor) {
        const Move& m = from[*cursor];
        const SlotId lo = m.b >= 0 ? std::min(m.a, m.b) : m.a;
        const SlotId hi = m.b >= 0 ? std::max(m.a, m.b) : -1;
        if (seen.insert({lo, hi, m.expert}).second) out.push_back(m);
      }
    };
    // A share of the budget: the moves that even the GPUs most on the balance proxy, from every
    // source (the per-source proxies above rank moves of one kind only, and poorly: a move's
    // exact gain hardly follows them). The proxy sees compute only, so its share is compute's
    // share of the layer time.
    const double compute_share = cost_.layer_ms > 0 ? cost_.compute_ms / cost_.layer_ms : 0.0;
    const size_t balance_share = static_cast<size_t>(budget * compute_share);
    if (balance_share > 0) {
      std::vector<Move> all;
      all.reserve(toward.size() + swaps.size() + replicas.size());
      for (const std::vector<Move>* from : {&toward, &swaps, &replicas}) {
        for (const Move& m : *from) {
          all.push_back(m);
          all.back().proxy = Balance(m);
        }
      }
      std::stable_sort(all.begin(), all.end(), by_proxy);
      size_t at_all = 0;
      take(all, &at_all, balance_share);
    }
    size_t at_toward = 0, at_swaps = 0, at_replicas = 0;
    take(replicas, &at_replicas, budget / 8 + 1);
    take(swaps, &at_swaps, budget / 4);
    take(toward, &at_toward, budget);
    take(swaps, &at_swaps, budget);
    take(replicas, &at_replicas, budget);
    return out;
  }

  std::span<const ExpertId> current_;
  const LayerStats& forecast_;
  const Topology& t_;
  const CostParams& params_;
  const IncrementalReplanOptions& options_;
  std::vector<ExpertId> row_;
  std::vector<int> copies_;
  static constexpr size_t kGuidedRanks = 16;    // 2^-16 of the 17th: nothing
  static constexpr size_t kGuidedHotRanks = 3;  // GPUs the guided search swaps experts off
  mutable std::vector<double> guide_scratch_;
  LayerCost cost_;
  LayerRouting routing_;           // of row_
  std::vector<double> slot_load_;  // under routing_
  std::vector<double> rank_now_;
  double peak_now_ = 1;
  mutable std::vector<std::pair<RankId, double>> proxy_scratch_;
  double step_ms_ = 0;
  double guided_ms_ = 0;  // Guided(cost_)
  double transfer_ms_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace

std::vector<IncrementalStep> IncrementalReplan(std::span<const ExpertId> current,
                                               std::span<const ExpertId> target,
                                               const LayerStats& forecast, const Topology& topology,
                                               const CostParams& params,
                                               const IncrementalReplanOptions& options) {
  std::vector<IncrementalStep> steps;
  if (forecast.total_load() <= 0) return steps;
  Search search(current, current, forecast, topology, params, options);
  for (int m = 0; m < options.max_moves; ++m) {
    IncrementalStep step;
    if (!search.Step(target, &step)) break;
    steps.push_back(std::move(step));
  }
  return steps;
}

std::optional<IncrementalStep> PruneReplan(std::span<const ExpertId> current,
                                           std::span<const ExpertId> target,
                                           const LayerStats& forecast, const Topology& topology,
                                           const CostParams& params,
                                           const IncrementalReplanOptions& options) {
  if (forecast.total_load() <= 0 || target.size() != current.size()) return std::nullopt;
  Search search(current, target, forecast, topology, params, options);
  IncrementalStep last;
  int undone = 0;
  for (int m = 0; m < options.max_moves; ++m) {
    if (!search.Step(current, &last)) break;
    ++undone;
  }
  if (undone == 0) {
    last.row = search.row();
    last.step_ms = search.step_ms();
    last.transfer_ms = search.transfer_ms();
    last.bytes = search.bytes();
  }
  last.move = std::to_string(undone) + " move(s) of the target undone";
  return last;
}

}  // namespace grace
