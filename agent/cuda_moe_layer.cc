#include "agent/cuda_moe_layer.h"

#include <chrono>
#include <cstring>
#include <string>

#include "kernels/cuda/launchers.h"

namespace grace {
namespace {

using Clock = std::chrono::steady_clock;

Status CopyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream,
                 const char* what) {
  if (bytes == 0) return Status::Ok();
  return CudaStatus(cudaMemcpyAsync(dst, src, bytes, kind, stream), what);
}

}  // namespace

StatusOr<std::unique_ptr<CudaMoeLayer>> CudaMoeLayer::Create(
    const ModelShape& shape, int slots_per_rank, int ranks_per_node, Transport* control,
    Transport* device_transport, CudaGroupedFfn* ffn, int coactivation_sample_every) {
  GRACE_RETURN_IF_ERROR(shape.Validate());
  if (control == nullptr || ffn == nullptr || slots_per_rank < 1 || ranks_per_node < 1) {
    return InvalidArgument(
        "cuda moe layer: needs a control transport, a grouped FFN, slots_per_rank >= 1 and "
        "ranks_per_node >= 1");
  }
  if (ffn->local_slots() != slots_per_rank) {
    return InvalidArgument("cuda moe layer: the grouped FFN serves " +
                           std::to_string(ffn->local_slots()) + " local slots, the layer " +
                           std::to_string(slots_per_rank) + " slots per rank");
  }
  if (device_transport != nullptr && (device_transport->size() != control->size() ||
                                      device_transport->rank() != control->rank())) {
    return InvalidArgument(
        "cuda moe layer: the device transport is rank " + std::to_string(device_transport->rank()) +
        " of " + std::to_string(device_transport->size()) + ", the control one rank " +
        std::to_string(control->rank()) + " of " + std::to_string(control->size()));
  }
  std::unique_ptr<CudaMoeLayer> layer(new CudaMoeLayer(shape, slots_per_rank, ranks_per_node,
                                                       control, device_transport, ffn,
                                                       coactivation_sample_every));
  GRACE_RETURN_IF_ERROR(layer->Init());
  return layer;
}

CudaMoeLayer::CudaMoeLayer(const ModelShape& shape, int slots_per_rank, int ranks_per_node,
                           Transport* control, Transport* device_transport, CudaGroupedFfn* ffn,
                           int coactivation_sample_every)
    : shape_(shape),
      slots_per_rank_(slots_per_rank),
      ranks_per_node_(ranks_per_node),
      control_(control),
      device_transport_(device_transport),
      ffn_(ffn),
      sample_every_(coactivation_sample_every < 1 ? 1 : coactivation_sample_every) {
  measured_.token_bytes = static_cast<int64_t>(shape.hidden) * sizeof(float);
  measured_.slot_pairs.assign(slots_per_rank, 0);
}

CudaMoeLayer::~CudaMoeLayer() {
  // Queued copies may still read the pinned buffers the members free next.
  if (ffn_ != nullptr && ffn_->UseDevice().ok()) cudaStreamSynchronize(stream());
  if (gate_blas_ != nullptr) cublasDestroy(gate_blas_);
  if (host_wait_ != nullptr) cudaEventDestroy(host_wait_);
}

