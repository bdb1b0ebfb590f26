// The cost model of DESIGN.md ("Measuring placements"): how long one MoE layer takes for a
// placement row, a routing and a topology.
//
// Traffic (hierarchical, deduplicated): a token on home rank h is sent once to each other GPU
// of its own node that serves it (NVLink), and once to each remote node that serves it (over
// the NICs, to the peer GPU with h's local index), which forwards it over NVLink to the other
// GPUs of that node that serve it. Combine sends the results back the same way.
// Time: compute_ms (max over ranks of (token, expert) pairs x FLOPs per pair / GPU rate)
//   + 2 x (inter_ms + intra_ms), dispatch and combine alike, where
//   inter_ms = max over nodes of alpha_inter + max(bytes out, bytes in) / NIC bandwidth, and
//   intra_ms = max over ranks of alpha_intra + max(bytes sent, bytes received) / NVLink.
// Bandwidths and latencies come from the Topology; model sizes from CostParams.
//
// Two evaluators: EvaluateLayerOnTokens is exact on recorded tokens (expectations over the
// routing's random replica choice, which are exact since a token's experts choose independently);
// EvaluateLayerExpected works from loads alone for count-only sources (each expert used by a
// token with probability load / tokens, independently; home ranks uniform).
// Pure functions, safe from any thread.
#pragma once

#include <span>
#include <utility>
#include <vector>

#include "core/ids.h"
#include "core/topology.h"
#include "policy/layer_stats.h"

namespace grace {

// Model sizes and GPU speed. Defaults: Qwen1.5-MoE-A2.7B (hidden 2048, expert FFN 1408), bf16,
// 400 TFLOP/s at 50% efficiency. DeepSeek-V3: hidden 7168, expert FFN 2048.
struct CostParams {
  int hidden_size = 2048;
  int bytes_per_element = 2;  // bf16 activations
  int expert_ffn_size = 1408;
  double gpu_tflops = 400.0;
  double compute_efficiency = 0.5;

  double token_bytes() const { return static_cast<double>(hidden_size) * bytes_per_element; }
  // 3 GEMMs (gate, up, down) of hidden x ffn, 2 FLOPs per multiply-add.
  double flops_per_token_expert() const { return 6.0 * hidden_size * expert_ffn_size; }
};

// How tokens of each rank pick among an expert's replicas in one layer.
//
// A rank sees an expert through one of its views: as a GPU holding a copy (one view per such
// GPU), as a GPU of a node holding a copy (one view per such node), or from a node holding none
// (one view, "elsewhere"). Ranks with the same view of an expert pick alike, which is what every
// routing grace builds does (locality tiers, or uniform), so probabilities are stored per expert
// and view, O(replicas x views) per expert: a dense ranks x slots table was 8 MB per layer at
// 1,000 GPUs.
class LayerRouting {
 public:
  LayerRouting() = default;
  // Replicas and views from a placement row; all probabilities zero until set.
  LayerRouting(std::span<const ExpertId> row, int num_experts, const Topology& topology);

  int num_experts() const { return static_cast<int>(begin_.size()) - 1; }
  int ranks() const { return topology_.ranks(); }
  const Topology& topology() const { return topology_; }
  std::span<const SlotId> Replicas(ExpertId e) const {
    return {slots_.data() + begin_[e], static_cast<size_t>(begin_[e + 1] - begin_[e])};
  }

  // Views of expert e, numbered 0 .. NumViews(e) - 1: its holder GPUs (ascending), then its
  // nodes (ascending), then "elsewhere" (always last, even when every node holds a copy).
  int NumViews(ExpertId e) const { return view_begin_[e + 1] - view_begin_[e]; }
  int ViewOf(RankId rank, ExpertId e) const;
  // The view of node n's GPUs that hold no copy of e (elsewhere when n holds none).
  int NodeView(NodeId n, ExpertId e) const;
  // How many ranks see expert e through `view`.
  int ViewRanks(ExpertId e, int view) const { return views_[view_begin_[e] + view].ranks; }
  // The replicas nearest to the view's ranks, as indices [first, last) into Replicas(e): those
  // on its GPU, those on its node, or (elsewhere) all of them. Replicas are in slot order, so
  // the replicas of one GPU or node are contiguous.
  std::pair<int, int> ViewReplicas(ExpertId e, int view) const {
    const View& v = views_[view_begin_[e] + view];
    return {v.first, v.last};
  }

