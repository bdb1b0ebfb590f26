// DispatchLayout: the bookkeeping of one rank's dispatch and combine for one MoE layer.
//
// Send side (home rank): each token gets one record per destination rank holding at least one
// of its chosen slots (a token bound for several experts on one rank is sent once). Records
// are ordered by destination rank. A record on the wire is RecordWords(top_k, hidden) 32-bit
// words: [count][top_k x (local slot, gate weight)][hidden floats].
// Receive side (expert rank): the rows each local slot computes, and for each received record
// the rows whose outputs it sums.
//
// Owned by one data-path thread. Vectors grow to the largest step seen and are then reused:
// no allocation in steady state.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ids.h"

namespace grace {

inline int RecordHeaderWords(int top_k) {
  return 1 + 2 * top_k;
}
inline int RecordWords(int top_k, int hidden) {
  return RecordHeaderWords(top_k) + hidden;
}

// The sends of one dispatch under the cost model's hierarchical rule (policy/cost_model.h): a
// token counts once per distinct GPU other than its home that holds one of its slots, and once
// per distinct node other than the home node. Sums over the tokens.
struct DispatchSends {
  int64_t node = 0;        // distinct other GPUs of the home node
  int64_t remote = 0;      // distinct GPUs other than home, on any node
  int64_t cross_node = 0;  // distinct nodes other than the home node
};

class DispatchLayout {
 public:
  // Plans the records of `tokens` tokens whose chosen slots and gate weights are
  // [tokens x top_k]; resizes `send_words` to hold them and writes their headers (the hidden
  // payload is PermuteRows' job, with record_token() as the source rows).
  void BuildSend(const SlotId* slots, const float* gate_weights, int tokens, int top_k, int hidden,
                 int slots_per_rank, int ranks, std::vector<float>* send_words);

  // Parses `records` received records (headers as BuildSend wrote them) for a rank with
  // `local_slots` slots.
  void BuildReceive(const float* recv_words, int records, int top_k, int hidden, int local_slots);

  // Send side.
  int send_records() const { return static_cast<int>(record_token_.size()); }
  const std::vector<int32_t>& record_token() const { return record_token_; }  // [record]
  const std::vector<int64_t>& records_per_rank() const { return records_per_rank_; }
  // CSR token -> the records (send order) that carry it.
  const std::vector<int32_t>& token_record_offsets() const { return token_record_offsets_; }
  const std::vector<int32_t>& token_records() const { return token_records_; }

  // The sends of the last BuildSend's tokens, homed on `home`, with ranks_per_node GPUs a node.
  DispatchSends CountSends(RankId home, int ranks_per_node) const;

  // Receive side.
  int receive_rows() const { return static_cast<int>(row_record_.size()); }
  const std::vector<int32_t>& slot_row_offsets() const { return slot_row_offsets_; }  // [S+1]
  const std::vector<int32_t>& row_record() const { return row_record_; }              // [row]
  const std::vector<int32_t>& record_row_offsets() const { return record_row_offsets_; }
  const std::vector<int32_t>& record_rows() const { return record_rows_; }
  const std::vector<float>& record_row_weights() const { return record_row_weights_; }

 private:
  std::vector<int32_t> record_token_;
  std::vector<int64_t> records_per_rank_;
  std::vector<int32_t> token_record_offsets_;
  std::vector<int32_t> token_records_;
  std::vector<int32_t> token_dest_;  // scratch: [token x top_k] destination of each record
  std::vector<int64_t> cursor_;

  std::vector<int32_t> slot_row_offsets_;
  std::vector<int32_t> row_record_;
  std::vector<int32_t> record_row_offsets_;
  std::vector<int32_t> record_rows_;
  std::vector<float> record_row_weights_;
  std::vector<int32_t> slot_cursor_;
};

}  // namespace grace
