#include "agent/replay.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <span>
#include <thread>

#include "agent/daemon_client.h"
#include "agent/dense_reference.h"
#include "agent/epoch_agreement.h"
#include "agent/epoch_switcher.h"
#include "agent/moe_layer.h"
#include "agent/weights_file.h"
#include "core/native_trace.h"
#include "kernels/gate.h"
#include "migrate/tcp_transport.h"
#if defined(GRACE_HAVE_CUDA)
#include "agent/cuda_replay_step.h"
#include "kernels/cuda_expert_backend.h"
#include "migrate/nccl_transport.h"
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

bool IsTransportFailure(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded;
}

// Steps already written to a checksums file (a restarted agent appends after them).
uint64_t StepsWritten(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  uint64_t next = 0;
  while (std::getline(in, line)) {
    unsigned long long s = 0;
    if (std::sscanf(line.c_str(), "step %llu", &s) == 1) next = std::max<uint64_t>(next, s + 1);
  }
  return next;
}

// One rank's worker: owns its transport, backend and buffers. With a daemon the worker is
// fault tolerant: when a peer's process dies it re-forms the data-path mesh, the ranks agree on
// the first step one of them has not written, and the replay goes on from there (each step's
// outputs written once). It calls `joined` once, when its first mesh is up.
Status RunRank(const AgentConfig& c, const AgentModel& model, RankId rank, ServingState& state,
               RankProgress& progress, const std::function<void()>& joined) {
  const ModelShape& shape = c.model;
  const Topology& topo = c.topology;
  const bool fault_tolerant = !c.daemon_address.empty();
  TcpTransportOptions to;
  to.rank = rank;
  to.size = topo.ranks();
  to.rendezvous_host = c.rendezvous_host;
  to.rendezvous_port = c.rendezvous_port;
  to.listen_host = c.listen_host;
  to.cluster_secret = c.cluster_secret;  // only ranks that prove it join the data-path mesh
  to.connect_timeout = std::chrono::milliseconds(c.connect_timeout_ms);

  ExpertBackend* backend = state.backends[rank - c.first_rank].get();
  Epoch applied_epoch = 0;
  {
    const std::shared_ptr<const EpochView> view = state.view.load();
    const auto& p = view->current->placement();
    applied_epoch = view->current->epoch();
    for (int li = 0; li < shape.num_layers; ++li) {
      for (int i = 0; i < topo.slots_per_gpu; ++i) {
        const ExpertId e = p.physical_to_logical[li][rank * topo.slots_per_gpu + i];
        if (e == kEmptySlot) continue;
        GRACE_RETURN_IF_ERROR(backend->LoadSlot(li, i, model.weights.W1(li, e),
                                                model.weights.W3(li, e), model.weights.W2(li, e)));
      }
    }
  }
  progress.epoch.store(applied_epoch);

  const std::string base = c.output_dir + "/rank" + std::to_string(rank);
  const uint64_t already_written = fault_tolerant ? StepsWritten(base + ".checksums") : 0;
  const auto mode = fault_tolerant ? std::ios::app : std::ios::trunc;
  std::ofstream checksums(base + ".checksums", mode);
  std::ofstream step_log(base + ".steps", mode);
  std::ofstream outputs;
  if (c.write_outputs) outputs.open(base + ".outputs", std::ios::binary | mode);
  if (!checksums || !step_log || (c.write_outputs && !outputs)) {
    return Unavailable(c.source + ": [output].dir: cannot write under " + c.output_dir);
  }

  StepTimes times;
  std::optional<NativeTraceReader> reader;
  TraceStep step;
  std::vector<int32_t> rows, ids;
  std::vector<int64_t> token_ids;
  std::vector<float> x, gw;
  std::vector<EpochClaim> claims_out(topo.ranks()), claims_in(topo.ranks());
  int64_t trace_offset = 0, tokens_done = 0;
  uint64_t written = already_written, remote_bytes = 0;
  const int max_steps = c.steps > 0 ? c.steps : (c.trace_file.empty() ? 4 : INT32_MAX);
  const auto start = std::chrono::steady_clock::now();
  int s = 0;
  bool finished = false;
  bool announced = false;  // joined() runs once, not again when a re-formed mesh connects
  while (!finished) {
    GRACE_ASSIGN_OR_RETURN(std::unique_ptr<TcpTransport> transport, TcpTransport::Connect(to));
    // Every rank starts at the first step some rank has not written yet.
    std::vector<uint64_t> mine(topo.ranks(), written), theirs(topo.ranks());
    Status agreed = transport->AllToAll(mine.data(), theirs.data(), sizeof(uint64_t));
    if (!agreed.ok()) {
      if (fault_tolerant && IsTransportFailure(agreed)) continue;
      return agreed;
    }
    s = static_cast<int>(*std::min_element(theirs.begin(), theirs.end()));
    if (!announced) {
      announced = true;
      joined();
    }
    trace_offset = 0;
    // The trace's next step; with [replay].loop it starts over at its end.
    auto next_step = [&]() -> StatusOr<bool> {
      GRACE_ASSIGN_OR_RETURN(bool more, reader->Next(&step));
      if (more || !c.loop) return more;
      GRACE_ASSIGN_OR_RETURN(NativeTraceReader again, NativeTraceReader::Open(c.trace_file));
      reader.emplace(std::move(again));
      return reader->Next(&step);
    };
    if (!c.trace_file.empty()) {
      GRACE_ASSIGN_OR_RETURN(NativeTraceReader r, NativeTraceReader::Open(c.trace_file));
      reader.emplace(std::move(r));
      for (int k = 0; k < s; ++k) {
        GRACE_ASSIGN_OR_RETURN(bool more, next_step());
        if (!more) break;
        trace_offset += step.tokens.num_tokens;
      }
    }
    MoeLayer layer(shape, topo.slots_per_gpu, topo.gpus_per_node, transport.get(), backend);
#if defined(GRACE_HAVE_CUDA)
    // backend = "cuda": the device-resident layers; with [transport].kind = "nccl" their records
    // go device to device over NCCL, bootstrapped by (and counted over) the TCP mesh.
    std::unique_ptr<NcclTransport> nccl;
    std::unique_ptr<CudaMoeLayer> cuda_layer;
    if (c.backend == "cuda") {
      if (c.transport == "nccl") {
        auto made = NcclTransport::Create(
            *transport, {.device = rank - c.first_rank,
                         .timeout = std::chrono::milliseconds(c.nccl_timeout_ms)});
        if (!made.ok()) {
          if (fault_tolerant && IsTransportFailure(made.status())) continue;
          return made.status().WithContext("rank " + std::to_string(rank));
        }
        nccl = std::move(*made);
      }
      GRACE_ASSIGN_OR_RETURN(
          cuda_layer, CudaMoeLayer::Create(shape, topo.slots_per_gpu, topo.gpus_per_node,
                                           transport.get(), nccl.get(), CudaGroupedFfnOf(*backend),
                                           c.coactivation_sample_every));
      for (int li = 0; c.trace_file.empty() && li < shape.num_layers; ++li) {
        GRACE_RETURN_IF_ERROR(cuda_layer->LoadGate(li, model.weights.gate[li].data()));
      }
    }
#endif
    // Pacing restarts here, after the set-up (a trace skipped to step s, a CUDA layer's device
    // memory and handles): a resumed or slow-starting replay does not race to catch up.
    const auto pace_origin =
        std::chrono::steady_clock::now() -
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(c.steps_per_second > 0 ? s / c.steps_per_second : 0));
    Status failed;
    for (; s < max_steps; ++s) {
      if (reader) {
        GRACE_ASSIGN_OR_RETURN(bool more, next_step());
        if (!more) break;
      }
      if (c.steps_per_second > 0) {
        std::this_thread::sleep_until(
            pace_origin + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(s / c.steps_per_second)));
      }
      if (static_cast<uint64_t>(s) >= state.stop_at.load(std::memory_order_acquire)) break;
      const auto step_start = std::chrono::steady_clock::now();
      // Read once per step: every layer of this step uses the same table.
      const std::shared_ptr<const EpochView> view = state.view.load();
      // The epoch of this step, agreed in band with every rank (agent/epoch_agreement.h).
      EpochClaim mine{applied_epoch, 0, kNoSwitchStep};
      if (view->next != nullptr && view->switch_step != kNoSwitchStep) {
        mine.committed = view->next->epoch();
        mine.switch_step = view->switch_step;
      }
      claims_out.assign(claims_out.size(), mine);
      failed = transport->AllToAll(claims_out.data(), claims_in.data(), sizeof(EpochClaim));
      if (!failed.ok()) break;
      const Epoch agreed_epoch = AgreedEpoch(claims_in, static_cast<uint64_t>(s));
      Epoch mesh_epoch = claims_in[0].serving;
      for (const EpochClaim& claim : claims_in) mesh_epoch = std::min(mesh_epoch, claim.serving);
      progress.mesh_epoch.store(mesh_epoch, std::memory_order_release);
      const RoutingTable* chosen = nullptr;
      if (view->current->epoch() == agreed_epoch) chosen = view->current.get();
      if (view->next != nullptr && view->next->epoch() == agreed_epoch) chosen = view->next.get();
      if (chosen == nullptr) {
        // Cannot happen under the protocol: an epoch is committed only once every rank staged it.
        return FailedPrecondition("rank " + std::to_string(rank) + " step " + std::to_string(s) +
                                  ": the ranks agreed on epoch " + std::to_string(agreed_epoch) +
                                  ", which this rank has not staged");
      }
      const RoutingTable& table = *chosen;
      if (table.epoch() != applied_epoch) {
        // First step of a committed epoch: its experts are staged in spare physical slots
        // already (before READY); publishing the slot map is the whole switch.
        const size_t local = static_cast<size_t>(rank - c.first_rank);
        if (local < view->slot_maps.size() && view->slot_maps[local] != nullptr) {
          GRACE_RETURN_IF_ERROR(backend->UseSlotMap(view->slot_maps[local]));
        }
        applied_epoch = table.epoch();
        progress.epoch_since.store(static_cast<uint64_t>(s), std::memory_order_relaxed);
      }
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
#if defined(GRACE_HAVE_CUDA)
      if (cuda_layer != nullptr) {
        failed = RunCudaReplayStep(*cuda_layer, table, shape, reader ? &step.tokens : nullptr, rows,
                                   token_ids, static_cast<uint64_t>(s), c.seed, progress, x, ids,
                                   gw, &times);
        if (!failed.ok()) {
          failed =
              failed.WithContext("rank " + std::to_string(rank) + " step " + std::to_string(s));
        }
      }
      const bool layers_on_cpu = cuda_layer == nullptr;
#else
      const bool layers_on_cpu = true;
#endif
      for (int li = 0; layers_on_cpu && li < shape.num_layers && failed.ok(); ++li) {
        auto t0 = std::chrono::steady_clock::now();
        if (reader) {
          TraceRouting(step.tokens, li, shape.top_k, rows.data(), n, ids.data(), gw.data());
        } else {
          GateTopK(x.data(), model.weights.gate[li].data(), n, shape.hidden, shape.num_experts,
                   shape.top_k, ids.data(), gw.data());
        }
        progress.live->CountCoactivation(li, ids.data(), token_ids.data(), n, shape.top_k);
        std::atomic<uint32_t>* counts = progress.counts.get() + li * shape.num_experts;
        for (int32_t e : std::span(ids.data(), ids.size())) {
          counts[e].fetch_add(1, std::memory_order_relaxed);
        }
        times.gate += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        failed = layer.Run(table, li, static_cast<uint64_t>(s), c.seed, token_ids.data(),
                           ids.data(), gw.data(), n, x.data(), &times);
        if (failed.ok()) progress.live->AddDispatch(li, layer.measured());
        if (!failed.ok()) {  // the message is built only on failure: no allocation per step
          failed = failed.WithContext("rank " + std::to_string(rank) + " step " +
                                      std::to_string(s) + " layer " + std::to_string(li));
        }
      }
      if (!failed.ok()) break;
      const uint64_t us = static_cast<uint64_t>(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - step_start)
              .count());
      if (static_cast<uint64_t>(s) >= written) {
        double sum = 0;
        for (float v : x) sum += v;
        char line[160];
        std::snprintf(line, sizeof line, "step %d tokens %d checksum %.9e\n", s, n, sum);
        checksums << line;
        std::snprintf(line, sizeof line, "step %d epoch %llu us %llu\n", s,
                      static_cast<unsigned long long>(table.epoch()),
                      static_cast<unsigned long long>(us));
        step_log << line;
        if (c.write_outputs) {
          for (int t = 0; t < n; ++t) {
            outputs.write(reinterpret_cast<const char*>(&token_ids[t]), sizeof(int64_t));
            outputs.write(reinterpret_cast<const char*>(&x[t * shape.hidden]),
                          sizeof(float) * shape.hidden);
          }
        }
        checksums.flush();  // a killed agent's file ends at a whole step
        outputs.flush();
        step_log.flush();
        written = s + 1;
        tokens_done += n;
      }
      const uint64_t base_us = progress.baseline_step_us.load(std::memory_order_relaxed);
      progress.baseline_step_us.store(base_us == 0 ? us : (base_us * 31 + us) / 32,
                                      std::memory_order_relaxed);
      progress.last_step_us.store(us, std::memory_order_relaxed);
      progress.epoch.store(table.epoch(), std::memory_order_release);
      progress.next_step.store(s + 1, std::memory_order_release);
    }
    remote_bytes += layer.remote_bytes_sent();
