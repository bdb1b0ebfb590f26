// The OpenAPI 3 description of graced's REST API. The policy schema is generated from
// PolicyFields(), the same table PUT /api/v1/policy validates against, so the two cannot drift.
#include <nlohmann/json.hpp>

#include "daemon/policy_settings.h"
#include "daemon/rest_api.h"

namespace grace {
namespace {

using nlohmann::json;

json PagingParams(bool with_layer) {
  json params = json::array();
  auto add = [&](const char* name, const char* description) {
    params.push_back({{"name", name},
                      {"in", "query"},
                      {"required", false},
                      {"description", description},
                      {"schema", {{"type", "integer"}}}});
  };
  add("from_ms", "only entries at or after this time (ms since the epoch)");
  add("to_ms", "only entries at or before this time");
  if (with_layer) add("layer", "only this layer index (-1: all)");
  add("offset", "entries to skip");
  add("limit", "entries to return, 1-1000 (default 100)");
  return params;
}

json JsonResponse(const char* description) {
  return {{"description", description},
          {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
}

json Mutating(const char* summary, json extra = json::object()) {
  json op = {{"summary", summary},
             {"security", json::array({{{"bearerAuth", json::array()}}})},
             {"responses",
              {{"200", JsonResponse("done")},
               {"400", JsonResponse("bad input: {error, field}")},
               {"401", JsonResponse("missing or wrong bearer token")}}}};
  op.update(extra);
  return op;
}

}  // namespace

std::string OpenApiDocument() {
  json policy_props = json::object();
  for (const PolicyFieldSpec& f : PolicyFields()) {
    json p = {{"type", f.type}, {"description", f.description}};
    if (f.type == "string") {
      p["enum"] = f.allowed;
    } else {
      p["minimum"] = f.min;
      p["maximum"] = f.max;
    }
    policy_props[f.name] = p;
  }
  json doc = {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", "graced REST API"},
        {"version", "1"},
        {"description",
         "grace's control plane: placements by epoch, decisions, load, agents and the policy. "
         "Read-only calls are open; PUT and POST need a bearer token."}}},
      {"components",
       {{"securitySchemes", {{"bearerAuth", {{"type", "http"}, {"scheme", "bearer"}}}}},
        {"schemas",
         {{"Policy", {{"type", "object"}, {"properties", policy_props}}},
          {"Error",
           {{"type", "object"},
            {"properties",
             {{"error", {{"type", "string"}}}, {"field", {{"type", "string"}}}}}}}}}}},
      {"paths",
       {{"/healthz",
         {{"get", {{"summary", "liveness"}, {"responses", {{"200", JsonResponse("ok")}}}}}}},
        {"/metrics",
         {{"get",
           {{"summary", "Prometheus metrics (per layer, bounded labels)"},
            {"responses", {{"200", {{"description", "text exposition format 0.0.4"}}}}}}}}},
        {"/api/v1/status",
         {{"get",
           {{"summary", "overview: epoch, agents, imbalance and traffic per layer"},
            {"responses", {{"200", JsonResponse("status")}}}}}}},
        {"/api/v1/placement",
         {{"get",
           {{"summary", "the current placement"},
            {"responses",
             {{"200", JsonResponse("placement with physical_to_logical_map")},
              {"404", JsonResponse("none committed yet")}}}}},
          {"post",
           Mutating("migrate to this placement (grace's placement JSON), past the policy",
                    {{"requestBody",
                      {{"required", true},
                       {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}}},
                     {"responses",
                      {{"202", JsonResponse("{status, epoch}: the migration's PREPARE went out")},
                       {"400", JsonResponse("the placement does not fit: {error, field}")},
                       {"401", JsonResponse("missing or wrong bearer token")},
                       {"409", JsonResponse("a migration is in progress, or paused")}}}})}}},
        {"/api/v1/placements",
         {{"get",
           {{"summary", "placement history, newest first"},
            {"parameters", PagingParams(false)},
            {"responses", {{"200", JsonResponse("{items, offset, limit}")}}}}}}},
        {"/api/v1/placements/{epoch}",
         {{"get",
           {{"summary", "the placement of one epoch"},
            {"parameters", json::array({{{"name", "epoch"},
                                         {"in", "path"},
                                         {"required", true},
                                         {"schema", {{"type", "integer"}}}}})},
            {"responses",
             {{"200", JsonResponse("placement")}, {"404", JsonResponse("no such epoch")}}}}}}},
        {"/api/v1/decisions",
         {{"get",
           {{"summary", "decisions with reason, predicted and realised gain, bytes"},
            {"parameters", PagingParams(true)},
            {"responses", {{"200", JsonResponse("{items, offset, limit}")}}}}}}},
        {"/api/v1/load",
         {{"get",
           {{"summary", "per-layer per-expert load over time (downsampled when old)"},
            {"parameters", PagingParams(true)},
            {"responses", {{"200", JsonResponse("{items, offset, limit}")}}}}}}},
        {"/api/v1/trends",
         {{"get",
           {{"summary",
             "recent control intervals: epoch, imbalance and cross-node sends per layer"},
            {"parameters", json::array({{{"name", "limit"},
                                         {"in", "query"},
                                         {"required", false},
                                         {"description", "intervals, 1-720 (default 300)"},
                                         {"schema", {{"type", "integer"}}}}})},
            {"responses", {{"200", JsonResponse("{layers, items}, oldest first")}}}}}}},
        {"/api/v1/forecast",
         {{"get",
           {{"summary", "one layer's recent load per expert beside the forecast made for it"},
            {"parameters", json::array({{{"name", "layer"},
                                         {"in", "query"},
                                         {"required", false},
                                         {"description", "layer index (default 0)"},
                                         {"schema", {{"type", "integer"}}}},
                                        {{"name", "limit"},
                                         {"in", "query"},
                                         {"required", false},
                                         {"description", "intervals, 1-120 (default 60)"},
                                         {"schema", {{"type", "integer"}}}}})},
            {"responses",
             {{"200", JsonResponse("{layer_index, items: [{time_ms, actual, forecast}]}")}}}}}}},
        {"/api/v1/traffic",
         {{"get",
           {{"summary",
             "traffic measured on the agents' dispatch, per layer: cumulative tokens, sends "
             "after deduplication (remote_sends: distinct GPUs other than home per token, "
             "cross_node_sends: distinct other nodes), their bytes and the (token, expert) pairs "
             "computed per rank, and the same over the latest window with its imbalance"},
            {"responses",
             {{"200", JsonResponse("{layers: [{layer, tokens, node_sends, remote_sends, "
                                   "cross_node_sends, intra_node_bytes, cross_node_bytes, "
                                   "rank_load, window: {..., imbalance}}], epoch}")}}}}}}},
        {"/api/v1/agents",
         {{"get",
           {{"summary", "agents and their recent events"},
            {"responses", {{"200", JsonResponse("{agents, events}")}}}}}}},
        {"/api/v1/policy",
         {{"get",
           {{"summary", "the policy in force"}, {"responses", {{"200", JsonResponse("policy")}}}}},
          {"put", Mutating("change policy fields (only those given); 400 names the field and range",
                           {{"requestBody",
                             {{"required", true},
                              {"content",
                               {{"application/json",
                                 {{"schema", {{"$ref", "#/components/schemas/Policy"}}}}}}}}}})}}},
        {"/api/v1/replan", {{"post", Mutating("force a decision now")}}},
        {"/api/v1/pause", {{"post", Mutating("pause the control loop")}}},
        {"/api/v1/resume", {{"post", Mutating("resume the control loop")}}}}}};
  return doc.dump(2);
}

}  // namespace grace