Status CudaMoeLayer::Init() {
  GRACE_RETURN_IF_ERROR(ffn_->UseDevice());
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cudaEventCreateWithFlags(&host_wait_, cudaEventDisableTiming), "cudaEventCreate"));
  GRACE_RETURN_IF_ERROR(CublasStatus(cublasCreate(&gate_blas_), "cublasCreate"));
  GRACE_RETURN_IF_ERROR(CublasStatus(cublasSetStream(gate_blas_, stream()), "cublasSetStream"));
  // Full float32 (no TF32): the gate's top-k should pick what the CPU twin picks.
  GRACE_RETURN_IF_ERROR(
      CublasStatus(cublasSetMathMode(gate_blas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode"));
  const size_t experts = static_cast<size_t>(shape_.num_experts);
  const size_t layers = static_cast<size_t>(shape_.num_layers);
  GRACE_RETURN_IF_ERROR(load_.Resize(layers * experts));
  GRACE_RETURN_IF_ERROR(coactivation_.Resize(layers * experts * experts));
  GRACE_RETURN_IF_ERROR(CudaStatus(
      cudaMemsetAsync(load_.data(), 0, load_.size() * sizeof(unsigned long long), stream()),
      "cudaMemsetAsync load counts"));
  GRACE_RETURN_IF_ERROR(
      CudaStatus(cudaMemsetAsync(coactivation_.data(), 0,
                                 coactivation_.size() * sizeof(unsigned long long), stream()),
                 "cudaMemsetAsync co-activation counts"));
  gate_loaded_.assign(layers, false);
  return CudaStatus(cudaStreamSynchronize(stream()), "cudaStreamSynchronize after init");
}

Status CudaMoeLayer::LoadGate(int layer_index, const float* gate_weight) {
  if (layer_index < 0 || layer_index >= shape_.num_layers) {
    return InvalidArgument("cuda moe layer: no layer " + std::to_string(layer_index));
  }
  GRACE_RETURN_IF_ERROR(ffn_->UseDevice());
  const size_t per_layer = static_cast<size_t>(shape_.num_experts) * shape_.hidden;
  if (gate_weights_.size() == 0) {
    // The first load allocates every layer's gate; nothing queued uses the array yet.
    GRACE_RETURN_IF_ERROR(gate_weights_.Resize(per_layer * shape_.num_layers));
  }
  GRACE_RETURN_IF_ERROR(CopyAsync(gate_weights_.data() + per_layer * layer_index, gate_weight,
                                  per_layer * sizeof(float), cudaMemcpyHostToDevice, stream(),
                                  "gate to device"));
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream()), "cudaStreamSynchronize gate"));
  gate_loaded_[layer_index] = true;
  return Status::Ok();
}

Status CudaMoeLayer::WaitFor(cudaEvent_t event, const char* what) {
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(event, stream()), what));
  return CudaStatus(cudaEventSynchronize(event), what);
}

Status CudaMoeLayer::BeginStep(const RoutingTable& table, const int64_t* token_ids, int tokens,
                               const float* x, const int32_t* replay_ids,
                               const float* replay_weights) {
  const int k = shape_.top_k, h = shape_.hidden, layers = shape_.num_layers;
  if (tokens < 0) return InvalidArgument("cuda moe layer: negative token count");
  if ((replay_ids == nullptr) != (replay_weights == nullptr)) {
    return InvalidArgument("cuda moe layer: replayed ids and gate weights go together");
  }
  if (table.num_layers() < layers || table.num_experts() != shape_.num_experts ||
      table.topology().ranks() != control_->size() ||
      table.topology().slots_per_gpu != slots_per_rank_) {
    return InvalidArgument(
        "cuda moe layer: the routing table's shape (" + std::to_string(table.num_layers()) +
        " layers, " + std::to_string(table.num_experts()) + " experts, " +
        std::to_string(table.topology().ranks()) + " ranks) does not match the layer's");
  }
  const size_t pairs = static_cast<size_t>(tokens) * k;
  if (replay_ids != nullptr) {
    for (size_t i = 0; i < pairs * layers; ++i) {
      if (replay_ids[i] < 0 || replay_ids[i] >= shape_.num_experts) {
        return InvalidArgument("cuda moe layer: replayed expert id " +
                               std::to_string(replay_ids[i]) + " outside [0, " +
                               std::to_string(shape_.num_experts) + ")");
      }
    }
  } else {
    for (int l = 0; l < layers; ++l) {
      if (!gate_loaded_[l]) {
        return FailedPrecondition("cuda moe layer: no replayed ids and no gate for layer " +
                                  std::to_string(l) + " (LoadGate first)");
      }
    }
  }
  GRACE_RETURN_IF_ERROR(ffn_->UseDevice());
  // Between steps, not inside a layer: after an error the last step's copies may still be
  // queued on the buffers that grow or are rewritten below; normally this returns at once.
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream()), "cudaStreamSynchronize"));
  if (&table != table_ || table.epoch() != table_epoch_) {
    GRACE_RETURN_IF_ERROR(table_device_.Upload(table, stream()));  // synchronises
    table_ = &table;
    table_epoch_ = table.epoch();
  }
  tokens_ = tokens;
  replay_ = replay_ids != nullptr;
  const size_t n = static_cast<size_t>(tokens) * h;
  const size_t routed = pairs * (replay_ ? layers : 1);
  GRACE_RETURN_IF_ERROR(x_.Resize(n));
  GRACE_RETURN_IF_ERROR(x_stage_.Resize(n));
  GRACE_RETURN_IF_ERROR(token_ids_.Resize(tokens));
  GRACE_RETURN_IF_ERROR(token_stage_.Resize(tokens));
  GRACE_RETURN_IF_ERROR(ids_.Resize(routed));
  GRACE_RETURN_IF_ERROR(weights_.Resize(routed));
  GRACE_RETURN_IF_ERROR(slots_.Resize(pairs));
  if (!replay_) {
    GRACE_RETURN_IF_ERROR(logits_.Resize(static_cast<size_t>(tokens) * shape_.num_experts));
  }
  GRACE_RETURN_IF_ERROR(meta_host_.Resize(3 * pairs));
  if (n > 0) std::memcpy(x_stage_.data(), x, n * sizeof(float));
  if (tokens > 0) std::memcpy(token_stage_.data(), token_ids, tokens * sizeof(int64_t));
  GRACE_RETURN_IF_ERROR(CopyAsync(x_.data(), x_stage_.data(), n * sizeof(float),
                                  cudaMemcpyHostToDevice, stream(), "hidden states to device"));
  GRACE_RETURN_IF_ERROR(CopyAsync(token_ids_.data(), token_stage_.data(), tokens * sizeof(int64_t),
                                  cudaMemcpyHostToDevice, stream(), "token ids to device"));
  if (replay_ && routed > 0) {
    GRACE_RETURN_IF_ERROR(routing_stage_.Resize(2 * routed));
    std::memcpy(routing_stage_.data(), replay_ids, routed * sizeof(int32_t));
    std::memcpy(routing_stage_.data() + routed, replay_weights, routed * sizeof(float));
    GRACE_RETURN_IF_ERROR(CopyAsync(ids_.data(), routing_stage_.data(), routed * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, stream(), "replayed ids to device"));
    GRACE_RETURN_IF_ERROR(CopyAsync(weights_.data(), routing_stage_.data() + routed,
                                    routed * sizeof(float), cudaMemcpyHostToDevice, stream(),
                                    "replayed gate weights to device"));
  }
  return Status::Ok();
}

