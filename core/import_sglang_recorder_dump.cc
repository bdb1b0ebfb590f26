// SGLang's expert distribution recorder dumps (python/sglang/srt/eplb/expert_distribution.py),
// torch.save files read with core/torch_pickle.h. The recorder mode decides the dict:
//
//   stat, stat_approx  {"rank", "logical_count": int [buffer, layers, experts],
//                       "average_utilization_rate_over_window": None | float}, written by rank 0
//                      after an all-reduce: every rank's tokens. A fixed-size buffer
//                      (--expert-distribution-recorder-buffer-size N) is circular and zero
//                      where no pass has written yet; those rows are dropped and reported.
//   per_pass           {"records": [{"forward_pass_id", "rank", "gatherer_key",
//                       "global_physical_count": int [layers, physical slots]}],
//                       "last_physical_to_logical_map": int [layers, physical slots]}, one file
//                      per rank holding that rank's tokens.
//   per_token          the same, each record with "topk_ids_of_layer": int [layers, tokens, 8]
//                      physical slot ids, -1 where unused (dense layers, k < 8).
//
// Layers are the model's layers (dense ones too); physical slots are mapped to logical experts
// with last_physical_to_logical_map, the map at dump time.
#include <algorithm>
#include <map>

#include "core/import_formats.h"
#include "core/torch_pickle.h"

namespace grace {
namespace {

using Value = TorchSaveFile::Value;

std::string Field(const std::string& path, const std::string& field) {
  return path + ": field \"" + field + "\": ";
}

// A tensor field of integers with `rank` dimensions, each at least 1 (any of `ranks` when two).
StatusOr<const TorchTensor*> IntTensor(const Value& dict, const std::string& key,
                                       const std::string& field, const std::string& path,
                                       std::vector<size_t> ranks) {
  std::optional<Value> v = dict.Find(key);
  if (!v) return InvalidArgument(Field(path, field) + "missing");
  if (!v->is_tensor()) {
    return InvalidArgument(Field(path, field) + "expected a tensor, got " +
                           TorchSaveFile::KindName(v->kind()));
  }
  const TorchTensor& t = v->AsTensor();
  if (std::find(ranks.begin(), ranks.end(), t.shape.size()) == ranks.end()) {
    return InvalidArgument(Field(path, field) + "expected " + std::to_string(ranks.back()) +
                           " dimensions, got " + std::to_string(t.shape.size()));
  }
  const TorchDtype d = t.dtype;
  if (d == TorchDtype::kFloat16 || d == TorchDtype::kBFloat16 || d == TorchDtype::kFloat32 ||
      d == TorchDtype::kFloat64 || d == TorchDtype::kBool) {
    return InvalidArgument(Field(path, field) + "expected an integer tensor, got " +
                           TorchDtypeName(d));
  }
  return &t;
}

std::string Shape(const TorchTensor& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + "]";
}

StatusOr<Trace> ImportStat(const Value& root, const std::string& path, Trace trace) {
  GRACE_ASSIGN_OR_RETURN(const TorchTensor* t,
                         IntTensor(root, "logical_count", "logical_count", path, {2, 3}));
  const bool one = t->shape.size() == 2;
  const int64_t rows = one ? 1 : t->shape[0];
  const int64_t layers = t->shape[one ? 0 : 1];
  const int64_t experts = t->shape[one ? 1 : 2];
  if (layers < 1 || experts < 1 || experts > 65536 || layers > 100000) {
    return InvalidArgument(Field(path, "logical_count") + "shape " + Shape(*t) +
                           " is not [buffer, layers 1.., experts 1..65536]");
  }
  GRACE_ASSIGN_OR_RETURN(std::vector<int64_t> v, t->ToInt64());
  const size_t per_row = static_cast<size_t>(layers * experts);
  int64_t zero_rows = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const auto begin = v.begin() + static_cast<int64_t>(r * per_row);
    if (auto neg = std::find_if(begin, begin + static_cast<int64_t>(per_row),
                                [](int64_t x) { return x < 0; });
        neg != begin + static_cast<int64_t>(per_row)) {
      const int64_t i = neg - begin;
      return InvalidArgument(Field(path, "logical_count[" + std::to_string(r) + "][" +
                                             std::to_string(i / experts) + "][" +
                                             std::to_string(i % experts) + "]") +
                             "negative count " + std::to_string(*neg));
    }
    if (std::all_of(begin, begin + static_cast<int64_t>(per_row),
                    [](int64_t x) { return x == 0; })) {
      ++zero_rows;
      continue;
    }
    TraceStep step;
    step.kind = TraceKind::kCounts;
    step.counts.counts.assign(begin, begin + static_cast<int64_t>(per_row));
    trace.steps.push_back(std::move(step));
  }
  if (trace.steps.empty()) {
    return InvalidArgument(Field(path, "logical_count") + "all " + std::to_string(rows) +
                           " buffer rows are zero: nothing was recorded (start the record "
                           "before sending traffic, stop and dump after)");
  }
  if (zero_rows > 0) {
    trace.dropped.push_back({zero_rows, path + ": " + std::to_string(zero_rows) + " of " +
                                            std::to_string(rows) +
                                            " buffer rows of \"logical_count\" are all zero "
                                            "(slots of the recorder's buffer no forward pass "
                                            "filled)"});
  }
  trace.info.num_experts = static_cast<int>(experts);
  for (int64_t l = 0; l < layers; ++l) trace.info.layer_ids.push_back(static_cast<LayerId>(l));
  std::string note = path + ": SGLang recorder stat dump, rank " +
                     std::to_string(root.Find("rank") ? root.Find("rank")->AsInt() : 0) + ", " +
                     std::to_string(trace.steps.size()) + " forward passes";
  if (auto u = root.Find("average_utilization_rate_over_window"); u && u->is_number()) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), ", average utilization %.3f", u->AsDouble());
    note += buf;
  }
  trace.notes.push_back(note);
  NoteCountAnomalies(&trace);
  return trace;
}

