#include "agent/replay.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>

#include "agent/dense_reference.h"
#include "agent/moe_layer.h"
#include "agent/weights_file.h"
#include "core/native_trace.h"
#include "kernels/gate.h"
#include "kernels/load_stats.h"
#include "migrate/tcp_transport.h"
#if defined(GRACE_HAVE_CUDA)
#include "kernels/cuda_expert_backend.h"
#endif

namespace grace {

Placement DefaultPlacement(const Topology& topology, int num_experts,
                           const std::vector<LayerId>& layer_ids) {
  const int slots = topology.total_slots();
  Placement p = Placement::Empty(num_experts, layer_ids, slots);
  const int ranks = topology.ranks();
  const int per_rank = (num_experts + ranks - 1) / ranks;
  for (auto& row : p.physical_to_logical) {
    for (int r = 0; r < ranks; ++r) {
      for (int i = 0; i < topology.slots_per_gpu; ++i) {
        const SlotId s = r * topology.slots_per_gpu + i;
        const int e = r * per_rank + i;
        row[s] = (i < per_rank && e < num_experts) ? e : (7 * s) % num_experts;
      }
    }
  }
  return p;
}

StatusOr<AgentModel> LoadAgentModel(const AgentConfig& c) {
  AgentModel m;
  if (!c.trace_file.empty()) {
    GRACE_ASSIGN_OR_RETURN(NativeTraceReader reader, NativeTraceReader::Open(c.trace_file));
    const TraceInfo& info = reader.info();
    if (info.kind != TraceKind::kTokens) {
      return InvalidArgument(c.source + ": [replay].trace: " + c.trace_file +
                             " is a count-only trace; replay needs token-level routing");
    }
    if (info.num_experts != c.model.num_experts || info.top_k != c.model.top_k ||
        info.num_layers() != c.model.num_layers) {
      return InvalidArgument(
          c.source + ": [model] experts/top_k/layers = " + std::to_string(c.model.num_experts) +
          "/" + std::to_string(c.model.top_k) + "/" + std::to_string(c.model.num_layers) +
          " but [replay].trace has " + std::to_string(info.num_experts) + "/" +
          std::to_string(info.top_k) + "/" + std::to_string(info.num_layers()));
    }
    m.layer_ids = info.layer_ids;
  } else {
    for (int l = 0; l < c.model.num_layers; ++l) m.layer_ids.push_back(l);
  }
  if (!c.weights_file.empty()) {
    GRACE_ASSIGN_OR_RETURN(m.weights, LoadExpertWeightsFile(c.weights_file, c.model, m.layer_ids));
  } else {
    m.weights = GenerateExpertWeights(c.model, c.weights_seed);
  }
  Placement placement;
  if (!c.placement_file.empty()) {
    std::ifstream in(c.placement_file);
    if (!in) return NotFound(c.source + ": [placement].file: cannot open " + c.placement_file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    GRACE_ASSIGN_OR_RETURN(placement, PlacementFromJson(text, c.placement_file));
    if (placement.num_experts != c.model.num_experts ||
        placement.num_layers() != c.model.num_layers) {
      return InvalidArgument(
          c.placement_file + ": placement has " + std::to_string(placement.num_experts) +
          " experts and " + std::to_string(placement.num_layers()) + " layers; [model] has " +
          std::to_string(c.model.num_experts) + " and " + std::to_string(c.model.num_layers));
    }
  } else {
    placement = DefaultPlacement(c.topology, c.model.num_experts, m.layer_ids);
  }
  RoutingTableBuilder builder(1, c.topology, std::move(placement));
  GRACE_ASSIGN_OR_RETURN(m.table, builder.Build());
  return m;
}

namespace {

// One rank's worker: owns its transport, backend and buffers.
Status RunRank(const AgentConfig& c, const AgentModel& model, RankId rank,
               const std::atomic<std::shared_ptr<const RoutingTable>>& published) {
  const ModelShape& shape = c.model;
  const Topology& topo = c.topology;
  TcpTransportOptions to;
  to.rank = rank;
  to.size = topo.ranks();
  to.rendezvous_host = c.rendezvous_host;
  to.rendezvous_port = c.rendezvous_port;
  to.listen_host = c.listen_host;
  to.connect_timeout = std::chrono::milliseconds(c.connect_timeout_ms);
  GRACE_ASSIGN_OR_RETURN(std::unique_ptr<TcpTransport> transport, TcpTransport::Connect(to));

  std::unique_ptr<ExpertBackend> backend;
  if (c.backend == "cuda") {
#if defined(GRACE_HAVE_CUDA)
    GRACE_ASSIGN_OR_RETURN(backend, MakeCudaExpertBackend(shape, shape.num_layers,
                                                          topo.slots_per_gpu, rank - c.first_rank));
#else
    return FailedPrecondition(c.source +
                              ": [agent].backend = \"cuda\" but grace was built without CUDA");
#endif
  } else {
    backend = MakeCpuExpertBackend(shape, shape.num_layers, topo.slots_per_gpu);
  }
  {
    const auto& p = published.load()->placement();
    for (int li = 0; li < shape.num_layers; ++li) {
      for (int i = 0; i < topo.slots_per_gpu; ++i) {
        const ExpertId e = p.physical_to_logical[li][rank * topo.slots_per_gpu + i];
        if (e == kEmptySlot) continue;
        GRACE_RETURN_IF_ERROR(backend->LoadSlot(li, i, model.weights.W1(li, e),
                                                model.weights.W3(li, e), model.weights.W2(li, e)));
      }
    }
  }

  std::optional<NativeTraceReader> reader;
  if (!c.trace_file.empty()) {
    GRACE_ASSIGN_OR_RETURN(NativeTraceReader r, NativeTraceReader::Open(c.trace_file));
    reader.emplace(std::move(r));
  }
  const std::string base = c.output_dir + "/rank" + std::to_string(rank);
  std::ofstream checksums(base + ".checksums", std::ios::trunc);
  std::ofstream outputs;
  if (c.write_outputs) outputs.open(base + ".outputs", std::ios::binary | std::ios::trunc);
  if (!checksums || (c.write_outputs && !outputs)) {
    return Unavailable(c.source + ": [output].dir: cannot write under " + c.output_dir);
  }

  MoeLayer layer(shape, topo.slots_per_gpu, transport.get(), backend.get());
  LoadStats stats(shape.num_layers, shape.num_experts, c.coactivation_sample_every);
  StepTimes times;
  TraceStep step;
  std::vector<int32_t> rows, ids;
  std::vector<int64_t> token_ids;
  std::vector<float> x, gw;
  int64_t trace_offset = 0, tokens_done = 0;
  const int max_steps = c.steps > 0 ? c.steps : (reader ? INT32_MAX : 4);
  const auto start = std::chrono::steady_clock::now();
  int s = 0;
  for (; s < max_steps; ++s) {
    if (reader) {
      GRACE_ASSIGN_OR_RETURN(bool more, reader->Next(&step));
      if (!more) break;
    }
    if (c.steps_per_second > 0) {
      std::this_thread::sleep_until(start +
                                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                        std::chrono::duration<double>(s / c.steps_per_second)));
    }
    // Read once per step: every layer of this step uses the same table.
    const std::shared_ptr<const RoutingTable> table = published.load();
    rows.clear();
    token_ids.clear();
    if (reader) {
      const TokenBatch& b = step.tokens;
      for (int t = 0; t < b.num_tokens; ++t) {
        const RankId home =
            b.home_rank.empty() ? BlockHomeRank(trace_offset + t, topo.ranks()) : b.home_rank[t];
        if (home != rank) continue;
        rows.push_back(t);
        token_ids.push_back(trace_offset + t);
      }
      trace_offset += b.num_tokens;
    } else {
      for (int t = 0; t < c.tokens_per_rank; ++t) {
        rows.push_back(t);
        token_ids.push_back((static_cast<int64_t>(s) * topo.ranks() + rank) * c.tokens_per_rank +
                            t);
      }
    }
    const int n = static_cast<int>(rows.size());
    x.resize(static_cast<size_t>(n) * shape.hidden);
    for (int t = 0; t < n; ++t)
      GenerateHidden(c.seed, token_ids[t], shape.hidden, &x[t * shape.hidden]);
    ids.resize(static_cast<size_t>(n) * shape.top_k);
    gw.resize(ids.size());
    for (int li = 0; li < shape.num_layers; ++li) {
      auto t0 = std::chrono::steady_clock::now();
      if (reader) {
        TraceRouting(step.tokens, li, shape.top_k, rows.data(), n, ids.data(), gw.data());
      } else {
        GateTopK(x.data(), model.weights.gate[li].data(), n, shape.hidden, shape.num_experts,
                 shape.top_k, ids.data(), gw.data());
      }
      stats.Count(li, ids.data(), token_ids.data(), n, shape.top_k);
      times.gate += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      GRACE_RETURN_IF_ERROR(layer
                                .Run(*table, li, static_cast<uint64_t>(s), c.seed, token_ids.data(),
                                     ids.data(), gw.data(), n, x.data(), &times)
                                .WithContext("rank " + std::to_string(rank) + " step " +
                                             std::to_string(s) + " layer " + std::to_string(li)));
    }
    double sum = 0;
    for (float v : x) sum += v;
    char line[128];
    std::snprintf(line, sizeof line, "step %d tokens %d checksum %.9e\n", s, n, sum);
    checksums << line;
    if (c.write_outputs) {
      for (int t = 0; t < n; ++t) {
        outputs.write(reinterpret_cast<const char*>(&token_ids[t]), sizeof(int64_t));
        outputs.write(reinterpret_cast<const char*>(&x[t * shape.hidden]),
                      sizeof(float) * shape.hidden);
      }
    }
    tokens_done += n;
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ofstream summary(base + ".summary.json", std::ios::trunc);
  summary << "{\"rank\": " << rank << ", \"steps\": " << s << ", \"tokens\": " << tokens_done
          << ", \"wall_s\": " << wall << ", \"gate_s\": " << times.gate
          << ", \"route_s\": " << times.route << ", \"permute_s\": " << times.permute
          << ", \"dispatch_s\": " << times.dispatch << ", \"ffn_s\": " << times.ffn
          << ", \"combine_s\": " << times.combine
          << ", \"remote_bytes_sent\": " << layer.remote_bytes_sent() << "}\n";
  checksums.flush();
  outputs.flush();
  if (!checksums || (c.write_outputs && !outputs)) {
    return Unavailable(base + ": writing the replay output failed");
  }
  return Status::Ok();
}

}  // namespace

Status RunAgent(const AgentConfig& c) {
  GRACE_ASSIGN_OR_RETURN(AgentModel model, LoadAgentModel(c));
  std::atomic<std::shared_ptr<const RoutingTable>> published(model.table);
  std::vector<Status> results(c.local_ranks);
  std::vector<std::thread> workers;
  for (int i = 0; i < c.local_ranks; ++i) {
    workers.emplace_back([&, i] { results[i] = RunRank(c, model, c.first_rank + i, published); });
  }
  for (auto& w : workers) w.join();
  for (const Status& s : results) GRACE_RETURN_IF_ERROR(s);
  return Status::Ok();
}

}  // namespace grace
