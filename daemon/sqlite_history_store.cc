// The SQLite implementation of HistoryStore. This file is the one place where SQLite's error
// codes become Status values.
#include <sqlite3.h>

#include <cstring>
#include <map>
#include <utility>

#include <nlohmann/json.hpp>

#include "daemon/history_store.h"

namespace grace {
namespace {

// Each entry upgrades the schema by one version; never edit one that has shipped, add another.
constexpr const char* kMigrations[] = {
    // v1
    R"sql(
CREATE TABLE placements (
  epoch INTEGER PRIMARY KEY,
  committed_at_ms INTEGER NOT NULL,
  decision_id INTEGER NOT NULL,
  topology_json TEXT NOT NULL,
  placement_json TEXT NOT NULL
);
CREATE TABLE decisions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ms INTEGER NOT NULL,
  action TEXT NOT NULL,
  layer_index INTEGER NOT NULL,
  reason TEXT NOT NULL,
  predicted_gain_ms REAL NOT NULL,
  realised_gain_ms REAL,
  bytes INTEGER NOT NULL,
  epoch INTEGER
);
CREATE INDEX decisions_time ON decisions(time_ms);
CREATE TABLE load_samples (
  time_ms INTEGER NOT NULL,
  layer_index INTEGER NOT NULL,
  resolution_s INTEGER NOT NULL,
  load BLOB NOT NULL
);
CREATE INDEX load_samples_time ON load_samples(resolution_s, time_ms);
CREATE TABLE policy_changes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ms INTEGER NOT NULL,
  who TEXT NOT NULL,
  field TEXT NOT NULL,
  old_value TEXT NOT NULL,
  new_value TEXT NOT NULL
);
CREATE TABLE agent_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ms INTEGER NOT NULL,
  agent_id TEXT NOT NULL,
  event TEXT NOT NULL,
  detail TEXT NOT NULL
);
)sql",
};

class Statement {
 public:
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }
  sqlite3_stmt** out() { return &stmt_; }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

std::string ColumnText(sqlite3_stmt* s, int col) {
  const unsigned char* p = sqlite3_column_text(s, col);
  return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p));
}

class SqliteHistoryStore final : public HistoryStore {
 public:
  SqliteHistoryStore(sqlite3* db, SqliteStoreOptions options) : db_(db), options_(options) {}
  ~SqliteHistoryStore() override { sqlite3_close(db_); }

  // A reader (SqliteStoreOptions::read_only) changes nothing: it only checks that the schema is
  // the one this build writes.
  Status CheckSchema() {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version", &st));
    const int64_t version =
        sqlite3_step(st.get()) == SQLITE_ROW ? sqlite3_column_int64(st.get(), 0) : 0;
    const int64_t latest = static_cast<int64_t>(std::size(kMigrations));
    if (version != latest) {
      return FailedPrecondition("history database has schema version " + std::to_string(version) +
                                ", this build reads version " + std::to_string(latest) +
                                " (let graced open it once to migrate it)");
    }
    return Status::Ok();
  }