// last_physical_to_logical_map as [layer][slot] -> expert, and the number of logical experts.
struct SlotMap {
  int64_t layers = 0, slots = 0;
  std::vector<int64_t> expert;  // [layer * slots + slot]
  int num_experts = 0;
};

StatusOr<SlotMap> ReadSlotMap(const Value& root, const std::string& path) {
  const std::string field = "last_physical_to_logical_map";
  GRACE_ASSIGN_OR_RETURN(const TorchTensor* t, IntTensor(root, field, field, path, {2}));
  SlotMap m;
  m.layers = t->shape[0];
  m.slots = t->shape[1];
  if (m.layers < 1 || m.slots < 1) {
    return InvalidArgument(Field(path, field) + "empty shape " + Shape(*t));
  }
  GRACE_ASSIGN_OR_RETURN(m.expert, t->ToInt64());
  int64_t max = -1;
  for (size_t i = 0; i < m.expert.size(); ++i) {
    if (m.expert[i] < 0 || m.expert[i] >= 65536) {
      return InvalidArgument(Field(path, field + "[" + std::to_string(i / m.slots) + "][" +
                                             std::to_string(i % m.slots) + "]") +
                             "expert " + std::to_string(m.expert[i]) + " not in [0, 65536)");
    }
    max = std::max(max, m.expert[i]);
  }
  m.num_experts = static_cast<int>(max + 1);
  // Every logical expert has a slot, so there are no more experts than slots; this also bounds
  // the [layers][experts] counts built from the map by the map's own size.
  if (m.num_experts > m.slots) {
    return InvalidArgument(Field(path, field) + "expert " + std::to_string(max) + " in a map of " +
                           std::to_string(m.slots) + " slots: more experts than slots");
  }
  return m;
}

Status CheckMapShape(const TorchTensor& t, int64_t slots_dim, const SlotMap& m,
                     const std::string& field, const std::string& path) {
  if (t.shape[0] != m.layers || (slots_dim >= 0 && t.shape[slots_dim] != m.slots)) {
    return InvalidArgument(Field(path, field) + "shape " + Shape(t) +
                           " does not fit last_physical_to_logical_map's [" +
                           std::to_string(m.layers) + ", " + std::to_string(m.slots) + "]");
  }
  return Status::Ok();
}