Status CudaMoeLayer::Exchange(const float* send, std::span<const size_t> send_bytes, float* recv,
                              std::span<const size_t> recv_bytes, const float** host_recv) {
  size_t send_total = 0, recv_total = 0;
  for (size_t b : send_bytes) send_total += b;
  for (size_t b : recv_bytes) recv_total += b;
  if (device_transport_ != nullptr) {
    // The transport runs on its own stream: what this stream wrote must be complete first.
    GRACE_RETURN_IF_ERROR(WaitFor(host_wait_, "wait for the records before NCCL"));
    GRACE_RETURN_IF_ERROR(device_transport_->AllToAllV(send, send_bytes, recv, recv_bytes));
    *host_recv = nullptr;
    return Status::Ok();
  }
  // Staged through pinned memory. Waiting for the copy out also retires any copy still reading
  // stage_recv_ (the dispatch's, when this is the combine), so it may be resized after.
  GRACE_RETURN_IF_ERROR(stage_send_.Resize(send_total / sizeof(float)));
  GRACE_RETURN_IF_ERROR(CopyAsync(stage_send_.data(), send, send_total, cudaMemcpyDeviceToHost,
                                  stream(), "records to host"));
  GRACE_RETURN_IF_ERROR(WaitFor(host_wait_, "wait for the records to reach the host"));
  GRACE_RETURN_IF_ERROR(stage_recv_.Resize(recv_total / sizeof(float)));
  GRACE_RETURN_IF_ERROR(
      control_->AllToAllV(stage_send_.data(), send_bytes, stage_recv_.data(), recv_bytes));
  GRACE_RETURN_IF_ERROR(CopyAsync(recv, stage_recv_.data(), recv_total, cudaMemcpyHostToDevice,
                                  stream(), "received records to device"));
  *host_recv = stage_recv_.data();
  return Status::Ok();
}

