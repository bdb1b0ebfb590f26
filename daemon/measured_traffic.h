// MeasuredTrafficTotals: graced's sums of the traffic sections of the agents' load reports
// (core/wire_protocol.h DispatchCounts): per layer, cumulative since start, and the latest
// window, which CloseWindow() ends once per control interval. Memory: layers x ranks counters,
// twice (cumulative and window) plus the open interval's.
//
// Thread contract: none of its own; the control loop calls it under its mutex.
#pragma once

#include <vector>

#include "core/status.h"
#include "core/wire_protocol.h"
#include "daemon/control_plane.h"

namespace grace {

class MeasuredTrafficTotals {
 public:
  MeasuredTrafficTotals(int num_layers, int ranks, int slots_per_rank);

  // Adds a report's traffic section; when it does not fit the topology (a rank out of range,
  // another slot count or layer count) nothing is added and the error says what.
  Status Add(const LoadReport& report);
  // The open interval's sums become the window, when any traffic arrived in it.
  void CloseWindow();

  // Per layer, with or without the per-rank loads (the imbalance is filled either way).
  std::vector<MeasuredLayerTraffic> Total(bool with_rank_load) const;
  std::vector<MeasuredLayerTraffic> Window(bool with_rank_load) const;

 private:
  int layers_, ranks_, slots_;
  std::vector<MeasuredLayerTraffic> total_, open_, window_;
  bool open_has_traffic_ = false;
};

}  // namespace grace