StatusOr<Trace> ImportPerPass(const Value& records, const SlotMap& m, const std::string& path,
                              Trace trace) {
  int64_t idle = 0;
  for (size_t r = 0; r < records.size(); ++r) {
    const std::string field = "records[" + std::to_string(r) + "].global_physical_count";
    GRACE_ASSIGN_OR_RETURN(const TorchTensor* t,
                           IntTensor(records.at(r), "global_physical_count", field, path, {2}));
    GRACE_RETURN_IF_ERROR(CheckMapShape(*t, 1, m, field, path));
    GRACE_ASSIGN_OR_RETURN(std::vector<int64_t> v, t->ToInt64());
    TraceStep step;
    step.kind = TraceKind::kCounts;
    step.counts.counts.assign(static_cast<size_t>(m.layers * m.num_experts), 0.0);
    bool any = false;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] < 0) {
        return InvalidArgument(Field(path, field + "[" + std::to_string(i / m.slots) + "][" +
                                               std::to_string(i % m.slots) + "]") +
                               "negative count " + std::to_string(v[i]));
      }
      const int64_t layer = static_cast<int64_t>(i) / m.slots;
      step.counts.counts[layer * m.num_experts + m.expert[i]] += static_cast<double>(v[i]);
      any = any || v[i] != 0;
    }
    if (!any) {
      ++idle;
      continue;
    }
    trace.steps.push_back(std::move(step));
  }
  if (idle > 0) {
    trace.dropped.push_back({idle, path + ": " + std::to_string(idle) + " of " +
                                       std::to_string(records.size()) +
                                       " records route no token (idle forward passes)"});
  }
  if (trace.steps.empty()) {
    return InvalidArgument(path + ": all " + std::to_string(records.size()) +
                           " records route no token: nothing was recorded");
  }
  for (int64_t l = 0; l < m.layers; ++l) trace.info.layer_ids.push_back(static_cast<LayerId>(l));
  trace.info.num_experts = m.num_experts;
  trace.notes.push_back(path + ": SGLang recorder per_pass dump, " +
                        std::to_string(trace.steps.size()) +
                        " forward passes of this rank's "
                        "tokens (give every rank's file)");
  NoteCountAnomalies(&trace);
  return trace;
}

StatusOr<Trace> ImportPerToken(const Value& records, const SlotMap& m, const std::string& path,
                               Trace trace) {
  struct Pass {
    int64_t tokens = 0, width = 0;
    std::vector<int64_t> ids;  // [layer][token][width] physical ids, -1 unused
  };
  std::vector<Pass> passes;
  std::vector<bool> routed(static_cast<size_t>(m.layers), false);
  int64_t top_k = 0;
  for (size_t r = 0; r < records.size(); ++r) {
    const std::string field = "records[" + std::to_string(r) + "].topk_ids_of_layer";
    GRACE_ASSIGN_OR_RETURN(const TorchTensor* t,
                           IntTensor(records.at(r), "topk_ids_of_layer", field, path, {3}));
    GRACE_RETURN_IF_ERROR(CheckMapShape(*t, -1, m, field, path));
    Pass p;
    p.tokens = t->shape[1];
    p.width = t->shape[2];
    if (p.width < 1 || p.width > 1024) {
      return InvalidArgument(Field(path, field) + "shape " + Shape(*t) +
                             ": expected 1..1024 ids per token");
    }
    GRACE_ASSIGN_OR_RETURN(p.ids, t->ToInt64());
    for (int64_t l = 0; l < m.layers; ++l) {
      for (int64_t tok = 0; tok < p.tokens; ++tok) {
        const int64_t* row = p.ids.data() + (l * p.tokens + tok) * p.width;
        int64_t valid = 0;
        for (int64_t k = 0; k < p.width; ++k) {
          if (row[k] == -1) continue;
          if (row[k] < 0 || row[k] >= m.slots) {
            return InvalidArgument(Field(path, field + "[" + std::to_string(l) + "][" +
                                                   std::to_string(tok) + "][" + std::to_string(k) +
                                                   "]") +
                                   "physical slot " + std::to_string(row[k]) + " not in [0, " +
                                   std::to_string(m.slots) + ")");
          }
          ++valid;
        }
        if (valid > 0) routed[l] = true;
        top_k = std::max(top_k, valid);
      }
    }
    passes.push_back(std::move(p));
  }
  std::vector<LayerId> dense;
  for (int64_t l = 0; l < m.layers; ++l) {
    if (routed[l]) {
      trace.info.layer_ids.push_back(static_cast<LayerId>(l));
    } else {
      dense.push_back(static_cast<LayerId>(l));
    }
  }
  if (trace.info.layer_ids.empty()) {
    return InvalidArgument(path + ": no record routes any token (every topk_ids_of_layer is -1)");
  }
  int64_t short_tokens = 0, idle = 0;
  for (const Pass& p : passes) {
    // A token is kept when every MoE layer has top_k ids for it (a padded token has none).
    std::vector<int64_t> kept;
    for (int64_t tok = 0; tok < p.tokens; ++tok) {
      bool full = true;
      for (LayerId l : trace.info.layer_ids) {
        const int64_t* row = p.ids.data() + (l * p.tokens + tok) * p.width;
        full = full && std::count(row, row + p.width, -1) == p.width - top_k;
      }
      if (full) {
        kept.push_back(tok);
      } else {
        ++short_tokens;
      }
    }
    if (kept.empty()) {
      ++idle;
      continue;
    }
    TraceStep step;
    step.kind = TraceKind::kTokens;
    step.tokens.num_tokens = static_cast<int>(kept.size());
    step.tokens.expert_ids.reserve(trace.info.layer_ids.size() * kept.size() * top_k);
    for (LayerId l : trace.info.layer_ids) {
      for (int64_t tok : kept) {
        const int64_t* row = p.ids.data() + (l * p.tokens + tok) * p.width;
        for (int64_t k = 0; k < p.width; ++k) {
          if (row[k] != -1) {
            step.tokens.expert_ids.push_back(static_cast<ExpertId>(m.expert[l * m.slots + row[k]]));
          }
        }
      }
    }
    trace.steps.push_back(std::move(step));
  }
  if (short_tokens > 0) {
    trace.dropped.push_back({short_tokens, path + ": " + std::to_string(short_tokens) +
                                               " tokens lack top-" + std::to_string(top_k) +
                                               " ids in some MoE layer (padding)"});
  }
  if (idle > 0) {
    trace.dropped.push_back({idle, path + ": " + std::to_string(idle) + " of " +
                                       std::to_string(records.size()) +
                                       " records route no token (idle forward passes)"});
  }
  if (trace.steps.empty()) return InvalidArgument(path + ": no token has ids in every MoE layer");
  trace.info.top_k = static_cast<int>(top_k);
  trace.info.num_experts = m.num_experts;
  std::string note = path + ": SGLang recorder per_token dump, " +
                     std::to_string(trace.TotalTokens()) + " tokens of this rank in " +
                     std::to_string(trace.steps.size()) +
                     " forward passes, slots mapped to experts with last_physical_to_logical_map";
  if (!dense.empty()) {
    note += "; layers";
    for (size_t i = 0; i < dense.size() && i < 8; ++i) note += " " + std::to_string(dense[i]);
    note += dense.size() > 8 ? " ... never routed (dense), left out"
                             : " never routed (dense), "
                               "left out";
  }
  trace.notes.push_back(note);
  return trace;
}

}  // namespace

