// HistoryStore: graced's durable memory: placements by epoch, decisions with their predicted
// and realised gains, per-layer load time series, policy changes and agent events.
//
// The placement of an epoch is written when that epoch is committed, in one transaction, so after
// a restart (also after SIGKILL) CurrentPlacement() returns the last committed epoch and nothing
// committed is lost. Load samples are downsampled by Compact(): raw samples are kept for an hour,
// one-minute means for a day, ten-minute means for the retention period (a week by default), so
// a week of history for any number of reports fits in bounded space.
//
// Thread contract: one HistoryStore is used by one thread at a time (graced's control thread);
// callers on other threads (the REST server) serialise through the daemon's own lock.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/placement.h"
#include "core/status.h"
#include "core/topology.h"

namespace grace {

struct PlacementRecord {
  Epoch epoch = 0;
  int64_t committed_at_ms = 0;
  int64_t decision_id = 0;  // 0 when not the result of a recorded decision (the initial epoch)
  Topology topology;
  Placement placement;
};

struct StoredDecision {
  int64_t id = 0;  // assigned by RecordDecision
  int64_t time_ms = 0;
  std::string action;    // "add_replica", "drop_replica", "swap", "regroup_layer", "replan", "none"
  int layer_index = -1;  // -1 when the action spans layers
  std::string reason;
  double predicted_gain_ms = 0;
  std::optional<double> realised_gain_ms;  // filled in once measured
  uint64_t bytes = 0;
  std::optional<Epoch> epoch;  // the epoch it produced, once committed
};

struct LoadSample {
  int64_t time_ms = 0;  // bucket start for downsampled rows
  int layer_index = 0;
  int resolution_s = 0;     // 0: raw report; 60 or 600: mean over the bucket
  std::vector<float> load;  // per expert
};

struct PolicyChange {
  int64_t time_ms = 0;
  std::string who;
  std::string field;
  std::string old_value;
  std::string new_value;
};

struct AgentEvent {
  int64_t time_ms = 0;
  std::string agent_id;
  std::string event;  // "joined", "lost", "rejoined", "refused", ...
  std::string detail;
};

// Paging and filters shared by the list calls; limit is capped at 1000.
struct HistoryQuery {
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;
  int layer_index = -1;  // -1: any
  int64_t offset = 0;
  int64_t limit = 100;
};

class HistoryStore {
 public:
  virtual ~HistoryStore() = default;

  virtual Status CommitPlacement(const PlacementRecord& record) = 0;
  virtual StatusOr<std::optional<PlacementRecord>> CurrentPlacement() = 0;
  virtual StatusOr<std::optional<PlacementRecord>> PlacementAt(Epoch epoch) = 0;
  // Newest first; placements carry no rows here (summary only: epoch, time, decision).
  virtual StatusOr<std::vector<PlacementRecord>> ListPlacements(const HistoryQuery& query) = 0;

  virtual StatusOr<int64_t> RecordDecision(const StoredDecision& decision) = 0;
  virtual Status SetRealisedGain(int64_t decision_id, double realised_gain_ms) = 0;
  virtual Status SetDecisionEpoch(int64_t decision_id, Epoch epoch) = 0;
  virtual StatusOr<std::vector<StoredDecision>> ListDecisions(const HistoryQuery& query) = 0;

  virtual Status RecordLoad(int64_t time_ms, int layer_index, std::span<const float> load) = 0;
  // Oldest first, every resolution that overlaps the range.
  virtual StatusOr<std::vector<LoadSample>> QueryLoad(const HistoryQuery& query) = 0;
  // Downsamples and expires load samples as of `now_ms`.
  virtual Status Compact(int64_t now_ms) = 0;

  virtual Status RecordPolicyChange(const PolicyChange& change) = 0;
  virtual StatusOr<std::vector<PolicyChange>> ListPolicyChanges(const HistoryQuery& query) = 0;
  virtual Status RecordAgentEvent(const AgentEvent& event) = 0;
  virtual StatusOr<std::vector<AgentEvent>> ListAgentEvents(const HistoryQuery& query) = 0;
};

struct SqliteStoreOptions {
  int64_t raw_keep_ms = 3600LL * 1000;            // raw load samples
  int64_t minute_keep_ms = 24LL * 3600 * 1000;    // one-minute means
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;  // ten-minute means (placements, decisions,
                                                  // policy and agent events are kept, but
                                                  // refused connections only for
                                                  // minute_keep_ms, 1000 at most)
  bool read_only = false;  // for readers beside graced (gracectl export): opens an existing
                           // database without writing, and needs its schema to be current
};

// Opens (creating if needed) the SQLite database at `path` in WAL mode and brings its schema up
// to date, migration by migration; read_only opens an existing one as it is. ":memory:" works
// for tests.
// An existing file must pass SQLite's quick_check: a corrupt one is refused, naming the file.
StatusOr<std::unique_ptr<HistoryStore>> OpenSqliteHistoryStore(const std::string& path,
                                                               SqliteStoreOptions options = {});

// Copies the history database `from` to `to` with SQLite's online backup, consistent even while
// graced writes `from`; both copies are integrity-checked. `graced --backup FILE` uses it, and
// `graced --restore FILE` (graced stopped) copies a backup back over grace.db.
Status CopyHistoryDatabase(const std::string& from, const std::string& to);

}  // namespace grace
