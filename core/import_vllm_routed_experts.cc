// vLLM's routed experts (--enable-return-routed-experts): per request, the top-k expert ids of
// every forwarded token in every MoE layer, an integer array [tokens, layers, k].
//
// The forms a user gets:
//  - the OpenAI-compatible API: each choice carries "routed_experts", the base64 of the array's
//    .npy bytes (np.save), covering prompt and completion tokens but the last; some versions
//    put the prompt's rows in a response-level "prompt_routed_experts" and only the generated
//    tokens' rows in the choice. Saved responses, one JSON object a line (or one pretty-printed
//    response), are read here; a choice's rows, after the response's prompt rows when there
//    are some, make one trace step.
//  - the Python API: CompletionOutput.routed_experts is the numpy array itself; np.save() it
//    and the .npy file is one trace step.
//  - {"routed_experts": ...} lines of the user's own, with the base64 string or nested lists.
//
// A layer whose every token has k equal ids (0 in vLLM's zero-initialised buffer) is a dense
// layer the model never routed (top-k ids are distinct); it is left out and reported when k > 1.
#include <algorithm>

#include "core/import_formats.h"
#include "core/json_text.h"
#include "core/npy_array.h"

namespace grace {
namespace {

struct Routes {
  int64_t layers = 0, k = 0;
  std::vector<std::vector<int64_t>> steps;  // per step: [token][layer][k]
  std::string model;
};

Status AddArray(NpyIntArray a, const std::string& where, bool append_to_last, Routes* r) {
  if (a.shape.size() != 3 || a.shape[1] < 1 || a.shape[2] < 1 || a.shape[2] > 1024 ||
      a.shape[1] > 100000) {
    std::string s;
    for (int64_t d : a.shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
    return InvalidArgument(where + ": expected a [tokens, layers, top-k] array, got shape (" + s +
                           ")");
  }
  if (r->layers == 0) {
    r->layers = a.shape[1];
    r->k = a.shape[2];
  } else if (a.shape[1] != r->layers || a.shape[2] != r->k) {
    return InvalidArgument(where + ": " + std::to_string(a.shape[1]) + " layers x top-" +
                           std::to_string(a.shape[2]) + ", earlier arrays have " +
                           std::to_string(r->layers) + " x top-" + std::to_string(r->k));
  }
  for (size_t i = 0; i < a.values.size(); ++i) {
    if (a.values[i] < 0 || a.values[i] >= 65536) {
      const int64_t per_token = r->layers * r->k;
      return InvalidArgument(where + ": [" + std::to_string(i / per_token) + "][" +
                             std::to_string(i % per_token / r->k) + "][" +
                             std::to_string(i % r->k) + "]: expert id " +
                             std::to_string(a.values[i]) + " not in [0, 65536)");
    }
  }
  if (a.shape[0] == 0) return Status::Ok();
  if (append_to_last && !r->steps.empty()) {
    r->steps.back().insert(r->steps.back().end(), a.values.begin(), a.values.end());
  } else {
    r->steps.push_back(std::move(a.values));
  }
  return Status::Ok();
}

// A routed-experts value: base64 of .npy bytes, or nested lists [tokens][layers][k].
StatusOr<NpyIntArray> ReadValue(const nlohmann::json& v, const std::string& where) {
  if (v.is_string()) {
    GRACE_ASSIGN_OR_RETURN(std::string npy, DecodeBase64(v.get_ref<const std::string&>(), where));
    return ParseNpyIntArray(npy, where);
  }
  if (!v.is_array()) return InvalidArgument(where + ": expected a base64 string or an array");
  NpyIntArray a;
  a.shape = {static_cast<int64_t>(v.size()), 0, 0};
  for (size_t t = 0; t < v.size(); ++t) {
    const std::string tw = where + "[" + std::to_string(t) + "]";
    if (!v[t].is_array()) return InvalidArgument(tw + ": expected [layers][k]");
    if (t == 0) a.shape[1] = static_cast<int64_t>(v[t].size());
    if (static_cast<int64_t>(v[t].size()) != a.shape[1]) {
      return InvalidArgument(tw + ": " + std::to_string(v[t].size()) + " layers, token 0 has " +
                             std::to_string(a.shape[1]));
    }
    for (size_t l = 0; l < v[t].size(); ++l) {
      std::vector<int32_t> ids;
      GRACE_RETURN_IF_ERROR(
          JsonIntArray(v[t][l], "[" + std::to_string(l) + "]", 0, JsonWhere{tw, 0}, &ids));
      if (t == 0 && l == 0) a.shape[2] = static_cast<int64_t>(ids.size());
      if (static_cast<int64_t>(ids.size()) != a.shape[2]) {
        return InvalidArgument(tw + "[" + std::to_string(l) + "]: " + std::to_string(ids.size()) +
                               " ids, expected " + std::to_string(a.shape[2]));
      }
      a.values.insert(a.values.end(), ids.begin(), ids.end());
    }
  }
  return a;
}

Status ReadResponse(const nlohmann::json& record, const JsonWhere& where, Routes* r) {
  if (!record.is_object()) return InvalidArgument(where.ToString() + ": expected a JSON object");
  if (auto m = record.find("model"); m != record.end() && m->is_string() && r->model.empty()) {
    r->model = m->get<std::string>();
  }
  const std::string at = where.ToString() + ": field ";
  bool found = false;
  bool prompt = false;
  if (auto p = record.find("prompt_routed_experts"); p != record.end() && !p->is_null()) {
    GRACE_ASSIGN_OR_RETURN(NpyIntArray a, ReadValue(*p, at + "\"prompt_routed_experts\""));
    GRACE_RETURN_IF_ERROR(AddArray(std::move(a), at + "\"prompt_routed_experts\"", false, r));
    found = prompt = true;
  }
  if (auto c = record.find("choices"); c != record.end() && c->is_array()) {
    for (size_t i = 0; i < c->size(); ++i) {
      const nlohmann::json& choice = (*c)[i];
      if (!choice.is_object()) continue;
      auto e = choice.find("routed_experts");
      if (e == choice.end() || e->is_null()) continue;
      const std::string field = at + "\"choices[" + std::to_string(i) + "].routed_experts\"";
      GRACE_ASSIGN_OR_RETURN(NpyIntArray a, ReadValue(*e, field));
      // The prompt was forwarded once: its rows go with the first choice.
      GRACE_RETURN_IF_ERROR(AddArray(std::move(a), field, prompt, r));
      prompt = false;
      found = true;
    }
  }
  if (auto e = record.find("routed_experts"); e != record.end() && !e->is_null()) {
    GRACE_ASSIGN_OR_RETURN(NpyIntArray a, ReadValue(*e, at + "\"routed_experts\""));
    GRACE_RETURN_IF_ERROR(AddArray(std::move(a), at + "\"routed_experts\"", prompt, r));
    found = true;
  }
  if (!found) {
    return InvalidArgument(where.ToString() +
                           ": no routed_experts in this response (start vLLM "
                           "with --enable-return-routed-experts)");
  }
  return Status::Ok();
}

StatusOr<Trace> ToTrace(Routes r, const std::string& format, const std::string& path,
                        const ImportOptions& options) {
  Trace trace;
  trace.info.format = format;
  trace.info.kind = TraceKind::kTokens;
  trace.info.sources = {path};
  trace.info.model = r.model;
  if (r.steps.empty()) return InvalidArgument(path + ": no token has routed experts");
  const int64_t per_token = r.layers * r.k;
  // Dense layers: every token's ids equal (only decidable with k > 1).
  std::vector<LayerId> dense;
  for (int64_t l = 0; l < r.layers; ++l) {
    bool all_equal = r.k > 1;
    for (const auto& s : r.steps) {
      for (size_t t = 0; all_equal && t < s.size() / per_token; ++t) {
        const int64_t* ids = s.data() + t * per_token + l * r.k;
        all_equal = std::all_of(ids, ids + r.k, [&](int64_t x) { return x == ids[0]; });
      }
    }
    if (all_equal) {
      dense.push_back(static_cast<LayerId>(l));
    } else {
      trace.info.layer_ids.push_back(static_cast<LayerId>(l));
    }
  }
  if (trace.info.layer_ids.empty()) {
    return InvalidArgument(path + ": every layer gives each token " + std::to_string(r.k) +
                           " equal ids: no routed layer");
  }
  int max_id = -1;
  for (const auto& s : r.steps) {
    const int64_t tokens = static_cast<int64_t>(s.size()) / per_token;
    TraceStep step;
    step.kind = TraceKind::kTokens;
    step.tokens.num_tokens = static_cast<int>(tokens);
    step.tokens.expert_ids.reserve(trace.info.layer_ids.size() * tokens * r.k);
    for (LayerId l : trace.info.layer_ids) {
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t* ids = s.data() + t * per_token + l * r.k;
        for (int64_t k = 0; k < r.k; ++k) {
          step.tokens.expert_ids.push_back(static_cast<ExpertId>(ids[k]));
          max_id = std::max(max_id, static_cast<int>(ids[k]));
        }
      }
    }
    trace.steps.push_back(std::move(step));
  }
  trace.info.top_k = static_cast<int>(r.k);
  GRACE_RETURN_IF_ERROR(ResolveNumExperts(0, max_id, options, path, &trace));
  std::string note = path + ": vLLM routed experts, " + std::to_string(trace.TotalTokens()) +
                     " tokens in " + std::to_string(trace.steps.size()) + " requests, " +
                     std::to_string(r.layers) + " layers in the array";
  if (!dense.empty()) {
    note += "; layers";
    for (size_t i = 0; i < dense.size() && i < 8; ++i) note += " " + std::to_string(dense[i]);
    note += std::string(dense.size() > 8 ? " ..." : "") +
            " give every token equal ids (dense, never routed), left out";
  }
  trace.notes.push_back(note);
  return trace;
}

}  // namespace

StatusOr<Trace> ImportVllmRoutedExpertsNpy(std::string_view bytes, const std::string& path,
                                           const ImportOptions& options) {
  GRACE_ASSIGN_OR_RETURN(NpyIntArray a, ParseNpyIntArray(bytes, path));
  Routes r;
  GRACE_RETURN_IF_ERROR(AddArray(std::move(a), path, false, &r));
  return ToTrace(std::move(r), "vllm-routed-experts-npy", path, options);
}

StatusOr<Trace> ImportVllmRoutedExperts(const JsonLines& lines, const nlohmann::json* whole,
                                        const std::string& path, const ImportOptions& options) {
  Routes r;
  auto read = [&](const nlohmann::json& record, const JsonWhere& where) {
    return ReadResponse(record, where, &r);
  };
  if (whole != nullptr) {
    GRACE_RETURN_IF_ERROR(read(*whole, JsonWhere{path, 0}));
  } else {
    GRACE_RETURN_IF_ERROR(lines(read));
  }
  return ToTrace(std::move(r), "vllm-routed-experts", path, options);
}

}  // namespace grace
