// CudaMoeLayer: one rank's MoE layers on one CUDA device, the device twin of MoeLayer
// (agent/moe_layer.h), used by grace-agent when [agent].backend = "cuda" (one worker thread per
// GPU: local rank i on device i).
//
//   GRACE_ASSIGN_OR_RETURN(auto layer, CudaMoeLayer::Create(shape, spr, rpn, &tcp, nccl, ffn));
//   layer->LoadGate(li, weights.gate[li].data());           // once, when the gate is used
//   layer->BeginStep(table, token_ids, tokens, x, ids, gw);  // ids/gw: every layer's, or null
//   for (li ...) layer->Run(li, step, seed, &times);         // everything stays on the device
//   layer->EndStep(x);                                       // the step's one copy back
//
// Per layer, on the grouped FFN's stream: the gate (logits as one float32 cuBLAS GEMM, then
// softmax and top-k with the CPU twin's tie rule; or the step's replayed ids, uploaded
// once in BeginStep), the replica choice from a device copy of the routing table, load counts,
// the permute of each token's record per destination rank (the cost model's dedup rule, the same
// DispatchLayout as the CPU path, so measured() counts the same sends), dispatch, the grouped
// bf16 FFN of every local slot (kernels/cuda_grouped_ffn.h), SwiGLU, the gate-weighted unpermute,
// combine, and x += the sum. Hidden states stay on the device in float32 from BeginStep to
// EndStep; rows are bf16 only inside the FFN, as in the CUDA expert backend. Host staging is
// pinned. The stream is never synchronised inside a layer; the host waits on an event only for
// what it must read: the layer's routing (ids, slots, gate weights: 12 bytes per (token, k)),
// because cuBLAS's grouped GEMM takes its problem sizes from host memory and the dispatch needs
// its per-rank counts on the host; and, with more than one rank, for the transport.
//
// Dispatch and combine: one rank needs no transport (its records are already in place). Over
// `control` (TCP, host memory) the records are staged through pinned host buffers; with a
// `device_transport` (NCCL) they go device to device, and `control` carries only the per-rank
// record counts. Results match MoeLayer with the CPU backend at bf16 tolerance.
//
// Thread contract: owned by one data-path thread, like MoeLayer; the grouped FFN it runs on must
// not be used by another thread meanwhile. Buffers grow to the largest step, then are reused.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "agent/moe_layer.h"
#include "core/routing_table.h"
#include "kernels/cuda/device_routing_table.h"
#include "kernels/cuda_device.h"
#include "kernels/cuda_grouped_ffn.h"
#include "kernels/dispatch_layout.h"
#include "migrate/transport.h"

namespace grace {

class CudaMoeLayer {
 public:
  // `control` must be non-null (its rank and size are the layer's); `device_transport` may be
  // null, else it moves device memory and has `control`'s ranks. `ffn` is not owned.
  static StatusOr<std::unique_ptr<CudaMoeLayer>> Create(const ModelShape& shape, int slots_per_rank,
                                                        int ranks_per_node, Transport* control,
                                                        Transport* device_transport,
                                                        CudaGroupedFfn* ffn,
                                                        int coactivation_sample_every = 8);
  ~CudaMoeLayer();
  CudaMoeLayer(const CudaMoeLayer&) = delete;
  CudaMoeLayer& operator=(const CudaMoeLayer&) = delete;

  // Layer `layer_index`'s router weights, [experts x hidden] float32: needed by Run without
  // replayed ids. Synchronises the stream (start-up only).
  Status LoadGate(int layer_index, const float* gate_weight);

  // Starts a step: copies the routing table to the device when it is not the last one copied
  // (an epoch switch), uploads the token ids and x ([tokens x hidden]) and, when replaying, the
  // ids and gate weights of every layer ([layers][tokens x top_k]; both null: the gate decides).
  // Refuses replayed ids outside [0, experts).
  Status BeginStep(const RoutingTable& table, const int64_t* token_ids, int tokens, const float* x,
                   const int32_t* replay_ids, const float* replay_weights);
  // One layer, x += moe(x) on the device. The StepTimes phases are host time (work is queued
  // asynchronously, so the device's time shows in the phase where the host next waits).
  Status Run(int layer_index, uint64_t step, uint64_t route_seed, StepTimes* times);
  // Copies x back ([tokens x hidden]) and waits for the step's work.
  Status EndStep(float* x);