Status CudaMoeLayer::Run(int layer_index, uint64_t step, uint64_t route_seed, StepTimes* times) {
  if (layer_index < 0 || layer_index >= shape_.num_layers) {
    return InvalidArgument("cuda moe layer: no layer " + std::to_string(layer_index));
  }
  if (table_ == nullptr) return FailedPrecondition("cuda moe layer: Run before BeginStep");
  const int k = shape_.top_k, h = shape_.hidden, experts = shape_.num_experts;
  const int ranks = control_->size(), tokens = tokens_;
  const RankId me = control_->rank();
  const int stride = RecordWords(k, h), header = RecordHeaderWords(k);
  const size_t pairs = static_cast<size_t>(tokens) * k;
  GRACE_RETURN_IF_ERROR(ffn_->UseDevice());
  auto t = Clock::now();

  // Route: gate (unless replayed), replica choice, load counts; the routing to the host.
  const size_t at = replay_ ? pairs * layer_index : 0;
  int32_t* ids = ids_.data() + at;
  float* gate_weights = weights_.data() + at;
  if (!replay_ && tokens > 0) {
    // Gate: logits = x G^T as one float32 GEMM (row-major [tokens x experts] is column-major
    // [experts x tokens] = G, op T of its column-major [hidden x experts], times x^T), then the
    // softmax and top-k.
    const float one = 1.0f, zero = 0.0f;
    GRACE_RETURN_IF_ERROR(CublasStatus(
        cublasSgemm(gate_blas_, CUBLAS_OP_T, CUBLAS_OP_N, experts, tokens, h, &one,
                    gate_weights_.data() + static_cast<size_t>(layer_index) * experts * h, h,
                    x_.data(), h, &zero, logits_.data(), experts),
        "cublasSgemm gate logits"));
    GRACE_RETURN_IF_ERROR(CudaStatus(
        cuda::SoftmaxTopK(logits_.data(), tokens, experts, k, ids, gate_weights, stream()),
        "SoftmaxTopK launch"));
  }
  cuda::SelectReplicas(table_device_.view(), layer_index, me, ids, token_ids_.data(), tokens, k,
                       route_seed, step, slots_.data(), stream());
  cuda::CountLoads(ids, token_ids_.data(), tokens, k, experts, sample_every_,
                   load_.data() + static_cast<size_t>(layer_index) * experts,
                   coactivation_.data() + static_cast<size_t>(layer_index) * experts * experts,
                   stream());
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "routing kernels launch"));
  int32_t* host_ids = meta_host_.data();
  int32_t* host_slots = host_ids + pairs;
  float* host_weights = reinterpret_cast<float*>(host_ids + 2 * pairs);
  GRACE_RETURN_IF_ERROR(CopyAsync(host_ids, ids, pairs * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                  stream(), "expert ids to host"));
  GRACE_RETURN_IF_ERROR(CopyAsync(host_slots, slots_.data(), pairs * sizeof(int32_t),
                                  cudaMemcpyDeviceToHost, stream(), "slots to host"));
  GRACE_RETURN_IF_ERROR(CopyAsync(host_weights, gate_weights, pairs * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream(), "gate weights to host"));
  // The host reads the routing. Everything queued before has then run, so the buffers below
  // may grow without a copy or kernel still using them.
  GRACE_RETURN_IF_ERROR(WaitFor(host_wait_, "wait for the routing"));
  times->route += Since(t);

  // Permute: one record per (token, destination rank), headers from the host, rows on device.
  // hidden = 0: the host keeps headers only, packed.
  layout_.BuildSend(host_slots, host_weights, tokens, k, /*hidden=*/0, slots_per_rank_, ranks,
                    &send_headers_);
  const int sent = layout_.send_records();
  measured_.tokens = tokens;
  measured_.sends = layout_.CountSends(me, ranks_per_node_);
  // send_meta: record_token [sent] | token_record_offsets [tokens + 1] | token_records [sent]
  // | headers [sent x header].
  const size_t offsets_at = sent, records_at = offsets_at + tokens + 1,
               headers_at = records_at + sent;
  const size_t send_words = headers_at + static_cast<size_t>(sent) * header;
  GRACE_RETURN_IF_ERROR(send_meta_host_.Resize(send_words));
  GRACE_RETURN_IF_ERROR(send_meta_.Resize(send_words));
  int32_t* sm = send_meta_host_.data();
  std::memcpy(sm, layout_.record_token().data(), sent * sizeof(int32_t));
  std::memcpy(sm + offsets_at, layout_.token_record_offsets().data(),
              (tokens + 1) * sizeof(int32_t));
  std::memcpy(sm + records_at, layout_.token_records().data(), sent * sizeof(int32_t));
  std::memcpy(sm + headers_at, send_headers_.data(), static_cast<size_t>(sent) * header * 4);
  GRACE_RETURN_IF_ERROR(CopyAsync(send_meta_.data(), sm, send_words * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, stream(), "send layout to device"));
  GRACE_RETURN_IF_ERROR(send_.Resize(static_cast<size_t>(sent) * stride));
  if (sent > 0) {
    GRACE_RETURN_IF_ERROR(CudaStatus(
        cudaMemcpy2DAsync(send_.data(), stride * sizeof(float), send_meta_.data() + headers_at,
                          header * sizeof(float), header * sizeof(float), sent,
                          cudaMemcpyDeviceToDevice, stream()),
        "record headers into records"));
  }
  cuda::PermuteRows(x_.data(), h, send_meta_.data(), sent, h, send_.data() + header, stride,
                    stream());
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "PermuteRows launch"));
  times->permute += Since(t);

  // Dispatch: record counts over the control transport, then the records.
  send_records_.resize(ranks);
  recv_records_.resize(ranks);
  send_bytes_.resize(ranks);
  recv_bytes_.resize(ranks);
  for (int p = 0; p < ranks; ++p) send_records_[p] = layout_.records_per_rank()[p];
  if (ranks > 1) {
    GRACE_RETURN_IF_ERROR(
        control_->AllToAll(send_records_.data(), recv_records_.data(), sizeof(uint64_t)));
  } else {
    recv_records_ = send_records_;
  }
  int received = 0;
  for (int p = 0; p < ranks; ++p) {
    send_bytes_[p] = send_records_[p] * stride * sizeof(float);
    recv_bytes_[p] = recv_records_[p] * stride * sizeof(float);
    received += static_cast<int>(recv_records_[p]);
    if (p != me) remote_bytes_sent_ += send_bytes_[p];
  }
  const float* records = send_.data();  // one rank: its records are already in place
  const float* headers = send_headers_.data();
  int parse_hidden = 0;  // headers packed (hidden 0) or inside whole records (hidden h)
  if (ranks > 1) {
    GRACE_RETURN_IF_ERROR(recv_.Resize(static_cast<size_t>(received) * stride));
    const float* host_records = nullptr;
    GRACE_RETURN_IF_ERROR(
        Exchange(send_.data(), send_bytes_, recv_.data(), recv_bytes_, &host_records));
    records = recv_.data();
    if (host_records != nullptr) {
      headers = host_records;
      parse_hidden = h;
    } else {
      GRACE_RETURN_IF_ERROR(headers_host_.Resize(static_cast<size_t>(received) * header));
      if (received > 0) {
        GRACE_RETURN_IF_ERROR(
            CudaStatus(cudaMemcpy2DAsync(headers_host_.data(), header * sizeof(float), recv_.data(),
                                         stride * sizeof(float), header * sizeof(float), received,
                                         cudaMemcpyDeviceToHost, stream()),
                       "received headers to host"));
      }
      GRACE_RETURN_IF_ERROR(WaitFor(host_wait_, "wait for the received headers"));
      headers = headers_host_.data();
    }
  }
  times->dispatch += Since(t);

  // Expert FFN over the received rows, grouped by local slot.
  layout_.BuildReceive(headers, received, k, parse_hidden, slots_per_rank_);
  const int rows = layout_.receive_rows();
  const std::vector<int32_t>& slot_rows = layout_.slot_row_offsets();
  for (int i = 0; i < slots_per_rank_; ++i)
    measured_.slot_pairs[i] = slot_rows[i + 1] - slot_rows[i];
  // recv_meta: row_record [rows] | record_row_offsets [received + 1] | record_rows [rows]
  // | record_row_weights [rows].
  const size_t row_offsets_at = rows, rows_at = row_offsets_at + received + 1,
               weights_at = rows_at + rows;
  const size_t recv_words = weights_at + rows;
  GRACE_RETURN_IF_ERROR(recv_meta_host_.Resize(recv_words));
  GRACE_RETURN_IF_ERROR(recv_meta_.Resize(recv_words));
  int32_t* rm = recv_meta_host_.data();
  std::memcpy(rm, layout_.row_record().data(), rows * sizeof(int32_t));
  std::memcpy(rm + row_offsets_at, layout_.record_row_offsets().data(),
              (received + 1) * sizeof(int32_t));
  std::memcpy(rm + rows_at, layout_.record_rows().data(), rows * sizeof(int32_t));
  std::memcpy(rm + weights_at, layout_.record_row_weights().data(), rows * sizeof(float));
  GRACE_RETURN_IF_ERROR(CopyAsync(recv_meta_.data(), rm, recv_words * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, stream(), "receive layout to device"));
  GRACE_RETURN_IF_ERROR(rows_in_.Resize(static_cast<size_t>(rows) * h));
  GRACE_RETURN_IF_ERROR(rows_out_.Resize(static_cast<size_t>(rows) * h));
  GRACE_RETURN_IF_ERROR(partial_.Resize(static_cast<size_t>(received) * h));
  cuda::PermuteRowsToBf16(records + header, stride, recv_meta_.data(), rows, h, rows_in_.data(), h,
                          stream());
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "PermuteRowsToBf16 launch"));
  GRACE_RETURN_IF_ERROR(
      ffn_->Enqueue(layer_index, slot_rows.data(), rows_in_.data(), rows_out_.data()));
  // Unpermute: one gate-weighted partial sum per received record.
  cuda::UnpermuteCombineFromBf16(rows_out_.data(), h, recv_meta_.data() + row_offsets_at,
                                 recv_meta_.data() + rows_at,
                                 reinterpret_cast<const float*>(recv_meta_.data() + weights_at),
                                 received, h, partial_.data(), h, stream());
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "UnpermuteCombineFromBf16 launch"));
  times->ffn += Since(t);

  // Combine: the partial sums back to their home ranks, summed per token into x.
  for (int p = 0; p < ranks; ++p) {
    send_bytes_[p] = recv_records_[p] * h * sizeof(float);
    recv_bytes_[p] = send_records_[p] * h * sizeof(float);
    if (p != me) remote_bytes_sent_ += send_bytes_[p];
  }
  const float* combined = partial_.data();
  if (ranks > 1) {
    GRACE_RETURN_IF_ERROR(combined_.Resize(static_cast<size_t>(sent) * h));
    const float* unused = nullptr;
    GRACE_RETURN_IF_ERROR(
        Exchange(partial_.data(), send_bytes_, combined_.data(), recv_bytes_, &unused));
    combined = combined_.data();
  }
  cuda::UnpermuteCombineAdd(combined, h, send_meta_.data() + offsets_at,
                            send_meta_.data() + records_at, nullptr, tokens, h, x_.data(), h,
                            stream());
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "UnpermuteCombineAdd launch"));
  times->combine += Since(t);
  return Status::Ok();
}