#if defined(GRACE_HAVE_CUDA)
    if (cuda_layer != nullptr) remote_bytes += cuda_layer->remote_bytes_sent();
#endif
    if (failed.ok()) {
      finished = true;
    } else if (!fault_tolerant || !IsTransportFailure(failed)) {
      return failed;
    } else {
      std::fprintf(stderr, "grace-agent rank %d: %s; re-forming the data-path mesh\n", rank,
                   failed.ToString().c_str());
    }
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ofstream summary(base + ".summary.json", std::ios::trunc);
  summary << "{\"rank\": " << rank << ", \"steps\": " << s << ", \"tokens\": " << tokens_done
          << ", \"wall_s\": " << wall << ", \"gate_s\": " << times.gate
          << ", \"route_s\": " << times.route << ", \"permute_s\": " << times.permute
          << ", \"dispatch_s\": " << times.dispatch << ", \"ffn_s\": " << times.ffn
          << ", \"combine_s\": " << times.combine << ", \"remote_bytes_sent\": " << remote_bytes
          << "}\n";
  checksums.flush();
  outputs.flush();
  if (!checksums || (c.write_outputs && !outputs)) {
    return Unavailable(base + ": writing the replay output failed");
  }
  return Status::Ok();
}

// Rank `rank`'s expert backend, with [migration].spare_slots spare physical slots per layer
// when a daemon may migrate (standalone: none).
StatusOr<std::unique_ptr<ExpertBackend>> MakeRankBackend(const AgentConfig& c, RankId rank) {
  const int spare = c.daemon_address.empty() ? 0 : c.spare_slots;
  if (c.backend == "cuda") {
#if defined(GRACE_HAVE_CUDA)
    return MakeCudaExpertBackend(c.model, c.model.num_layers, c.topology.slots_per_gpu,
                                 rank - c.first_rank, spare);
#else
    return FailedPrecondition(c.source +
                              ": [agent].backend = \"cuda\" but grace was built without CUDA");
#endif
  }
  return MakeCpuExpertBackend(c.model, c.model.num_layers, c.topology.slots_per_gpu, spare);
}