  std::span<const double> ViewProbabilities(ExpertId e, int view) const {
    return {prob_.data() + prob_begin_[e] + static_cast<size_t>(view) * Replicas(e).size(),
            Replicas(e).size()};
  }
  std::span<double> MutableViewProbabilities(ExpertId e, int view) {
    return {prob_.data() + prob_begin_[e] + static_cast<size_t>(view) * Replicas(e).size(),
            Replicas(e).size()};
  }
  // A probability per replica of e, summing to 1, for tokens homed on `rank`.
  std::span<const double> Probabilities(RankId rank, ExpertId e) const {
    return ViewProbabilities(e, ViewOf(rank, e));
  }

 private:
  Topology topology_;
  std::vector<int> begin_;     // [expert] -> first index into slots_, E + 1 entries
  std::vector<SlotId> slots_;  // replica slots grouped by expert
  struct View {
    int ranks = 0;            // ranks that see the expert this way
    int first = 0, last = 0;  // nearest replicas, indices into Replicas(e)
  };
  std::vector<int> view_begin_;  // [expert] -> first index into views_, E + 1 entries
  std::vector<View> views_;
  std::vector<size_t> prob_begin_;  // [expert] -> first index into prob_
  std::vector<double> prob_;        // [expert][view][replica]
};

struct LayerCost {
  double tokens = 0;
  double remote_sends_per_token = 0;      // distinct GPUs other than home, per token
  double cross_node_sends_per_token = 0;  // distinct nodes other than home's, per token
  std::vector<double> rank_load;          // (token, expert) pairs computed per rank
  double imbalance = 1;                   // max / mean of rank_load
  double compute_ms = 0;
  double intra_ms = 0;  // one direction (dispatch)
  double inter_ms = 0;  // one direction (dispatch)
  double layer_ms = 0;  // compute_ms + 2 (intra_ms + inter_ms)
};

// Raw per-rank and per-node traffic of one direction, in tokens; LayerTimes turns it into time.
struct LayerTraffic {
  double tokens = 0;
  double remote_sends = 0;
  double cross_node_sends = 0;
  std::vector<double> rank_load;
  std::vector<double> intra_send, intra_recv;  // per rank
  std::vector<double> inter_out, inter_in;     // per node
};

LayerTraffic EmptyTraffic(const Topology& topology);

// The route of DESIGN.md's hierarchical communication, as traffic: `tokens` tokens homed on
// `home` sent once to GPU `g` (a remote send; across nodes it lands on the peer GPU of the
// remote node, then goes over NVLink to `g` unless `g` is that peer), and once to node `n` (a
// cross-node send over the home node's NIC). A negative `tokens` takes the send back out, which
// the incremental searches use. A send to the home GPU or node costs nothing.
void AddGpuSend(const Topology& topology, RankId home, RankId g, double tokens,
                LayerTraffic* traffic);
void AddNodeSend(const Topology& topology, RankId home, NodeId n, double tokens,
                 LayerTraffic* traffic);
// Fills the time and ratio fields of a LayerCost from traffic.
LayerCost CostFromTraffic(const LayerTraffic& traffic, const Topology& topology,
                          const CostParams& params);

// The traffic behind the two evaluators below.
LayerTraffic TrafficOnTokens(const LayerTokens& tokens, const LayerRouting& routing,
                             const Topology& topology);
LayerTraffic TrafficExpected(std::span<const double> load, int top_k, const LayerRouting& routing,
                             const Topology& topology);

// Exact on tokens (home ranks from LayerTokens::HomeRank).
LayerCost EvaluateLayerOnTokens(const LayerTokens& tokens, const LayerRouting& routing,
                                const Topology& topology, const CostParams& params);
// In expectation from per-expert loads (count-only sources).
LayerCost EvaluateLayerExpected(std::span<const double> load, int top_k,
                                const LayerRouting& routing, const Topology& topology,
                                const CostParams& params);
// Exact when `stats` has tokens, else expected. Tokens are a sample of the routing, loads the
// amount a step carries: when the tokens' (token, expert) pairs differ from the load's total
// (a forecast of one step with several intervals' tokens), the traffic is scaled to the load.
LayerCost EvaluateLayer(const LayerStats& stats, const LayerRouting& routing,
                        const Topology& topology, const CostParams& params);

}  // namespace grace
