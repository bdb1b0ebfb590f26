#include "agent/moe_layer.h"

#include <chrono>

#include "kernels/permute.h"
#include "kernels/select_replicas.h"
#include "kernels/unpermute_combine.h"

namespace grace {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

MoeLayer::MoeLayer(const ModelShape& shape, int slots_per_rank, int ranks_per_node,
                   Transport* transport, ExpertBackend* backend)
    : shape_(shape),
      slots_per_rank_(slots_per_rank),
      ranks_per_node_(ranks_per_node),
      transport_(transport),
      backend_(backend) {
  measured_.token_bytes = static_cast<int64_t>(shape.hidden) * sizeof(float);
  measured_.slot_pairs.assign(slots_per_rank, 0);
}

Status MoeLayer::Run(const RoutingTable& table, int layer_index, uint64_t step, uint64_t route_seed,
                     const int64_t* token_ids, const int32_t* expert_ids, const float* gate_weights,
                     int tokens, float* x, StepTimes* times) {
  const int k = shape_.top_k, h = shape_.hidden, ranks = transport_->size();
  const RankId me = transport_->rank();
  const int stride = RecordWords(k, h), header = RecordHeaderWords(k);
  auto t = Clock::now();

  slots_.resize(static_cast<size_t>(tokens) * k);
  SelectReplicas(table, layer_index, me, expert_ids, token_ids, tokens, k, route_seed, step,
                 slots_.data());
  times->route += Since(t);

  layout_.BuildSend(slots_.data(), gate_weights, tokens, k, h, slots_per_rank_, ranks, &send_);
  const int sent = layout_.send_records();
  measured_.tokens = tokens;
  measured_.sends = layout_.CountSends(me, ranks_per_node_);
  PermuteRows(x, h, layout_.record_token().data(), sent, h, send_.data() + header, stride);
  times->permute += Since(t);

  send_records_.resize(ranks);
  recv_records_.resize(ranks);
  send_bytes_.resize(ranks);
  recv_bytes_.resize(ranks);
  for (int p = 0; p < ranks; ++p) send_records_[p] = layout_.records_per_rank()[p];
  GRACE_RETURN_IF_ERROR(
      transport_->AllToAll(send_records_.data(), recv_records_.data(), sizeof(uint64_t)));
  int received = 0;
  for (int p = 0; p < ranks; ++p) {
    send_bytes_[p] = send_records_[p] * stride * sizeof(float);
    recv_bytes_[p] = recv_records_[p] * stride * sizeof(float);
    received += static_cast<int>(recv_records_[p]);
    if (p != me) remote_bytes_sent_ += send_bytes_[p];
  }
  recv_.resize(static_cast<size_t>(received) * stride);
  GRACE_RETURN_IF_ERROR(
      transport_->AllToAllV(send_.data(), send_bytes_, recv_.data(), recv_bytes_));
  times->dispatch += Since(t);

  layout_.BuildReceive(recv_.data(), received, k, h, slots_per_rank_);
  const int rows = layout_.receive_rows();
  const std::vector<int32_t>& slot_rows = layout_.slot_row_offsets();
  for (int i = 0; i < slots_per_rank_; ++i)
    measured_.slot_pairs[i] = slot_rows[i + 1] - slot_rows[i];
  rows_in_.resize(static_cast<size_t>(rows) * h);
  rows_out_.resize(static_cast<size_t>(rows) * h);
  PermuteRows(recv_.data() + header, stride, layout_.row_record().data(), rows, h, rows_in_.data(),
              h);
  GRACE_RETURN_IF_ERROR(backend_->Run(layer_index, rows_in_.data(),
                                      layout_.slot_row_offsets().data(), rows_out_.data()));
  times->ffn += Since(t);

  // Unpermute on the expert rank: one partial sum per received record, gate-weighted.
  partial_.resize(static_cast<size_t>(received) * h);
  UnpermuteCombine(rows_out_.data(), h, layout_.record_row_offsets().data(),
                   layout_.record_rows().data(), layout_.record_row_weights().data(), received, h,
                   partial_.data(), h);
  for (int p = 0; p < ranks; ++p) {
    std::swap(send_bytes_[p], recv_bytes_[p]);
    send_bytes_[p] = send_bytes_[p] / stride * h;
    recv_bytes_[p] = recv_bytes_[p] / stride * h;
    if (p != me) remote_bytes_sent_ += send_bytes_[p];
  }
  combined_.resize(static_cast<size_t>(sent) * h);
  GRACE_RETURN_IF_ERROR(
      transport_->AllToAllV(partial_.data(), send_bytes_, combined_.data(), recv_bytes_));
  moe_out_.resize(static_cast<size_t>(tokens) * h);
  UnpermuteCombine(combined_.data(), h, layout_.token_record_offsets().data(),
                   layout_.token_records().data(), nullptr, tokens, h, moe_out_.data(), h);
  for (size_t i = 0; i < moe_out_.size(); ++i) x[i] += moe_out_[i];
  times->combine += Since(t);
  return Status::Ok();
}

}  // namespace grace
