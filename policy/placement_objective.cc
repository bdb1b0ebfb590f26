#include "policy/placement_objective.h"

#include <algorithm>

namespace grace {

double PlacementObjective::Score(const LayerTraffic& traffic, const Topology& topology,
                                 const CostParams& params) const {
  const double flops_per_s = params.gpu_tflops * 1e12 * params.compute_efficiency;
  const double ms_per_pair = params.flops_per_token_expert() / flops_per_s * 1e3;
  const double ms_intra = params.token_bytes() / topology.intra_node_bytes_per_s() * 1e3;
  const double ms_inter = params.token_bytes() / topology.inter_node_bytes_per_s() * 1e3;
  const int ranks = topology.ranks();
  double max_load = 0, sum_load = 0, max_intra = 0, sum_intra = 0, max_inter = 0, sum_inter = 0;
  for (RankId r = 0; r < ranks; ++r) {
    max_load = std::max(max_load, traffic.rank_load[r]);
    sum_load += traffic.rank_load[r];
    const double intra = std::max(traffic.intra_send[r], traffic.intra_recv[r]);
    max_intra = std::max(max_intra, intra);
    sum_intra += intra;
  }
  for (NodeId n = 0; n < topology.nodes; ++n) {
    const double inter = std::max(traffic.inter_out[n], traffic.inter_in[n]);
    max_inter = std::max(max_inter, inter);
    sum_inter += inter;
  }
  const double max_ms = max_load * ms_per_pair + 2 * (max_intra * ms_intra + max_inter * ms_inter);
  const double mean_ms = (sum_load * ms_per_pair + 2 * sum_intra * ms_intra) / ranks +
                         2 * sum_inter * ms_inter / topology.nodes;
  const double mean_load = sum_load / ranks;
  const double imbalance = mean_load > 0 ? max_load / mean_load : 1.0;
  const double remote_ms =
      remote_send_weight * 2 * traffic.remote_sends * ms_inter / topology.nodes;
  return max_ms + mean_weight * mean_ms + remote_ms +
         imbalance_penalty * reference_ms * std::max(0.0, imbalance - max_imbalance);
}

}  // namespace grace