  // The last Run's expert ids on the host, [tokens x top_k] (the agent's live counters read them).
  const int32_t* expert_ids() const { return meta_host_.data(); }
  // As MoeLayer's.
  uint64_t remote_bytes_sent() const { return remote_bytes_sent_; }
  const MeasuredDispatch& measured() const { return measured_; }

  // The load counts and sampled co-activation accumulated on the device (kernels/load_stats.h's
  // rule): load [layer][expert], coactivation [layer][a * E + b]. Waits for the stream.
  Status DownloadLoadCounts(std::vector<uint64_t>* load, std::vector<uint64_t>* coactivation);

 private:
  CudaMoeLayer(const ModelShape& shape, int slots_per_rank, int ranks_per_node, Transport* control,
               Transport* device_transport, CudaGroupedFfn* ffn, int coactivation_sample_every);
  Status Init();
  cudaStream_t stream() const { return ffn_->stream(); }
  // Records `event` on the stream and waits for it on the host.
  Status WaitFor(cudaEvent_t event, const char* what);
  // Moves `send_bytes[p]` bytes of device `send` to each rank p and `recv_bytes[p]` into device
  // `recv` (packed in rank order), over the device transport or staged through pinned memory.
  // `host_recv`, when non-null, receives the staged host copy of `recv` (control path only).
  Status Exchange(const float* send, std::span<const size_t> send_bytes, float* recv,
                  std::span<const size_t> recv_bytes, const float** host_recv);

  ModelShape shape_;
  int slots_per_rank_;
  int ranks_per_node_;
  Transport* control_;
  Transport* device_transport_;
  CudaGroupedFfn* ffn_;
  int sample_every_;
  cudaEvent_t host_wait_ = nullptr;     // recorded where the host must see what came before
  cublasHandle_t gate_blas_ = nullptr;  // the gate's logits GEMM, on the FFN's stream
  DeviceRoutingTable table_device_;
  const RoutingTable* table_ = nullptr;  // the last table copied, and its epoch
  Epoch table_epoch_ = 0;

  // Step state.
  int tokens_ = 0;
  bool replay_ = false;
  std::vector<bool> gate_loaded_;        // [layer]
  DeviceArray<float> x_, gate_weights_;  // x [tokens x hidden]; gate [layer][experts x hidden]
  DeviceArray<int64_t> token_ids_;
  DeviceArray<int32_t> ids_, slots_;  // ids: [layers][pairs] when replaying, else [pairs]
  DeviceArray<float> weights_;        // as ids
  DeviceArray<float> logits_;         // [tokens x experts], the gate's scratch
  DeviceArray<unsigned long long> load_, coactivation_;
  PinnedArray<float> x_stage_;
  PinnedArray<int64_t> token_stage_;
  PinnedArray<int32_t> routing_stage_;  // replayed ids, then their gate weights (as bits)

  // Layer state: host routing [ids | slots | weights], send and receive metadata.
  PinnedArray<int32_t> meta_host_, send_meta_host_, recv_meta_host_;
  DeviceArray<int32_t> send_meta_, recv_meta_;
  std::vector<float> send_headers_;
  PinnedArray<float> headers_host_;  // the received record headers (device transport)
  DeviceArray<float> send_, recv_, partial_, combined_;
  DeviceArray<uint16_t> rows_in_, rows_out_;
  PinnedArray<float> stage_send_, stage_recv_;  // records staged for the control transport
  DispatchLayout layout_;
  std::vector<uint64_t> send_records_, recv_records_;
  std::vector<size_t> send_bytes_, recv_bytes_;
  uint64_t remote_bytes_sent_ = 0;
  MeasuredDispatch measured_;
};

}  // namespace grace
