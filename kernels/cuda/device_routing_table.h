// DeviceRoutingTable: a RoutingTable copied to the device for the SelectReplicas kernel.
//
// Built on the control thread when a table is published; its view() is then read by the data
// path. Immutable after Upload, like the RoutingTable it mirrors.
#pragma once

#include <cstdint>

#include "core/routing_table.h"
#include "kernels/cuda/launchers.h"
#include "kernels/cuda_device.h"

namespace grace {

class DeviceRoutingTable {
 public:
  Status Upload(const RoutingTable& table, cudaStream_t stream);
  cuda::RoutingView view() const;

 private:
  int ranks_ = 0;
  int experts_ = 0;
  DeviceArray<uint32_t> offset_, count_;
  DeviceArray<int32_t> slot_;
  DeviceArray<float> cumulative_;
};

}  // namespace grace