// The weights of local rank `rank`'s slots under `placement`.
RankSlotWeights SlotWeights(const AgentConfig& c, const ExpertWeights& w,
                            const Placement& placement, RankId rank) {
  const int spr = c.topology.slots_per_gpu;
  const size_t n = static_cast<size_t>(c.model.ffn) * c.model.hidden;
  RankSlotWeights out(placement.num_layers());
  for (int l = 0; l < placement.num_layers(); ++l) {
    out[l].resize(spr);
    for (int k = 0; k < spr; ++k) {
      const ExpertId e = placement.physical_to_logical[l][rank * spr + k];
      if (e == kEmptySlot) continue;
      auto v = std::make_shared<std::vector<float>>(3 * n);
      std::copy(w.W1(l, e), w.W1(l, e) + n, v->begin());
      std::copy(w.W3(l, e), w.W3(l, e) + n, v->begin() + n);
      std::copy(w.W2(l, e), w.W2(l, e) + n, v->begin() + 2 * n);
      out[l][k] = std::move(v);
    }
  }
  return out;
}

}  // namespace

Status RunAgent(const AgentConfig& c, const std::function<void()>& on_ready,
                const std::atomic<bool>* stop) {
  GRACE_ASSIGN_OR_RETURN(AgentModel model, LoadAgentModel(c));
  // The backends first (a CUDA device's context, handles and slot memory take a while): between
  // the daemon's Welcome and the first heartbeat the agent is silent, and graced takes an agent
  // silent for lost_after_ms as lost.
  std::vector<std::unique_ptr<ExpertBackend>> backends;
  for (int i = 0; i < c.local_ranks; ++i) {
    GRACE_ASSIGN_OR_RETURN(std::unique_ptr<ExpertBackend> backend,
                           MakeRankBackend(c, c.first_rank + i));
    backends.push_back(std::move(backend));
  }
  std::unique_ptr<DaemonClient> daemon;
  if (!c.daemon_address.empty()) {
    // The daemon's epoch and placement win over the config's: a restarted agent rejoins at the
    // current epoch with that placement's weights.
    daemon = std::make_unique<DaemonClient>(c);
    GRACE_ASSIGN_OR_RETURN(Welcome welcome, daemon->Connect(0));
    GRACE_ASSIGN_OR_RETURN(Placement placement, PlacementFromJson(welcome.placement_json,
                                                                  c.daemon_address + " Welcome"));
    if (placement.num_experts != c.model.num_experts ||
        placement.num_layers() != c.model.num_layers) {
      return InvalidArgument(c.daemon_address + ": the daemon's placement has " +
                             std::to_string(placement.num_experts) + " experts and " +
                             std::to_string(placement.num_layers()) + " layers; [model] has " +
                             std::to_string(c.model.num_experts) + " and " +
                             std::to_string(c.model.num_layers));
    }
    GRACE_ASSIGN_OR_RETURN(model.table, EpochRoutingTable(welcome.epoch, c.topology, placement,
                                                          welcome.expected_load));
  }
  ServingState state;
  {
    auto view = std::make_shared<EpochView>();
    view->current = model.table;
    state.view.store(std::move(view));
  }
  state.ranks = std::vector<RankProgress>(c.local_ranks);
  const size_t counts = static_cast<size_t>(c.model.num_layers) * c.model.num_experts;
  std::vector<RankSlotWeights> sources;
  for (int i = 0; i < c.local_ranks; ++i) {
    state.ranks[i].counts = std::make_unique<std::atomic<uint32_t>[]>(counts);
    state.ranks[i].live =
        std::make_unique<LiveCounters>(c.model.num_layers, c.model.num_experts,
                                       c.topology.slots_per_gpu, c.coactivation_sample_every);
    if (daemon) {
      // The TCP migration path sends slots from these host copies; "nccl" sends device slots,
      // so it keeps none (at DeepSeek-V3 scale a rank's copies are tens of GB of host memory).
      sources.push_back(
          c.migration_transport == "nccl"
              ? RankSlotWeights{}
              : SlotWeights(c, model.weights, model.table->placement(), c.first_rank + i));
    }
  }
  state.backends = std::move(backends);
  std::vector<Status> results(c.local_ranks);
  std::atomic<int> joined_ranks{0};
  const std::function<void()> joined = [&] {
    if (joined_ranks.fetch_add(1) + 1 == c.local_ranks && on_ready) on_ready();
  };
  std::vector<std::thread> workers;
  for (int i = 0; i < c.local_ranks; ++i) {
    workers.emplace_back([&, i] {
      results[i] = RunRank(c, model, c.first_rank + i, state, state.ranks[i], joined);
      state.ranks[i].finished.store(true, std::memory_order_release);
    });
  }
  Status control;
  if (daemon) {
    control = daemon->Run(state, sources, stop);
  } else if (stop != nullptr) {
    // No daemon: the same clean stop, at one step past the furthest local worker.
    while (true) {
      bool all_finished = true;
      for (const RankProgress& r : state.ranks) all_finished &= r.finished.load();
      if (all_finished) break;
      if (stop->load() && state.stop_at.load() == kNoSwitchStep) {
        uint64_t at = 0;
        for (const RankProgress& r : state.ranks) at = std::max(at, r.next_step.load());
        state.stop_at.store(at + 1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  for (auto& w : workers) w.join();
  for (const Status& s : results) GRACE_RETURN_IF_ERROR(s);
  return control;
}

}  // namespace grace
