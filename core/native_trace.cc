#include "core/native_trace.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "core/checksum.h"

namespace grace {

static_assert(std::endian::native == std::endian::little,
              "the native trace format is little-endian and read without byte swaps");

namespace {

constexpr uint32_t kStepTag = 0x50455453;  // "STEP"
constexpr uint32_t kEndTag = 0x2E444E45;   // "END."
constexpr uint8_t kHasHomeRank = 1;
constexpr uint8_t kHasWeights = 2;
constexpr uint8_t kHasCoactivation = 4;
constexpr size_t kFixedPrefixBytes = 20;  // magic, version, header bytes, header CRC
constexpr size_t kChunkHeaderBytes = 16;
constexpr size_t kStepFixedBytes = 8;
constexpr int kMaxLayers = 1 << 16;
constexpr int kMaxExperts = 1 << 20;
constexpr int kMaxTopK = 1024;

int IdWidth(int num_experts) {
  return num_experts <= 256 ? 1 : num_experts <= 65536 ? 2 : 4;
}

// Appends little-endian fields to a byte string.
class ByteWriter {
 public:
  template <typename T>
  void Put(T v) {
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    bytes_ += s;
  }
  void PutDoubles(const std::vector<double>& v) {
    Put<uint64_t>(v.size());
    bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
  }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

// Reads the header's fields with bounds checks; errors give the file offset of the field.
class ByteReader {
 public:
  ByteReader(std::string_view bytes, const std::string& file, uint64_t base)
      : bytes_(bytes), file_(file), base_(base) {}

