#include "agent/epoch_switcher.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "migrate/weight_digest.h"
#include "policy/locality_routing.h"
#if defined(GRACE_HAVE_CUDA)
#include "agent/device_migration_executor.h"
#endif

namespace grace {

StatusOr<std::shared_ptr<const RoutingTable>> EpochRoutingTable(
    Epoch epoch, const Topology& topology, const Placement& placement,
    std::span<const float> expected_load) {
  GRACE_RETURN_IF_ERROR(placement.Validate(topology));
  const int layers = placement.num_layers(), experts = placement.num_experts;
  if (!expected_load.empty() && expected_load.size() != static_cast<size_t>(layers) * experts) {
    return InvalidArgument("expected load has " + std::to_string(expected_load.size()) +
                           " values; the placement needs " + std::to_string(layers) + " x " +
                           std::to_string(experts));
  }
  std::vector<LayerRouting> routings;
  std::vector<double> load(experts, 1.0);
  for (int l = 0; l < layers; ++l) {
    for (int e = 0; e < experts && !expected_load.empty(); ++e) {
      load[e] = expected_load[static_cast<size_t>(l) * experts + e];
    }
    routings.push_back(LocalityRouting(placement.physical_to_logical[l], load, topology));
  }
  return BuildRoutingTable(epoch, topology, placement, routings);
}

EpochSwitcher::EpochSwitcher(const AgentConfig& config, ServingState& state,
                             std::vector<RankSlotWeights>& sources, SendFn send)
    : c_(config),
      state_(state),
      sources_(sources),
      send_(std::move(send)),
      maps_(config.local_ranks, std::make_shared<const SlotMap>(SlotMap::Identity(
                                    config.model.num_layers, config.topology.slots_per_gpu))),
      replaced_(config.local_ranks) {}

EpochSwitcher::~EpochSwitcher() {
  DropUncommitted();
  if (pending_ != nullptr) retired_.push_back(std::move(pending_));
  for (auto& p : retired_) {
    p->cancel.store(true);
    for (std::thread& t : p->threads) t.join();
  }
}

void EpochSwitcher::LogOutcome(const char* result, const std::string& detail) {
  LogOutcome(*pending_, result, detail);
}

void EpochSwitcher::LogOutcome(const Pending& p, const char* result, const std::string& detail) {
  std::ofstream out(c_.output_dir + "/" + c_.agent_id + ".migrations.jsonl", std::ios::app);
  uint64_t bytes_in = 0, bytes_sent = 0;
  double paused_s = 0;
  for (const auto& r : p.results) {
    if (!r.ok()) continue;
    bytes_in += r->bytes_in;
    bytes_sent += r->bytes_sent;
    paused_s += r->paused_s;
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - p.prepared_at).count();
  out << "{\"agent\": \"" << c_.agent_id << "\", \"epoch\": " << p.epoch << ", \"result\": \""
      << result << "\", \"switch_step\": " << p.switch_step << ", \"bytes_in\": " << bytes_in
      << ", \"bytes_sent\": " << bytes_sent << ", \"paused_s\": " << paused_s
      << ", \"since_prepare_ms\": " << ms << ", \"detail\": \"" << detail << "\"}\n";
}

void EpochSwitcher::OnPrepare(const Prepare& p) {
  if (pending_ != nullptr && !pending_->committed && pending_->ready_sent &&
      p.epoch > pending_->epoch) {
    // graced begins epoch e+1 only once e is committed: this agent's COMMIT was lost.
    CommitLocally(pending_->epoch, "a PREPARE of a later epoch arrived");
  }
  if (pending_ != nullptr && !pending_->committed) {
    LogOutcome("superseded", "a new PREPARE arrived");
    DropUncommitted();
  }
  if (pending_ != nullptr) {
    // Committed and not switched yet (a step or two away): taken up once the workers switch.
    deferred_ = p;
    return;
  }
  StatusOr<Placement> placement = PlacementFromJson(p.placement_json, "PREPARE");
  StatusOr<std::shared_ptr<const RoutingTable>> table =
      placement.ok() ? EpochRoutingTable(p.epoch, c_.topology, *placement, p.expected_load)
                     : StatusOr<std::shared_ptr<const RoutingTable>>(placement.status());
  auto pending = std::make_unique<Pending>();
  pending->epoch = p.epoch;
  pending->prepared_at = Clock::now();
  pending_ = std::move(pending);
  if (!table.ok() || p.epoch <= serving_epoch()) {
    // No READY: the daemon's READY timeout aborts the migration.
    pending_->failed = true;
    LogOutcome("refused",
               table.ok() ? "epoch not after the serving one" : table.status().message());
    return;
  }
  pending_->placement = std::move(*placement);
  pending_->table = *table;
  const int n = c_.local_ranks;
  pending_->results.resize(n, StatusOr<StagedCopies>(Unavailable("not run")));
  pending_->staging.resize(n);
  auto transfers = std::make_shared<const std::vector<WireTransfer>>(p.transfers);
  for (int i = 0; i < n; ++i) {
    TransferOptions o;
    o.mesh.rank = c_.first_rank + i;
    o.mesh.size = c_.topology.ranks();
    o.mesh.rendezvous_host = c_.migration_rendezvous_host;
    // One of 8 ports, by epoch (the same on every agent): a cancelled attempt's rank 0 may
    // still sit in its rendezvous, and a retry has the next epoch number, so the next port.
    o.mesh.rendezvous_port = static_cast<uint16_t>(c_.migration_rendezvous_port + p.epoch % 8);
    o.mesh.listen_host = c_.listen_host;
    o.mesh.cluster_secret = c_.cluster_secret;  // only ranks that prove it join the mesh
    o.mesh.connect_timeout = std::chrono::milliseconds(c_.connect_timeout_ms);
    o.mesh.io_timeout = std::chrono::milliseconds(c_.connect_timeout_ms);
    o.slots_per_rank = c_.topology.slots_per_gpu;
    o.expert_floats = static_cast<size_t>(3) * c_.model.ffn * c_.model.hidden;
    o.chunk_bytes = static_cast<size_t>(c_.chunk_bytes);
    o.max_bytes_per_s = c_.max_bytes_per_s / n;
    o.step_budget = c_.step_budget;
    o.progress = &state_.ranks[i];
    o.cancel = &pending_->cancel;
    o.target_epoch = p.epoch;  // bound into every expert's digest
    Pending* pp = pending_.get();
    // A snapshot of the sources: the control thread updates its own at each switch.
    auto src = std::make_shared<const RankSlotWeights>(sources_[i]);
    ExpertBackend* backend = state_.backends[i].get();
    std::shared_ptr<const SlotMap> map = maps_[i];
    // The slots earlier switches replaced and Advance has not returned yet: this thread
    // returns them before it stages (its spares may be among them).
    std::vector<Replaced> replaced = std::move(replaced_[i]);
    replaced_[i].clear();
    const auto wait_past_switch = std::chrono::milliseconds(c_.connect_timeout_ms);
    const bool on_device = c_.migration_transport == "nccl";
    const auto nccl_timeout = std::chrono::milliseconds(c_.nccl_timeout_ms);
    pp->threads.emplace_back([o, transfers, src, pp, i, backend, map, replaced, wait_past_switch,
                              on_device, nccl_timeout] {
      // The copy yields the CPU to the data path's threads.
      setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
      // Every rank normally runs the new epoch by now; the wait is bounded because this rank's
      // own data path switched before this PREPARE was taken up, which is what makes the
      // release safe here.
      auto release_replaced = [&] {
        const auto deadline = std::chrono::steady_clock::now() + wait_past_switch;
        for (const Replaced& r : replaced) {
          while (o.progress->mesh_epoch.load(std::memory_order_acquire) < r.epoch &&
                 !o.cancel->load() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          ReleaseSlots(*backend, r.slots);
        }
      };
      StatusOr<StagedCopies> copies = Unavailable("not run");
      if (on_device) {
        // Device to device, straight into spare slots: the spares are needed before the copy.
        release_replaced();
#if defined(GRACE_HAVE_CUDA)
        StatusOr<DeviceStagedCopies> device = RunRankDeviceTransfers(
            {.transfer = o, .timeout = nccl_timeout}, *transfers, *backend, *map);
        if (device.ok()) {
          pp->staging[i] = std::move(device->staging);
          copies = std::move(device->copies);
        } else {
          copies = device.status();
        }
#else
        (void)nccl_timeout;
        copies =
            FailedPrecondition("[migration].transport = \"nccl\" but grace was built without CUDA");
#endif
      } else {
        copies = RunRankTransfers(o, *transfers, *src);
        release_replaced();
        if (copies.ok()) {
          StatusOr<BackendStaging> st =
              StageIntoBackend(*backend, *map, copies->staged, o.mesh.rank, o.slots_per_rank);
          if (st.ok()) {
            pp->staging[i] = std::move(*st);
          } else {
            copies = st.status();
          }
        }
      }
      pp->results[i] = std::move(copies);
      pp->finished.fetch_add(1, std::memory_order_release);
    });
  }
}

void EpochSwitcher::OnCommit(const Commit& m) {
  if (pending_ == nullptr || pending_->epoch != m.epoch || !pending_->ready_sent) {
    std::fprintf(stderr, "grace-agent %s: COMMIT of epoch %llu with no staged copies for it\n",
                 c_.agent_id.c_str(), static_cast<unsigned long long>(m.epoch));
    return;
  }
  Publish(m.switch_step);
  uint64_t at = 0;
  for (const RankProgress& r : state_.ranks) {
    at = std::max(at, r.next_step.load(std::memory_order_acquire));
  }
  if (at > m.switch_step) {
    // Late (or carried in band already): the ranks switch at the first step one of them
    // knows the commit, all alike (agent/epoch_agreement.h).
    std::fprintf(stderr, "grace-agent %s: COMMIT for step %llu arrived at step %llu\n",
                 c_.agent_id.c_str(), static_cast<unsigned long long>(m.switch_step),
                 static_cast<unsigned long long>(at));
  }
}

void EpochSwitcher::Publish(uint64_t switch_step) {
  Pending& p = *pending_;
  if (switch_step != kNoSwitchStep) {
    p.committed = true;
    p.switch_step = switch_step;
  }
  auto view = std::make_shared<EpochView>();
  view->current = state_.view.load()->current;
  view->next = p.table;
  view->switch_step = switch_step;
  for (auto& r : p.results) {
    for (StagedSlot& s : r->staged) view->staged.push_back(s);
  }
  for (const auto& st : p.staging) view->slot_maps.push_back(st->map);
  state_.view.store(std::move(view));
}

void EpochSwitcher::CommitLocally(Epoch epoch, const char* why) {
  if (pending_ == nullptr || pending_->epoch != epoch || !pending_->ready_sent ||
      pending_->committed) {
    return;
  }
  uint64_t at = 0;
  for (const RankProgress& r : state_.ranks) {
    at = std::max(at, r.next_step.load(std::memory_order_acquire));
  }
  std::fprintf(stderr, "grace-agent %s: epoch %llu is committed (%s); switching from step %llu\n",
               c_.agent_id.c_str(), static_cast<unsigned long long>(epoch), why,
               static_cast<unsigned long long>(at));
  Publish(at);
}

void EpochSwitcher::OnDisconnected() {
  // Without READY graced cannot have committed (and aborts when it sees the reconnect); after
  // READY the outcome is in doubt until the Welcome says it: keep the staged copies.
  if (pending_ != nullptr && !pending_->ready_sent) DropUncommitted();
}

void EpochSwitcher::OnWelcome(const Welcome& w) {
  if (pending_ == nullptr || pending_->committed) return;
  if (w.epoch == pending_->epoch) {
    CommitLocally(w.epoch, "the daemon's Welcome says so");
  } else {
    // graced aborted it (it aborts an uncommitted migration when a participant reconnects).
    DropUncommitted();
  }
}

void EpochSwitcher::OnAbort(const Abort& m) {
  if (pending_ == nullptr || pending_->epoch != m.epoch) return;
  DropUncommitted();
}

void EpochSwitcher::DropUncommitted() {
  if (pending_ == nullptr || pending_->committed) return;
  pending_->cancel.store(true);
  if (state_.view.load()->next == pending_->table && pending_->table != nullptr) {
    auto view = std::make_shared<EpochView>();
    view->current = state_.view.load()->current;
    state_.view.store(std::move(view));
  }
  LogOutcome("aborted", "");
  retired_.push_back(std::move(pending_));  // staged buffers go when its threads are reaped
}

bool EpochSwitcher::ReportFailedCopy(Pending& p, bool integrity_only) {
  if (p.failure_reported) return true;
  for (const auto& r : p.results) {
    const bool integrity = !r.ok() && IsWeightIntegrityError(r.status());
    if (r.ok() || (integrity_only && !integrity)) continue;
    p.failure_reported = true;
    // Logged once per migration; weights that failed their digest are never staged.
    std::fprintf(stderr, "grace-agent %s: migration to epoch %llu failed: %s\n",
                 c_.agent_id.c_str(), static_cast<unsigned long long>(p.epoch),
                 r.status().ToString().c_str());
    LogOutcome(p, integrity ? "integrity_failed" : "failed", r.status().message());
    // Tell the daemon now rather than letting it wait for the READY timeout.
    send_(Abort{p.epoch, r.status().message(),
                integrity ? AbortCause::kWeightIntegrity : AbortCause::kOther});
    return true;
  }
  return false;
}

void EpochSwitcher::ReleaseReplacedSlots() {
  for (int i = 0; i < c_.local_ranks; ++i) {
    const Epoch past = state_.ranks[i].mesh_epoch.load(std::memory_order_acquire);
    std::vector<Replaced>& list = replaced_[i];
    for (auto it = list.begin(); it != list.end();) {
      if (it->epoch <= past) {
        ReleaseSlots(*state_.backends[i], it->slots);
        it = list.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void EpochSwitcher::ReleaseStagedSlots(Pending& p) {
  for (size_t i = 0; i < p.staging.size(); ++i) {
    if (p.staging[i].has_value()) ReleaseSlots(*state_.backends[i], p.staging[i]->acquired);
    p.staging[i].reset();
  }
}

void EpochSwitcher::Advance() {
  for (auto it = retired_.begin(); it != retired_.end();) {
    // Counted against results: a migration dropped after READY has joined its threads.
    if ((*it)->finished.load(std::memory_order_acquire) ==
        static_cast<int>((*it)->results.size())) {
      for (std::thread& t : (*it)->threads) {
        if (t.joinable()) t.join();
      }
      // A rank whose received weights failed their digest reports it even when the migration
      // was dropped first (its closed mesh made a peer fail, whose ABORT came back sooner).
      (void)ReportFailedCopy(**it, true);
      ReleaseStagedSlots(**it);  // never published as current: no step reads them
      it = retired_.erase(it);
    } else {
      ++it;
    }
  }
  ReleaseReplacedSlots();
  if (pending_ == nullptr) return;
  Pending& p = *pending_;
  const int n = static_cast<int>(p.threads.size());
  if (!p.ready_sent && !p.failed && p.finished.load(std::memory_order_acquire) == n) {
    for (auto& t : p.threads) t.join();
    p.threads.clear();
    if (ReportFailedCopy(p, false)) {
      p.failed = true;
      return;
    }
    // Staged first, READY second: from READY on, the ranks may switch in band at any step.
    Publish(kNoSwitchStep);
    if (send_(Ready{p.epoch})) p.ready_sent = true;
  }
  if (!p.ready_sent) return;
  uint64_t since = 0;
  for (const RankProgress& r : state_.ranks) {
    if (r.epoch.load(std::memory_order_acquire) != p.epoch) return;
    since = std::max(since, r.epoch_since.load(std::memory_order_relaxed));
  }
  // Every local worker has run a step of the new epoch: it is committed (no rank switches to
  // an uncommitted one), by COMMIT or in band.
  p.committed = true;
  p.switch_step = since;
  if (!send_(Switched{p.epoch, since})) return;
  auto view = std::make_shared<EpochView>();
  view->current = p.table;
  view->switch_step = p.switch_step;
  state_.view.store(std::move(view));
  // The slot weights of the new epoch: staged copies replace, emptied slots drop theirs. (The
  // device path keeps no host copies, its sources are empty: the weights live in device slots.)
  const int spr = c_.topology.slots_per_gpu;
  for (int i = 0; i < c_.local_ranks; ++i) {
    RankSlotWeights& w = sources_[i];
    if (w.empty()) continue;
    for (const StagedSlot& s : p.results[i]->staged) w[s.layer_index][s.slot % spr] = s.weights;
    for (int l = 0; l < p.placement.num_layers(); ++l) {
      for (int k = 0; k < spr; ++k) {
        if (p.placement.physical_to_logical[l][(c_.first_rank + i) * spr + k] == kEmptySlot) {
          w[l][k].reset();
        }
      }
    }
  }
  // The new maps serve; the slots the old ones named wait until every rank is past the switch.
  for (int i = 0; i < c_.local_ranks; ++i) {
    maps_[i] = p.staging[i]->map;
    replaced_[i].push_back({p.epoch, std::move(p.staging[i]->replaced)});
  }
  LogOutcome("switched", "");
  pending_.reset();
  if (deferred_.has_value()) {
    Prepare next = std::move(*deferred_);
    deferred_.reset();
    if (next.epoch > serving_epoch()) OnPrepare(next);
  }
}

}  // namespace grace