StatusOr<Trace> ImportSglangRecorderDump(std::string bytes, const std::string& path) {
  GRACE_ASSIGN_OR_RETURN(TorchSaveFile file, TorchSaveFile::Parse(std::move(bytes), path));
  Trace trace;
  trace.info.format = "sglang-pt";
  trace.info.kind = TraceKind::kCounts;
  trace.info.sources = {path};
  const Value root = file.root();
  if (!root.is_dict()) {
    return InvalidArgument(path + ": the torch.save file holds a " +
                           TorchSaveFile::KindName(root.kind()) +
                           ", not the dict of SGLang's expert distribution recorder");
  }
  if (root.Find("logical_count")) return ImportStat(root, path, std::move(trace));
  std::optional<Value> records = root.Find("records");
  if (!records) {
    std::string keys;
    for (const std::string& k : root.Keys()) keys += (keys.empty() ? "" : ", ") + k;
    return InvalidArgument(path +
                           ": a torch.save dict without \"logical_count\" or \"records\" "
                           "(keys: " +
                           keys + "); not an SGLang recorder dump");
  }
  if (!records->is_sequence()) {
    return InvalidArgument(Field(path, "records") + "expected a list, got " +
                           TorchSaveFile::KindName(records->kind()));
  }
  if (records->size() == 0)
    return InvalidArgument(Field(path, "records") +
                           "empty: nothing "
                           "was recorded");
  for (size_t r = 0; r < records->size(); ++r) {
    if (!records->at(r).is_dict()) {
      return InvalidArgument(Field(path, "records[" + std::to_string(r) + "]") +
                             "expected a dict, got " +
                             TorchSaveFile::KindName(records->at(r).kind()));
    }
  }
  GRACE_ASSIGN_OR_RETURN(SlotMap map, ReadSlotMap(root, path));
  if (records->at(0).Find("topk_ids_of_layer")) {
    trace.info.kind = TraceKind::kTokens;
    return ImportPerToken(*records, map, path, std::move(trace));
  }
  return ImportPerPass(*records, map, path, std::move(trace));
}

}  // namespace grace
