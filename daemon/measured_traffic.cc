#include "daemon/measured_traffic.h"

#include <algorithm>

namespace grace {
namespace {

std::vector<MeasuredLayerTraffic> Zeroes(int layers, int ranks) {
  std::vector<MeasuredLayerTraffic> out(layers);
  for (MeasuredLayerTraffic& l : out) l.rank_load.assign(ranks, 0);
  return out;
}

std::vector<MeasuredLayerTraffic> WithImbalance(std::vector<MeasuredLayerTraffic> layers,
                                                bool with_rank_load) {
  for (MeasuredLayerTraffic& l : layers) {
    uint64_t max = 0, sum = 0;
    for (uint64_t v : l.rank_load) {
      max = std::max(max, v);
      sum += v;
    }
    l.imbalance = sum > 0 ? static_cast<double>(max) * l.rank_load.size() / sum : 1.0;
    if (!with_rank_load) l.rank_load.clear();
  }
  return layers;
}

}  // namespace

MeasuredTrafficTotals::MeasuredTrafficTotals(int num_layers, int ranks, int slots_per_rank)
    : layers_(num_layers),
      ranks_(ranks),
      slots_(slots_per_rank),
      total_(Zeroes(num_layers, ranks)),
      open_(Zeroes(num_layers, ranks)),
      window_(Zeroes(num_layers, ranks)) {}

Status MeasuredTrafficTotals::Add(const LoadReport& r) {
  if (r.traffic.empty()) return Status::Ok();
  if (r.slots_per_rank != static_cast<uint32_t>(slots_)) {
    return InvalidArgument("traffic section: slots_per_rank " + std::to_string(r.slots_per_rank) +
                           ", the topology has " + std::to_string(slots_));
  }
  for (const LoadReport::RankTraffic& t : r.traffic) {
    if (t.rank < 0 || t.rank >= ranks_ || static_cast<int>(t.layers.size()) != layers_) {
      return InvalidArgument("traffic section: rank " + std::to_string(t.rank) + " with " +
                             std::to_string(t.layers.size()) + " layers; the topology has " +
                             std::to_string(ranks_) + " ranks and the model " +
                             std::to_string(layers_) + " layers");
    }
  }
  for (const LoadReport::RankTraffic& t : r.traffic) {
    for (int l = 0; l < layers_; ++l) {
      const DispatchCounts& d = t.layers[l];
      uint64_t pairs = 0;
      for (uint32_t v : d.slot_pairs) pairs += v;
      for (MeasuredLayerTraffic* m : {&total_[l], &open_[l]}) {
        m->tokens += d.tokens;
        m->node_sends += d.node_sends;
        m->remote_sends += d.remote_sends;
        m->cross_node_sends += d.cross_node_sends;
        m->intra_node_bytes += d.intra_node_bytes;
        m->cross_node_bytes += d.cross_node_bytes;
        m->rank_load[t.rank] += pairs;
      }
    }
  }
  open_has_traffic_ = true;
  return Status::Ok();
}

void MeasuredTrafficTotals::CloseWindow() {
  if (!open_has_traffic_) return;
  window_ = std::move(open_);
  open_ = Zeroes(layers_, ranks_);
  open_has_traffic_ = false;
}

std::vector<MeasuredLayerTraffic> MeasuredTrafficTotals::Total(bool with_rank_load) const {
  return WithImbalance(total_, with_rank_load);
}

std::vector<MeasuredLayerTraffic> MeasuredTrafficTotals::Window(bool with_rank_load) const {
  return WithImbalance(window_, with_rank_load);
}

}  // namespace grace