  Status Migrate() {
    GRACE_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    GRACE_RETURN_IF_ERROR(Exec("PRAGMA synchronous=NORMAL"));
    GRACE_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON"));
    GRACE_RETURN_IF_ERROR(
        Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
    int64_t version = 0;
    {
      Statement st;
      GRACE_RETURN_IF_ERROR(Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version", &st));
      if (sqlite3_step(st.get()) == SQLITE_ROW) version = sqlite3_column_int64(st.get(), 0);
    }
    const int64_t latest = static_cast<int64_t>(std::size(kMigrations));
    if (version > latest) {
      return FailedPrecondition("history database has schema version " + std::to_string(version) +
                                ", newer than this graced understands (" + std::to_string(latest) +
                                ")");
    }
    for (int64_t v = version; v < latest; ++v) {
      GRACE_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
      Status s = Exec(kMigrations[v]);
      if (s.ok())
        s = Exec("INSERT INTO schema_version(version) VALUES (" + std::to_string(v + 1) + ")");
      if (!s.ok()) {
        (void)Exec("ROLLBACK");
        return s.WithContext("schema migration to version " + std::to_string(v + 1));
      }
      GRACE_RETURN_IF_ERROR(Exec("COMMIT"));
    }
    return Status::Ok();
  }

  Status CommitPlacement(const PlacementRecord& r) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(
        Prepare("INSERT INTO placements(epoch, committed_at_ms, decision_id, topology_json, "
                "placement_json) "
                "VALUES (?, ?, ?, ?, ?)",
                &st));
    sqlite3_bind_int64(st.get(), 1, static_cast<int64_t>(r.epoch));
    sqlite3_bind_int64(st.get(), 2, r.committed_at_ms);
    sqlite3_bind_int64(st.get(), 3, r.decision_id);
    BindText(st, 4, TopologyToJson(r.topology).dump());
    BindText(st, 5, PlacementToJson(r.placement, r.topology));
    return StepDone(st, "commit placement of epoch " + std::to_string(r.epoch));
  }

  StatusOr<std::optional<PlacementRecord>> CurrentPlacement() override {
    return LoadPlacement(
        "SELECT epoch, committed_at_ms, decision_id, topology_json, placement_json "
        "FROM placements ORDER BY epoch DESC LIMIT 1",
        std::nullopt);
  }

  StatusOr<std::optional<PlacementRecord>> PlacementAt(Epoch epoch) override {
    return LoadPlacement(
        "SELECT epoch, committed_at_ms, decision_id, topology_json, placement_json "
        "FROM placements WHERE epoch = ?",
        epoch);
  }

  StatusOr<std::vector<PlacementRecord>> ListPlacements(const HistoryQuery& q) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(
        "SELECT epoch, committed_at_ms, decision_id FROM placements WHERE committed_at_ms >= ? AND "
        "committed_at_ms <= ? ORDER BY epoch DESC LIMIT ? OFFSET ?",
        &st));
    BindRange(st, q, 1);
    return ReadRows<PlacementRecord>(st, "list placements", [](sqlite3_stmt* row) {
      PlacementRecord r;
      r.epoch = static_cast<Epoch>(sqlite3_column_int64(row, 0));
      r.committed_at_ms = sqlite3_column_int64(row, 1);
      r.decision_id = sqlite3_column_int64(row, 2);
      return r;
    });
  }

  StatusOr<int64_t> RecordDecision(const StoredDecision& d) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(
        Prepare("INSERT INTO decisions(time_ms, action, layer_index, reason, predicted_gain_ms, "
                "realised_gain_ms, bytes, epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &st));
    sqlite3_bind_int64(st.get(), 1, d.time_ms);
    BindText(st, 2, d.action);
    sqlite3_bind_int(st.get(), 3, d.layer_index);
    BindText(st, 4, d.reason);
    sqlite3_bind_double(st.get(), 5, d.predicted_gain_ms);
    if (d.realised_gain_ms) {
      sqlite3_bind_double(st.get(), 6, *d.realised_gain_ms);
    } else {
      sqlite3_bind_null(st.get(), 6);
    }
    sqlite3_bind_int64(st.get(), 7, static_cast<int64_t>(d.bytes));
    if (d.epoch) {
      sqlite3_bind_int64(st.get(), 8, static_cast<int64_t>(*d.epoch));
    } else {
      sqlite3_bind_null(st.get(), 8);
    }
    GRACE_RETURN_IF_ERROR(StepDone(st, "record decision"));
    return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
  }

  Status SetRealisedGain(int64_t id, double gain_ms) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare("UPDATE decisions SET realised_gain_ms = ? WHERE id = ?", &st));
    sqlite3_bind_double(st.get(), 1, gain_ms);
    sqlite3_bind_int64(st.get(), 2, id);
    GRACE_RETURN_IF_ERROR(StepDone(st, "set realised gain"));
    return RequireChanged("decision " + std::to_string(id));
  }

  Status SetDecisionEpoch(int64_t id, Epoch epoch) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare("UPDATE decisions SET epoch = ? WHERE id = ?", &st));
    sqlite3_bind_int64(st.get(), 1, static_cast<int64_t>(epoch));
    sqlite3_bind_int64(st.get(), 2, id);
    GRACE_RETURN_IF_ERROR(StepDone(st, "set decision epoch"));
    return RequireChanged("decision " + std::to_string(id));
  }

  StatusOr<std::vector<StoredDecision>> ListDecisions(const HistoryQuery& q) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(
        "SELECT id, time_ms, action, layer_index, reason, predicted_gain_ms, realised_gain_ms, "
        "bytes, epoch FROM decisions WHERE time_ms >= ? AND time_ms <= ? AND (? < 0 OR "
        "layer_index = ? OR layer_index < 0) ORDER BY id DESC LIMIT ? OFFSET ?",
        &st));
    BindLayerQuery(st, q);
    return ReadRows<StoredDecision>(st, "list decisions", [](sqlite3_stmt* row) {
      StoredDecision d;
      d.id = sqlite3_column_int64(row, 0);
      d.time_ms = sqlite3_column_int64(row, 1);
      d.action = ColumnText(row, 2);
      d.layer_index = sqlite3_column_int(row, 3);
      d.reason = ColumnText(row, 4);
      d.predicted_gain_ms = sqlite3_column_double(row, 5);
      if (sqlite3_column_type(row, 6) != SQLITE_NULL) {
        d.realised_gain_ms = sqlite3_column_double(row, 6);
      }
      d.bytes = static_cast<uint64_t>(sqlite3_column_int64(row, 7));
      if (sqlite3_column_type(row, 8) != SQLITE_NULL) {
        d.epoch = static_cast<Epoch>(sqlite3_column_int64(row, 8));
      }
      return d;
    });
  }

  Status RecordLoad(int64_t time_ms, int layer_index, std::span<const float> load) override {
    return InsertLoad(time_ms, layer_index, 0, load);
  }

  StatusOr<std::vector<LoadSample>> QueryLoad(const HistoryQuery& q) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(
        "SELECT time_ms, layer_index, resolution_s, load FROM load_samples WHERE time_ms >= ? AND "
        "time_ms <= ? AND (? < 0 OR layer_index = ?) ORDER BY time_ms, layer_index LIMIT ? OFFSET "
        "?",
        &st));
    BindLayerQuery(st, q);
    return ReadRows<LoadSample>(st, "query load", ReadLoadRow);
  }

  Status Compact(int64_t now_ms) override {
    GRACE_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Status s = Downsample(0, 60, now_ms - options_.raw_keep_ms);
    if (s.ok()) s = Downsample(60, 600, now_ms - options_.minute_keep_ms);
    if (s.ok()) {
      Statement st;
      s = Prepare("DELETE FROM load_samples WHERE resolution_s = 600 AND time_ms < ?", &st);
      if (s.ok()) {
        sqlite3_bind_int64(st.get(), 1, now_ms - options_.retention_ms);
        s = StepDone(st, "expire load samples");
      }
    }
    // Refused connections are a stranger's doing: a day of them, the newest 1000 at most.
    if (s.ok()) {
      Statement st;
      s = Prepare(
          "DELETE FROM agent_events WHERE event = 'refused' AND (time_ms < ? OR id NOT IN (SELECT "
          "id FROM agent_events WHERE event = 'refused' ORDER BY id DESC LIMIT 1000))",
          &st);
      if (s.ok()) {
        sqlite3_bind_int64(st.get(), 1, now_ms - options_.minute_keep_ms);
        s = StepDone(st, "expire refused connections");
      }
    }
    if (!s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
    return Exec("COMMIT");
  }

  Status RecordPolicyChange(const PolicyChange& c) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(
        "INSERT INTO policy_changes(time_ms, who, field, old_value, new_value) VALUES (?,?,?,?,?)",
        &st));
    sqlite3_bind_int64(st.get(), 1, c.time_ms);
    BindText(st, 2, c.who);
    BindText(st, 3, c.field);
    BindText(st, 4, c.old_value);
    BindText(st, 5, c.new_value);
    return StepDone(st, "record policy change");
  }

  StatusOr<std::vector<PolicyChange>> ListPolicyChanges(const HistoryQuery& q) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(
        "SELECT time_ms, who, field, old_value, new_value FROM policy_changes WHERE time_ms >= ? "
        "AND time_ms <= ? ORDER BY id DESC LIMIT ? OFFSET ?",
        &st));
    BindRange(st, q, 1);
    return ReadRows<PolicyChange>(st, "list policy changes", [](sqlite3_stmt* row) {
      return PolicyChange{sqlite3_column_int64(row, 0), ColumnText(row, 1), ColumnText(row, 2),
                          ColumnText(row, 3), ColumnText(row, 4)};
    });
  }

  Status RecordAgentEvent(const AgentEvent& e) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(
        "INSERT INTO agent_events(time_ms, agent_id, event, detail) VALUES (?,?,?,?)", &st));
    sqlite3_bind_int64(st.get(), 1, e.time_ms);
    BindText(st, 2, e.agent_id);
    BindText(st, 3, e.event);
    BindText(st, 4, e.detail);
    return StepDone(st, "record agent event");
  }

  StatusOr<std::vector<AgentEvent>> ListAgentEvents(const HistoryQuery& q) override {
    Statement st;
    GRACE_RETURN_IF_ERROR(
        Prepare("SELECT time_ms, agent_id, event, detail FROM agent_events WHERE time_ms >= ? AND "
                "time_ms <= ? ORDER BY id DESC LIMIT ? OFFSET ?",
                &st));
    BindRange(st, q, 1);
    return ReadRows<AgentEvent>(st, "list agent events", [](sqlite3_stmt* row) {
      return AgentEvent{sqlite3_column_int64(row, 0), ColumnText(row, 1), ColumnText(row, 2),
                        ColumnText(row, 3)};
    });
  }

 private:
  static int64_t Limit(const HistoryQuery& q) { return std::clamp<int64_t>(q.limit, 0, 1000); }

  Status Error(const std::string& what) const {
    return Internal("sqlite: " + what + ": " + sqlite3_errmsg(db_));
  }
  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      return Internal("sqlite: " + msg);
    }
    return Status::Ok();
  }
  Status Prepare(const char* sql, Statement* st) {
    if (sqlite3_prepare_v2(db_, sql, -1, st->out(), nullptr) != SQLITE_OK) return Error("prepare");
    return Status::Ok();
  }
  static void BindText(Statement& st, int index, const std::string& text) {
    sqlite3_bind_text(st.get(), index, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
  }
  // Binds ?1..?6 of "time_ms >= ? AND time_ms <= ? AND (? < 0 OR layer_index = ?) ... LIMIT ?
  // OFFSET ?" (a layer index of -1 matches every layer).
  static void BindLayerQuery(Statement& st, const HistoryQuery& q) {
    sqlite3_bind_int64(st.get(), 1, q.from_ms);
    sqlite3_bind_int64(st.get(), 2, q.to_ms);
    sqlite3_bind_int(st.get(), 3, q.layer_index);
    sqlite3_bind_int(st.get(), 4, q.layer_index);
    sqlite3_bind_int64(st.get(), 5, Limit(q));
    sqlite3_bind_int64(st.get(), 6, q.offset);
  }
  // Steps `st` to its end, turning every row into a T with `read(row)`.
  template <typename T, typename Read>
  StatusOr<std::vector<T>> ReadRows(Statement& st, const std::string& what, Read read) const {
    std::vector<T> out;
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) out.push_back(read(st.get()));
    GRACE_RETURN_IF_ERROR(CheckDone(rc, what));
    return out;
  }
  static void BindRange(Statement& st, const HistoryQuery& q, int first) {
    sqlite3_bind_int64(st.get(), first, q.from_ms);
    sqlite3_bind_int64(st.get(), first + 1, q.to_ms);
    sqlite3_bind_int64(st.get(), first + 2, Limit(q));
    sqlite3_bind_int64(st.get(), first + 3, q.offset);
  }
  Status StepDone(Statement& st, const std::string& what) {
    return CheckDone(sqlite3_step(st.get()), what);
  }
  Status CheckDone(int rc, const std::string& what) const {
    return rc == SQLITE_DONE ? Status::Ok() : Error(what);
  }
  Status RequireChanged(const std::string& what) const {
    return sqlite3_changes(db_) > 0 ? Status::Ok() : NotFound(what + " does not exist");
  }

  StatusOr<std::optional<PlacementRecord>> LoadPlacement(const char* sql,
                                                         std::optional<Epoch> epoch) {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(sql, &st));
    if (epoch) sqlite3_bind_int64(st.get(), 1, static_cast<int64_t>(*epoch));
    const int rc = sqlite3_step(st.get());
    if (rc == SQLITE_DONE) return std::optional<PlacementRecord>();
    if (rc != SQLITE_ROW) return Error("load placement");
    PlacementRecord r;
    r.epoch = static_cast<Epoch>(sqlite3_column_int64(st.get(), 0));
    r.committed_at_ms = sqlite3_column_int64(st.get(), 1);
    r.decision_id = sqlite3_column_int64(st.get(), 2);
    r.topology = TopologyFromJson(
        nlohmann::json::parse(ColumnText(st.get(), 3), nullptr, /*allow_exceptions=*/false));
    GRACE_ASSIGN_OR_RETURN(r.placement,
                           PlacementFromJson(ColumnText(st.get(), 4),
                                             "placement of epoch " + std::to_string(r.epoch)));
    return std::optional<PlacementRecord>(std::move(r));
  }

  Status InsertLoad(int64_t time_ms, int layer_index, int resolution_s,
                    std::span<const float> load) {
    Statement st;
    GRACE_RETURN_IF_ERROR(Prepare(
        "INSERT INTO load_samples(time_ms, layer_index, resolution_s, load) VALUES (?,?,?,?)",
        &st));
    sqlite3_bind_int64(st.get(), 1, time_ms);
    sqlite3_bind_int(st.get(), 2, layer_index);
    sqlite3_bind_int(st.get(), 3, resolution_s);
    sqlite3_bind_blob(st.get(), 4, load.data(), static_cast<int>(load.size_bytes()),
                      SQLITE_TRANSIENT);
    return StepDone(st, "record load");
  }

  static LoadSample ReadLoadRow(sqlite3_stmt* s) {
    LoadSample sample;
    sample.time_ms = sqlite3_column_int64(s, 0);
    sample.layer_index = sqlite3_column_int(s, 1);
    sample.resolution_s = sqlite3_column_int(s, 2);
    const int bytes = sqlite3_column_bytes(s, 3);
    sample.load.resize(bytes / sizeof(float));
    if (bytes > 0)
      std::memcpy(sample.load.data(), sqlite3_column_blob(s, 3),
                  sample.load.size() * sizeof(float));
    return sample;
  }

  // Replaces rows of resolution `from_s` older than `cutoff_ms` by per-bucket means of
  // resolution `to_s`. Only whole buckets (ending before the cutoff) are folded.
  Status Downsample(int from_s, int to_s, int64_t cutoff_ms) {
    const int64_t bucket_ms = int64_t{to_s} * 1000;
    const int64_t boundary = cutoff_ms >= 0 ? cutoff_ms / bucket_ms * bucket_ms : 0;
    std::map<std::pair<int64_t, int>, std::pair<std::vector<double>, int>> buckets;
    {
      Statement st;
      GRACE_RETURN_IF_ERROR(
          Prepare("SELECT time_ms, layer_index, resolution_s, load FROM load_samples WHERE "
                  "resolution_s = ? "
                  "AND time_ms < ?",
                  &st));
      sqlite3_bind_int(st.get(), 1, from_s);
      sqlite3_bind_int64(st.get(), 2, boundary);
      int rc;
      while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
        LoadSample s = ReadLoadRow(st.get());
        auto& [sum, n] = buckets[{s.time_ms / bucket_ms * bucket_ms, s.layer_index}];
        if (sum.size() < s.load.size()) sum.resize(s.load.size(), 0.0);
        for (size_t i = 0; i < s.load.size(); ++i) sum[i] += s.load[i];
        ++n;
      }
      GRACE_RETURN_IF_ERROR(CheckDone(rc, "read load for downsampling"));
    }
    for (const auto& [key, value] : buckets) {
      const auto& [sum, n] = value;
      std::vector<float> mean(sum.size());
      for (size_t i = 0; i < sum.size(); ++i) mean[i] = static_cast<float>(sum[i] / n);
      GRACE_RETURN_IF_ERROR(InsertLoad(key.first, key.second, to_s, mean));
    }
    Statement del;
    GRACE_RETURN_IF_ERROR(
        Prepare("DELETE FROM load_samples WHERE resolution_s = ? AND time_ms < ?", &del));
    sqlite3_bind_int(del.get(), 1, from_s);
    sqlite3_bind_int64(del.get(), 2, boundary);
    return StepDone(del, "delete downsampled load");
  }

  sqlite3* db_;
  SqliteStoreOptions options_;
};

