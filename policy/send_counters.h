// SendCounters: what moving one expert would do to a layer's deduplicated traffic, read off
// counters instead of a pass over the expert's tokens.
//
// The placement searches (TokenPlacementSearch, SlotPlacementSearch) keep, for every token, how
// many of its (routed) experts sit on each GPU and node. A token homed on h sends to GPU g iff
// that count is above zero, so moving expert y's only copy from GPU a to GPU b takes the send
// h -> a away from the tokens of y where y is alone on a (count 1) and adds h -> b to those with
// nothing on b (count 0); likewise for nodes. SendCounters keeps, per expert, GPU (node) and
// home rank, how many of the expert's tokens have count 0 and count 1 there, updated on every
// count change the search reports (O(experts of the token)). A move's traffic change is then
// O(ranks), and a swap's adds one term per token the two experts share.
//
// Counts are whole tokens, so the traffic a search builds from these deltas is equal, bit for
// bit, to the traffic it would get by applying the move and reading it back.
// Not thread-safe; owned by one search.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/topology.h"
#include "policy/cost_model.h"

namespace grace {

class SendCounters {
 public:
  // `token_begin`/`token_experts`: the distinct experts of each token (CSR, token order);
  // `home`: each token's home rank.
  SendCounters(const Topology& topology, int num_experts, std::span<const RankId> home,
               std::span<const int> token_begin, std::span<const ExpertId> token_experts);

  // Rebuilds every counter from the per-token counts ([token][rank] and [token][node]).
  void Rebuild(std::span<const uint16_t> gpu_count, std::span<const uint16_t> node_count);

  // Token t's count on GPU g (node n) went from `before` to `after` (one apart).
  void GpuChanged(int t, RankId g, int before, int after) {
    if (before > 1 && after > 1) return;
    Change(gpu_zero_, gpu_one_, ranks_, t, g, before, after);
  }
  void NodeChanged(int t, NodeId n, int before, int after) {
    if (before > 1 && after > 1) return;
    Change(node_zero_, node_one_, nodes_, t, n, before, after);
  }

  // AddGpuSend and AddNodeSend (cost_model.h) from tables: the same sums, no divisions.
  void AddGpuSendFast(RankId h, RankId g, double tokens, LayerTraffic* traffic) const {
    const RankId from = relay_[static_cast<size_t>(h) * ranks_ + g];
    if (from < 0) return;  // g is the home GPU
    traffic->remote_sends += tokens;
    if (from == g) return;
    traffic->intra_send[from] += tokens;
    traffic->intra_recv[g] += tokens;
  }
  void AddNodeSendFast(RankId h, NodeId n, double tokens, LayerTraffic* traffic) const {
    const NodeId home_node = node_of_[h];
    if (n == home_node) return;
    traffic->cross_node_sends += tokens;
    traffic->inter_out[home_node] += tokens;
    traffic->inter_in[n] += tokens;
  }
  NodeId NodeOf(RankId g) const { return node_of_[g]; }

  // Adds to `traffic` the send changes of moving expert y, whose tokens are all routed to GPU
  // `a`, to GPU `b` (b != a). Rank loads are the caller's.
  void AddMove(ExpertId y, RankId a, RankId b, LayerTraffic* traffic) const;
  // Adds the send changes of swapping y (all routed to a) and u (all routed to b, b != a):
  // AddMove of both, corrected on the tokens they share, where neither count changes.
  // `gpu_count`/`node_count`: the search's per-token counts. `tokens_of_y`: y's distinct
  // tokens; the tokens y shares with each other expert are listed on the first call for y and
  // kept while the calls are for y (they depend on the tokens only).
  void AddSwap(ExpertId y, RankId a, ExpertId u, RankId b, std::span<const int> tokens_of_y,
               std::span<const uint16_t> gpu_count, std::span<const uint16_t> node_count,
               LayerTraffic* traffic);
  // AddSwap less its two AddMove calls (for callers that keep AddMove(y) for every target).
  void AddSwapCorrection(ExpertId y, RankId a, ExpertId u, RankId b,
                         std::span<const int> tokens_of_y, std::span<const uint16_t> gpu_count,
                         std::span<const uint16_t> node_count, LayerTraffic* traffic);

  // The general form, for experts with several copies: y's pairs from home h go from GPU
  // from[h] to to[h] (the same where they stay), every token of y from h to one GPU before and
  // after. Rank loads included.
  void AddReroute(ExpertId y, std::span<const RankId> from, std::span<const RankId> to,
                  LayerTraffic* traffic) const;
  // What AddReroute(y) + AddReroute(u) gets wrong on the tokens the two share, where both move.
  void AddPairCorrection(ExpertId y, std::span<const RankId> y_from, std::span<const RankId> y_to,
                         ExpertId u, std::span<const RankId> u_from, std::span<const RankId> u_to,
                         std::span<const int> tokens_of_y, std::span<const uint16_t> gpu_count,
                         std::span<const uint16_t> node_count, LayerTraffic* traffic);

 private:
  void Change(std::vector<int32_t>& zero, std::vector<int32_t>& one, int places, int t, int place,
              int before, int after);
  void ListShared(ExpertId y, std::span<const int> tokens_of_y);
  size_t Index(ExpertId y, int place, int places, RankId h) const {
    return (static_cast<size_t>(y) * places + place) * ranks_ + h;
  }

  const Topology& topology_;
  int experts_ = 0, ranks_ = 0, nodes_ = 0;
  std::span<const RankId> home_;
  std::span<const int> token_begin_;
  std::span<const ExpertId> token_experts_;
  // [expert][gpu or node][home rank]: tokens of the expert with count 0 / count 1 there.
  std::vector<int32_t> gpu_zero_, gpu_one_, node_zero_, node_one_;
  std::vector<RankId> relay_;         // [home][gpu]: the GPU a send lands on first, -1 for home
  std::vector<NodeId> node_of_;       // [rank]
  std::vector<int32_t> tokens_from_;  // [expert][home rank]: its tokens homed there
  // The tokens shared_of_ shares with each expert (CSR by expert).
  ExpertId shared_of_ = -1;
  std::vector<int> shared_begin_, shared_, shared_fill_;
};

}  // namespace grace
