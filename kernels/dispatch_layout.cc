#include "kernels/dispatch_layout.h"

#include <algorithm>
#include <cstring>

namespace grace {
namespace {

float BitsToFloat(int32_t v) {
  float f;
  std::memcpy(&f, &v, sizeof f);
  return f;
}
int32_t FloatToBits(float f) {
  int32_t v;
  std::memcpy(&v, &f, sizeof v);
  return v;
}

}  // namespace

void DispatchLayout::BuildSend(const SlotId* slots, const float* gate_weights, int tokens,
                               int top_k, int hidden, int slots_per_rank, int ranks,
                               std::vector<float>* send_words) {
  records_per_rank_.assign(ranks, 0);
  token_dest_.resize(static_cast<size_t>(tokens) * top_k);
  token_record_offsets_.resize(tokens + 1);
  // Pass 1: the distinct destination ranks of each token, in first-seen order.
  int32_t total = 0;
  for (int t = 0; t < tokens; ++t) {
    token_record_offsets_[t] = total;
    int32_t* dests = token_dest_.data() + static_cast<size_t>(t) * top_k;
    int n = 0;
    for (int k = 0; k < top_k; ++k) {
      const int32_t d = slots[t * top_k + k] / slots_per_rank;
      if (std::find(dests, dests + n, d) == dests + n) dests[n++] = d;
    }
    for (int i = 0; i < n; ++i) ++records_per_rank_[dests[i]];
    total += n;
  }
  token_record_offsets_[tokens] = total;
  cursor_.resize(ranks);
  int64_t acc = 0;
  for (int r = 0; r < ranks; ++r) {
    cursor_[r] = acc;
    acc += records_per_rank_[r];
  }
  // Pass 2: place each record and write its header.
  const int stride = RecordWords(top_k, hidden);
  record_token_.resize(total);
  token_records_.resize(total);
  send_words->resize(static_cast<size_t>(total) * stride);
  for (int t = 0; t < tokens; ++t) {
    const int n = token_record_offsets_[t + 1] - token_record_offsets_[t];
    const int32_t* dests = token_dest_.data() + static_cast<size_t>(t) * top_k;
    for (int i = 0; i < n; ++i) {
      const int64_t rec = cursor_[dests[i]]++;
      record_token_[rec] = t;
      token_records_[token_record_offsets_[t] + i] = static_cast<int32_t>(rec);
      float* h = send_words->data() + rec * stride;
      int count = 0;
      for (int k = 0; k < top_k; ++k) {
        const SlotId s = slots[t * top_k + k];
        if (s / slots_per_rank != dests[i]) continue;
        h[1 + 2 * count] = BitsToFloat(s % slots_per_rank);
        h[2 + 2 * count] = gate_weights[t * top_k + k];
        ++count;
      }
      h[0] = BitsToFloat(count);
      for (int j = count; j < top_k; ++j) h[1 + 2 * j] = h[2 + 2 * j] = 0.0f;
    }
  }
}

DispatchSends DispatchLayout::CountSends(RankId home, int ranks_per_node) const {
  DispatchSends out;
  const int tokens = static_cast<int>(token_record_offsets_.size()) - 1;
  const int top_k = tokens > 0 ? static_cast<int>(token_dest_.size() / tokens) : 0;
  const NodeId home_node = home / ranks_per_node;
  for (int t = 0; t < tokens; ++t) {
    // Pass 1 of BuildSend left the token's distinct destination ranks at the front of its row.
    const int32_t* dests = token_dest_.data() + static_cast<size_t>(t) * top_k;
    const int n = token_record_offsets_[t + 1] - token_record_offsets_[t];
    for (int i = 0; i < n; ++i) {
      if (dests[i] == home) continue;
      ++out.remote;
      const NodeId node = dests[i] / ranks_per_node;
      if (node == home_node) {
        ++out.node;
        continue;
      }
      bool seen = false;  // a node counts once: is it some earlier destination's node?
      for (int j = 0; j < i && !seen; ++j) seen = dests[j] / ranks_per_node == node;
      if (!seen) ++out.cross_node;
    }
  }
  return out;
}

void DispatchLayout::BuildReceive(const float* recv_words, int records, int top_k, int hidden,
                                  int local_slots) {
  const int stride = RecordWords(top_k, hidden);
  slot_row_offsets_.assign(local_slots + 1, 0);
  record_row_offsets_.resize(records + 1);
  int32_t rows = 0;
  for (int r = 0; r < records; ++r) {
    const float* h = recv_words + static_cast<int64_t>(r) * stride;
    const int count = FloatToBits(h[0]);
    record_row_offsets_[r] = rows;
    for (int j = 0; j < count; ++j) ++slot_row_offsets_[FloatToBits(h[1 + 2 * j]) + 1];
    rows += count;
  }
  record_row_offsets_[records] = rows;
  for (int s = 0; s < local_slots; ++s) slot_row_offsets_[s + 1] += slot_row_offsets_[s];
  slot_cursor_.assign(slot_row_offsets_.begin(), slot_row_offsets_.end() - 1);
  row_record_.resize(rows);
  record_rows_.resize(rows);
  record_row_weights_.resize(rows);
  for (int r = 0; r < records; ++r) {
    const float* h = recv_words + static_cast<int64_t>(r) * stride;
    const int count = FloatToBits(h[0]);
    for (int j = 0; j < count; ++j) {
      const int32_t row = slot_cursor_[FloatToBits(h[1 + 2 * j])]++;
      row_record_[row] = r;
      record_rows_[record_row_offsets_[r] + j] = row;
      record_row_weights_[record_row_offsets_[r] + j] = h[2 + 2 * j];
    }
  }
}

}  // namespace grace