Status CudaMoeLayer::EndStep(float* x) {
  GRACE_RETURN_IF_ERROR(ffn_->UseDevice());
  const size_t n = static_cast<size_t>(tokens_) * shape_.hidden;
  GRACE_RETURN_IF_ERROR(CopyAsync(x_stage_.data(), x_.data(), n * sizeof(float),
                                  cudaMemcpyDeviceToHost, stream(), "hidden states to host"));
  GRACE_RETURN_IF_ERROR(WaitFor(host_wait_, "wait for the step"));
  if (n > 0) std::memcpy(x, x_stage_.data(), n * sizeof(float));
  return Status::Ok();
}

Status CudaMoeLayer::DownloadLoadCounts(std::vector<uint64_t>* load,
                                        std::vector<uint64_t>* coactivation) {
  GRACE_RETURN_IF_ERROR(ffn_->UseDevice());
  std::vector<unsigned long long> l(load_.size()), c(coactivation_.size());
  GRACE_RETURN_IF_ERROR(load_.Download(l.data(), l.size(), stream()));
  GRACE_RETURN_IF_ERROR(coactivation_.Download(c.data(), c.size(), stream()));
  GRACE_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream()), "cudaStreamSynchronize"));
  load->assign(l.begin(), l.end());
  coactivation->assign(c.begin(), c.end());
  return Status::Ok();
}

}  // namespace grace