  template <typename T>
  Status Get(T* v, const char* what) {
    GRACE_RETURN_IF_ERROR(Need(sizeof(T), what));
    std::memcpy(v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status GetString(std::string* s, const char* what) {
    uint32_t n = 0;
    GRACE_RETURN_IF_ERROR(Get(&n, what));
    GRACE_RETURN_IF_ERROR(Need(n, what));
    s->assign(bytes_.data() + pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  Status GetDoubles(std::vector<double>* v, const char* what) {
    uint64_t n = 0;
    GRACE_RETURN_IF_ERROR(Get(&n, what));
    if (n > (bytes_.size() - pos_) / sizeof(double)) return Error(what, "count past the header");
    v->resize(n);
    std::memcpy(v->data(), bytes_.data() + pos_, n * sizeof(double));
    pos_ += n * sizeof(double);
    return Status::Ok();
  }
  Status GetCount(uint32_t* n, uint32_t max, const char* what) {
    GRACE_RETURN_IF_ERROR(Get(n, what));
    if (*n > max) return Error(what, std::to_string(*n) + " is over " + std::to_string(max));
    return Status::Ok();
  }
  Status Error(const char* what, const std::string& problem) const {
    return DataLoss(file_ + ": byte offset " + std::to_string(base_ + pos_) + ": header " + what +
                    ": " + problem);
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  Status Need(size_t n, const char* what) const {
    if (n > bytes_.size() - pos_) return Error(what, "runs past the header's end");
    return Status::Ok();
  }
  std::string_view bytes_;
  const std::string& file_;
  uint64_t base_;
  size_t pos_ = 0;
};

std::string At(const InputFile& in, uint64_t offset) {
  return in.name() + ": byte offset " + std::to_string(offset) + ": ";
}

}  // namespace

// ---- Writer ---------------------------------------------------------------------------------

StatusOr<NativeTraceWriter> NativeTraceWriter::Create(const std::string& path,
                                                      const TraceInfo& info,
                                                      const NativeTraceExtras& extras) {
  if (info.num_experts < 1 || info.num_experts > kMaxExperts || info.top_k < 0 ||
      info.top_k > kMaxTopK || info.num_layers() < 1 || info.num_layers() > kMaxLayers ||
      (info.kind == TraceKind::kTokens && info.top_k < 1)) {
    return InvalidArgument(path + ": cannot write a native trace of " +
                           std::to_string(info.num_layers()) + " layers, " +
                           std::to_string(info.num_experts) + " experts, top-" +
                           std::to_string(info.top_k));
  }
  GRACE_ASSIGN_OR_RETURN(OutputFile out, OutputFile::Create(path));
  const int id_width = IdWidth(info.num_experts);
  ByteWriter h;
  h.PutString(info.format);
  h.PutString(info.model);
  h.PutString(info.domain);
  h.Put<uint8_t>(static_cast<uint8_t>(info.kind));
  h.Put<uint8_t>(static_cast<uint8_t>(id_width));
  h.Put<int32_t>(info.num_experts);
  h.Put<int32_t>(info.top_k);
  h.Put<uint32_t>(static_cast<uint32_t>(info.num_layers()));
  for (LayerId l : info.layer_ids) h.Put<int32_t>(l);
  h.PutString(extras.source_format.empty() ? info.format : extras.source_format);
  const auto& files = extras.source_files.empty() ? info.sources : extras.source_files;
  h.Put<uint32_t>(static_cast<uint32_t>(files.size()));
  for (const std::string& s : files) h.PutString(s);
  h.Put<uint32_t>(static_cast<uint32_t>(extras.dropped.size()));
  for (const DroppedRecords& d : extras.dropped) {
    h.Put<int64_t>(d.count);
    h.PutString(d.reason);
  }
  h.Put<uint32_t>(static_cast<uint32_t>(extras.notes.size()));
  for (const std::string& n : extras.notes) h.PutString(n);
  h.Put<uint32_t>(static_cast<uint32_t>(extras.cross_layer.size()));
  for (const CrossLayerCounts& c : extras.cross_layer) {
    h.Put<int32_t>(c.from_layer);
    h.Put<int32_t>(c.to_layer);
    h.PutDoubles(c.matrix);
  }
  const std::string& header = h.bytes();
  ByteWriter prefix;
  prefix.bytes().append(kNativeTraceMagic, sizeof(kNativeTraceMagic));
  prefix.Put<uint32_t>(kNativeTraceVersion);
  prefix.Put<uint32_t>(static_cast<uint32_t>(header.size()));
  prefix.Put<uint32_t>(Crc32c(header.data(), header.size()));
  GRACE_RETURN_IF_ERROR(out.Write(prefix.bytes().data(), prefix.bytes().size()));
  GRACE_RETURN_IF_ERROR(out.Write(header.data(), header.size()));
  return NativeTraceWriter(std::move(out), info, id_width);
}

Status NativeTraceWriter::Append(const TraceStep& step) {
  const std::string where = out_.name() + ": step " + std::to_string(steps_) + ": ";
  if (step.kind != info_.kind) {
    return InvalidArgument(where + TraceKindName(step.kind) + " step in a " +
                           TraceKindName(info_.kind) + " trace");
  }
  const size_t layers = info_.layer_ids.size();
  const size_t experts = static_cast<size_t>(info_.num_experts);
  unsigned char fixed[kStepFixedBytes] = {static_cast<unsigned char>(step.kind), 0, 0, 0};
  std::vector<std::pair<const void*, size_t>> parts;
  if (step.kind == TraceKind::kTokens) {
    const TokenBatch& t = step.tokens;
    const size_t ids = layers * static_cast<size_t>(t.num_tokens) * info_.top_k;
    if (t.num_tokens < 0 || t.expert_ids.size() != ids ||
        (!t.gate_weights.empty() && t.gate_weights.size() != ids) ||
        (!t.home_rank.empty() && t.home_rank.size() != static_cast<size_t>(t.num_tokens))) {
      return InvalidArgument(where + "sizes do not match " + std::to_string(t.num_tokens) +
                             " tokens x " + std::to_string(layers) + " layers x top-" +
                             std::to_string(info_.top_k));
    }
    fixed[1] =
        (t.home_rank.empty() ? 0 : kHasHomeRank) | (t.gate_weights.empty() ? 0 : kHasWeights);
    const uint32_t tokens = static_cast<uint32_t>(t.num_tokens);
    std::memcpy(fixed + 4, &tokens, 4);
    scratch_.resize(ids * id_width_);
    for (size_t i = 0; i < ids; ++i) {
      const ExpertId e = t.expert_ids[i];
      if (e < 0 || static_cast<size_t>(e) >= experts) {
        return InvalidArgument(where + "expert id " + std::to_string(e) + " at index " +
                               std::to_string(i) + " is out of range [0, " +
                               std::to_string(experts) + ")");
      }
      if (id_width_ == 1) {
        scratch_[i] = static_cast<unsigned char>(e);
      } else if (id_width_ == 2) {
        const uint16_t v = static_cast<uint16_t>(e);
        std::memcpy(&scratch_[2 * i], &v, 2);
      }
    }
    if (!t.home_rank.empty()) parts.push_back({t.home_rank.data(), t.home_rank.size() * 4});
    if (id_width_ == 4) {
      parts.push_back({t.expert_ids.data(), ids * 4});
    } else {
      parts.push_back({scratch_.data(), scratch_.size()});
    }
    if (!t.gate_weights.empty()) parts.push_back({t.gate_weights.data(), ids * 4});
  } else {
    const CountBatch& c = step.counts;
    if (c.counts.size() != layers * experts ||
        (!c.coactivation.empty() && c.coactivation.size() != layers * experts * experts)) {
      return InvalidArgument(where + "count sizes do not match " + std::to_string(layers) +
                             " layers x " + std::to_string(experts) + " experts");
    }
    for (double v : c.counts) {
      if (!std::isfinite(v) || v < 0) {
        return InvalidArgument(where + "counts must be finite and non-negative");
      }
    }
    fixed[1] = c.coactivation.empty() ? 0 : kHasCoactivation;
    parts.push_back({c.counts.data(), c.counts.size() * 8});
    if (!c.coactivation.empty())
      parts.push_back({c.coactivation.data(), c.coactivation.size() * 8});
  }
  uint64_t payload = kStepFixedBytes;
  uint32_t crc = Crc32c(fixed, kStepFixedBytes);
  for (auto [data, n] : parts) {
    payload += n;
    crc = Crc32c(data, n, crc);
  }
  unsigned char chunk[kChunkHeaderBytes];
  std::memcpy(chunk, &kStepTag, 4);
  std::memcpy(chunk + 4, &crc, 4);
  std::memcpy(chunk + 8, &payload, 8);
  GRACE_RETURN_IF_ERROR(out_.Write(chunk, sizeof(chunk)));
  GRACE_RETURN_IF_ERROR(out_.Write(fixed, sizeof(fixed)));
  for (auto [data, n] : parts) GRACE_RETURN_IF_ERROR(out_.Write(data, n));
  ++steps_;
  return Status::Ok();
}

Status NativeTraceWriter::Close() {
  const uint64_t steps = static_cast<uint64_t>(steps_);
  const uint64_t payload = 8;
  const uint32_t crc = Crc32c(&steps, 8);
  unsigned char chunk[kChunkHeaderBytes + 8];
  std::memcpy(chunk, &kEndTag, 4);
  std::memcpy(chunk + 4, &crc, 4);
  std::memcpy(chunk + 8, &payload, 8);
  std::memcpy(chunk + 16, &steps, 8);
  GRACE_RETURN_IF_ERROR(out_.Write(chunk, sizeof(chunk)));
  return out_.Close();
}

// ---- Reader ---------------------------------------------------------------------------------

StatusOr<NativeTraceReader> NativeTraceReader::Open(const std::string& path) {
  GRACE_ASSIGN_OR_RETURN(InputFile in, InputFile::Open(path));
  return ReadHeader(std::move(in));
}

StatusOr<NativeTraceReader> NativeTraceReader::FromMemory(std::string bytes, std::string name) {
  GRACE_ASSIGN_OR_RETURN(InputFile in, InputFile::FromMemory(std::move(bytes), std::move(name)));
  return ReadHeader(std::move(in));
}

StatusOr<NativeTraceReader> NativeTraceReader::ReadHeader(InputFile in) {
  unsigned char prefix[kFixedPrefixBytes];
  GRACE_RETURN_IF_ERROR(in.ReadExact(prefix, sizeof(prefix), "file header"));
  if (std::memcmp(prefix, kNativeTraceMagic, sizeof(kNativeTraceMagic)) != 0) {
    return InvalidArgument(in.name() + ": byte offset 0: not a grace native trace (bad magic)");
  }
  uint32_t version, header_bytes, header_crc;
  std::memcpy(&version, prefix + 8, 4);
  std::memcpy(&header_bytes, prefix + 12, 4);
  std::memcpy(&header_crc, prefix + 16, 4);
  if (version != kNativeTraceVersion) {
    return InvalidArgument(At(in, 8) + "format version " + std::to_string(version) +
                           ", this grace reads version " + std::to_string(kNativeTraceVersion));
  }
  std::string header(header_bytes <= in.size() - in.offset() ? header_bytes : 0, '\0');
  if (header.size() != header_bytes) {
    return DataLoss(At(in, 12) + "header of " + std::to_string(header_bytes) +
                    " bytes runs past the end of the file (" + std::to_string(in.size()) +
                    " bytes): truncated");
  }
  GRACE_RETURN_IF_ERROR(in.ReadExact(header.data(), header.size(), "header"));
  if (Crc32c(header.data(), header.size()) != header_crc) {
    return DataLoss(At(in, kFixedPrefixBytes) + "header checksum mismatch: garbled");
  }
  NativeTraceReader r(std::move(in));
  ByteReader h(header, r.in_.name(), kFixedPrefixBytes);
  TraceInfo& info = r.info_;
  std::string original_format;
  uint8_t kind = 0, width = 0;
  uint32_t layers = 0, n = 0;
  GRACE_RETURN_IF_ERROR(h.GetString(&original_format, "format"));
  GRACE_RETURN_IF_ERROR(h.GetString(&info.model, "model"));
  GRACE_RETURN_IF_ERROR(h.GetString(&info.domain, "domain"));
  GRACE_RETURN_IF_ERROR(h.Get(&kind, "kind"));
  GRACE_RETURN_IF_ERROR(h.Get(&width, "id width"));
  GRACE_RETURN_IF_ERROR(h.Get(&info.num_experts, "num_experts"));
  GRACE_RETURN_IF_ERROR(h.Get(&info.top_k, "top_k"));
  GRACE_RETURN_IF_ERROR(h.GetCount(&layers, kMaxLayers, "num_layers"));
  if (kind > 1) return h.Error("kind", "expected 0 (tokens) or 1 (counts)");
  info.kind = static_cast<TraceKind>(kind);
  if (info.num_experts < 1 || info.num_experts > kMaxExperts || info.top_k < 0 ||
      info.top_k > kMaxTopK || info.top_k > info.num_experts || layers < 1 ||
      (info.kind == TraceKind::kTokens && info.top_k < 1)) {
    return h.Error("shape", std::to_string(layers) + " layers, " +
                                std::to_string(info.num_experts) + " experts, top-" +
                                std::to_string(info.top_k) + " is not a valid trace");
  }
  if (width != IdWidth(info.num_experts)) {
    return h.Error("id width", std::to_string(width) + " does not fit " +
                                   std::to_string(info.num_experts) + " experts");
  }
  r.id_width_ = width;
  info.layer_ids.resize(layers);
  for (LayerId& l : info.layer_ids) GRACE_RETURN_IF_ERROR(h.Get(&l, "layer id"));
  NativeTraceExtras& x = r.extras_;
  GRACE_RETURN_IF_ERROR(h.GetString(&x.source_format, "source format"));
  GRACE_RETURN_IF_ERROR(h.GetCount(&n, header_bytes / 4, "source files"));
  x.source_files.resize(n);
  for (std::string& s : x.source_files) GRACE_RETURN_IF_ERROR(h.GetString(&s, "source file"));
  GRACE_RETURN_IF_ERROR(h.GetCount(&n, header_bytes / 12, "dropped records"));
  x.dropped.resize(n);
  for (DroppedRecords& d : x.dropped) {
    GRACE_RETURN_IF_ERROR(h.Get(&d.count, "dropped count"));
    GRACE_RETURN_IF_ERROR(h.GetString(&d.reason, "dropped reason"));
  }
  GRACE_RETURN_IF_ERROR(h.GetCount(&n, header_bytes / 4, "notes"));
  x.notes.resize(n);
  for (std::string& s : x.notes) GRACE_RETURN_IF_ERROR(h.GetString(&s, "note"));
  GRACE_RETURN_IF_ERROR(h.GetCount(&n, header_bytes / 16, "cross-layer matrices"));
  x.cross_layer.resize(n);
  const size_t square = static_cast<size_t>(info.num_experts) * info.num_experts;
  for (CrossLayerCounts& c : x.cross_layer) {
    GRACE_RETURN_IF_ERROR(h.Get(&c.from_layer, "cross-layer from"));
    GRACE_RETURN_IF_ERROR(h.Get(&c.to_layer, "cross-layer to"));
    GRACE_RETURN_IF_ERROR(h.GetDoubles(&c.matrix, "cross-layer matrix"));
    if (c.matrix.size() != square) return h.Error("cross-layer matrix", "not experts x experts");
  }
  if (!h.done()) return h.Error("end", "unexpected bytes after the last field");
  info.format = "native";
  info.sources = {r.in_.name()};
  r.first_chunk_offset_ = r.in_.offset();
  return r;
}

Status NativeTraceReader::Rewind() {
  GRACE_RETURN_IF_ERROR(in_.Seek(first_chunk_offset_));
  steps_read_ = 0;
  finished_ = false;
  return Status::Ok();
}

StatusOr<bool> NativeTraceReader::Next(TraceStep* step) {
  if (finished_) return false;
  const uint64_t chunk_offset = in_.offset();
  if (chunk_offset == in_.size()) {
    return DataLoss(At(in_, chunk_offset) + "truncated: the file ends after step " +
                    std::to_string(steps_read_) + " without its end chunk");
  }
  unsigned char chunk[kChunkHeaderBytes];
  GRACE_RETURN_IF_ERROR(in_.ReadExact(chunk, sizeof(chunk), "chunk header"));
  uint32_t tag, crc;
  uint64_t payload;
  std::memcpy(&tag, chunk, 4);
  std::memcpy(&crc, chunk + 4, 4);
  std::memcpy(&payload, chunk + 8, 8);
  if (tag != kStepTag && tag != kEndTag) {
    return DataLoss(At(in_, chunk_offset) + "garbled: expected a step or end chunk");
  }
  if (payload > in_.size() - in_.offset()) {
    return DataLoss(At(in_, chunk_offset) + "truncated: chunk of " + std::to_string(payload) +
                    " bytes, " + std::to_string(in_.size() - in_.offset()) + " left in the file");
  }
  if (tag == kEndTag) {
    uint64_t steps = 0;
    if (payload != 8) return DataLoss(At(in_, chunk_offset) + "garbled end chunk");
    GRACE_RETURN_IF_ERROR(in_.ReadExact(&steps, 8, "end chunk"));
    if (Crc32c(&steps, 8) != crc || steps != static_cast<uint64_t>(steps_read_)) {
      return DataLoss(At(in_, chunk_offset) + "garbled end chunk: it counts " +
                      std::to_string(steps) + " steps, " + std::to_string(steps_read_) +
                      " were read");
    }
    if (in_.offset() != in_.size()) {
      return DataLoss(At(in_, in_.offset()) + "unexpected bytes after the end chunk");
    }
    finished_ = true;
    return false;
  }
  unsigned char fixed[kStepFixedBytes];
  if (payload < kStepFixedBytes) return DataLoss(At(in_, chunk_offset) + "garbled: short step");
  const uint64_t payload_start = in_.offset();
  GRACE_RETURN_IF_ERROR(in_.ReadExact(fixed, sizeof(fixed), "step header"));
  if (fixed[0] != static_cast<uint8_t>(info_.kind)) {
    return DataLoss(At(in_, payload_start) + "garbled: step kind " + std::to_string(fixed[0]) +
                    " in a " + TraceKindName(info_.kind) + " trace");
  }
  Status s = info_.kind == TraceKind::kTokens
                 ? ReadTokens(payload, payload_start, crc, fixed, step)
                 : ReadCounts(payload, payload_start, crc, fixed, step);
  GRACE_RETURN_IF_ERROR(s);
  ++steps_read_;
  return true;
}

Status NativeTraceReader::ReadTokens(uint64_t payload_bytes, uint64_t payload_start,
                                     uint32_t expected_crc, const unsigned char* fixed,
                                     TraceStep* step) {
  const uint8_t flags = fixed[1];
  uint32_t tokens;
  std::memcpy(&tokens, fixed + 4, 4);
  if ((flags & ~(kHasHomeRank | kHasWeights)) != 0 || tokens > INT32_MAX) {
    return DataLoss(At(in_, payload_start) + "garbled step header");
  }
  const uint64_t ids = static_cast<uint64_t>(info_.layer_ids.size()) * tokens * info_.top_k;
  const uint64_t expected = kStepFixedBytes + ((flags & kHasHomeRank) ? 4ull * tokens : 0) +
                            ids * id_width_ + ((flags & kHasWeights) ? 4 * ids : 0);
  if (expected != payload_bytes) {
    return DataLoss(At(in_, payload_start) + "garbled: a step of " + std::to_string(tokens) +
                    " tokens needs " + std::to_string(expected) + " bytes, the chunk has " +
                    std::to_string(payload_bytes));
  }
  step->kind = TraceKind::kTokens;
  TokenBatch& t = step->tokens;
  t.num_tokens = static_cast<int>(tokens);
  uint32_t crc = Crc32c(fixed, kStepFixedBytes);
  if (flags & kHasHomeRank) {
    t.home_rank.resize(tokens);
    GRACE_RETURN_IF_ERROR(in_.ReadExact(t.home_rank.data(), 4ull * tokens, "home ranks"));
    crc = Crc32c(t.home_rank.data(), 4ull * tokens, crc);
  } else {
    t.home_rank.clear();
  }
  t.expert_ids.resize(ids);
  const uint64_t ids_offset = in_.offset();
  uint32_t max_id = 0;
  if (id_width_ == 4) {
    GRACE_RETURN_IF_ERROR(in_.ReadExact(t.expert_ids.data(), 4 * ids, "expert ids"));
    crc = Crc32c(t.expert_ids.data(), 4 * ids, crc);
    for (ExpertId e : t.expert_ids) max_id = std::max(max_id, static_cast<uint32_t>(e));
  } else {
    const size_t bytes = ids * id_width_;
    if (bytes > narrow_capacity_) {
      narrow_ids_.reset(new unsigned char[bytes]);  // uninitialised: it is filled at once
      narrow_capacity_ = bytes;
    }
    GRACE_RETURN_IF_ERROR(in_.ReadExact(narrow_ids_.get(), bytes, "expert ids"));
    crc = Crc32c(narrow_ids_.get(), bytes, crc);
    ExpertId* out = t.expert_ids.data();
    if (id_width_ == 1) {
      const unsigned char* in = narrow_ids_.get();
      unsigned char m = 0;
      for (size_t i = 0; i < ids; ++i) {
        out[i] = in[i];
        m = std::max(m, in[i]);
      }
      max_id = m;
    } else {
      uint16_t m = 0;
      for (size_t i = 0; i < ids; ++i) {
        uint16_t v;
        std::memcpy(&v, narrow_ids_.get() + 2 * i, 2);
        out[i] = v;
        m = std::max(m, v);
      }
      max_id = m;
    }
  }
  if (flags & kHasWeights) {
    t.gate_weights.resize(ids);
    GRACE_RETURN_IF_ERROR(in_.ReadExact(t.gate_weights.data(), 4 * ids, "gate weights"));
    crc = Crc32c(t.gate_weights.data(), 4 * ids, crc);
  } else {
    t.gate_weights.clear();
  }
  if (crc != expected_crc) {
    return DataLoss(At(in_, payload_start) + "garbled: step " + std::to_string(steps_read_) +
                    " checksum mismatch");
  }
  if (ids > 0 && max_id >= static_cast<uint32_t>(info_.num_experts)) {
    return DataLoss(At(in_, ids_offset) + "step " + std::to_string(steps_read_) +
                    ": expert id out of range for " + std::to_string(info_.num_experts) +
                    " experts");
  }
  return Status::Ok();
}

Status NativeTraceReader::ReadCounts(uint64_t payload_bytes, uint64_t payload_start,
                                     uint32_t expected_crc, const unsigned char* fixed,
                                     TraceStep* step) {
  const uint8_t flags = fixed[1];
  if ((flags & ~kHasCoactivation) != 0) {
    return DataLoss(At(in_, payload_start) + "garbled step header");
  }
  const uint64_t cells = static_cast<uint64_t>(info_.layer_ids.size()) * info_.num_experts;
  const uint64_t co = (flags & kHasCoactivation) ? cells * info_.num_experts : 0;
  if (kStepFixedBytes + 8 * (cells + co) != payload_bytes) {
    return DataLoss(At(in_, payload_start) + "garbled: a count step needs " +
                    std::to_string(kStepFixedBytes + 8 * (cells + co)) + " bytes, the chunk has " +
                    std::to_string(payload_bytes));
  }
  step->kind = TraceKind::kCounts;
  CountBatch& c = step->counts;
  uint32_t crc = Crc32c(fixed, kStepFixedBytes);
  c.counts.resize(cells);
  GRACE_RETURN_IF_ERROR(in_.ReadExact(c.counts.data(), 8 * cells, "counts"));
  crc = Crc32c(c.counts.data(), 8 * cells, crc);
  c.coactivation.resize(co);
  GRACE_RETURN_IF_ERROR(in_.ReadExact(c.coactivation.data(), 8 * co, "co-activation"));
  crc = Crc32c(c.coactivation.data(), 8 * co, crc);
  if (crc != expected_crc) {
    return DataLoss(At(in_, payload_start) + "garbled: step " + std::to_string(steps_read_) +
                    " checksum mismatch");
  }
  for (double v : c.counts) {
    if (!std::isfinite(v) || v < 0) {
      return DataLoss(At(in_, payload_start) + "step " + std::to_string(steps_read_) +
                      ": a count is negative or not finite");
    }
  }
  return Status::Ok();
}

// ---- Whole traces ---------------------------------------------------------------------------

Status WriteNativeTrace(const std::string& path, const Trace& trace) {
  NativeTraceExtras extras;
  extras.dropped = trace.dropped;
  extras.notes = trace.notes;
  extras.cross_layer = trace.cross_layer;
  GRACE_ASSIGN_OR_RETURN(NativeTraceWriter writer,
                         NativeTraceWriter::Create(path, trace.info, extras));
  for (const TraceStep& step : trace.steps) GRACE_RETURN_IF_ERROR(writer.Append(step));
  return writer.Close();
}

StatusOr<Trace> ReadNativeTrace(const std::string& path) {
  GRACE_ASSIGN_OR_RETURN(NativeTraceReader reader, NativeTraceReader::Open(path));
  Trace trace;
  trace.info = reader.info();
  const NativeTraceExtras& x = reader.extras();
  trace.dropped = x.dropped;
  trace.notes = x.notes;
  trace.cross_layer = x.cross_layer;
  if (x.source_format != "native") {
    std::string files;
    for (const std::string& f : x.source_files) files += (files.empty() ? "" : ", ") + f;
    trace.notes.push_back(path + ": converted from " + x.source_format + " (" + files + ")");
  }
  while (true) {
    TraceStep step;
    GRACE_ASSIGN_OR_RETURN(bool more, reader.Next(&step));
    if (!more) break;
    trace.steps.push_back(std::move(step));
  }
  return trace;
}

}  // namespace grace