// SQLite's quick_check (every page and index structure, without the costlier cross-checks of
// integrity_check): garbage inside the file is found at start, not by a later query.
Status QuickCheck(sqlite3* db, const std::string& path) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, nullptr);
  std::string first;
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(st, 0);
      if (first.empty() && text != nullptr) first = reinterpret_cast<const char*>(text);
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE || first != "ok") {
    const std::string why = rc != SQLITE_DONE ? sqlite3_errmsg(db) : first;
    return DataLoss("history database " + path + " is damaged (" + why +
                    "); move it aside and restore a backup (graced --restore FILE), or start "
                    "without it: graced adopts the agents' epoch");
  }
  return Status::Ok();
}

}  // namespace

Status CopyHistoryDatabase(const std::string& from, const std::string& to) {
  sqlite3* src = nullptr;
  sqlite3* dst = nullptr;
  auto close_both = [&] {
    sqlite3_close(src);
    sqlite3_close(dst);
  };
  if (sqlite3_open_v2(from.c_str(), &src, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string msg = src ? sqlite3_errmsg(src) : "out of memory";
    close_both();
    return Unavailable("cannot open history database " + from + ": " + msg);
  }
  sqlite3_busy_timeout(src, 5000);
  if (Status s = QuickCheck(src, from); !s.ok()) {
    close_both();
    return s;
  }
  if (sqlite3_open_v2(to.c_str(), &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    const std::string msg = dst ? sqlite3_errmsg(dst) : "out of memory";
    close_both();
    return Unavailable("cannot write " + to + ": " + msg);
  }
  sqlite3_busy_timeout(dst, 5000);
  sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
  if (b == nullptr) {
    const std::string msg = sqlite3_errmsg(dst);
    close_both();
    return Unavailable("cannot copy " + from + " to " + to + ": " + msg);
  }
  int rc;
  // 256 pages at a time, so that a running graced is held up only briefly.
  while ((rc = sqlite3_backup_step(b, 256)) == SQLITE_OK || rc == SQLITE_BUSY ||
         rc == SQLITE_LOCKED) {
    if (rc != SQLITE_OK) sqlite3_sleep(10);
  }
  sqlite3_backup_finish(b);
  Status s = rc == SQLITE_DONE
                 ? QuickCheck(dst, to)
                 : Unavailable("copying " + from + " to " + to + ": " + sqlite3_errstr(rc));
  close_both();
  return s;
}

StatusOr<std::unique_ptr<HistoryStore>> OpenSqliteHistoryStore(const std::string& path,
                                                               SqliteStoreOptions options) {
  sqlite3* db = nullptr;
  const int mode =
      options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  const int rc = sqlite3_open_v2(path.c_str(), &db, mode | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Unavailable("cannot open history database " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  if (Status s = QuickCheck(db, path); !s.ok()) {
    sqlite3_close(db);
    return s;
  }
  auto store = std::make_unique<SqliteHistoryStore>(db, options);
  GRACE_RETURN_IF_ERROR(
      (options.read_only ? store->CheckSchema() : store->Migrate()).WithContext(path));
  return std::unique_ptr<HistoryStore>(std::move(store));
}

}  // namespace grace
