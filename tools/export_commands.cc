// gracectl export: writes a placement (an epoch of graced's store, or a `gracectl plan` file) in
// the format SGLang, vLLM or TensorRT-LLM reads at startup (the conversion: core/
// placement_export.h).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "core/placement_export.h"
#include "core/trace_file.h"
#include "daemon/history_store.h"
#include "tools/commands.h"

namespace grace::tools {

namespace {

[[noreturn]] void Fail(int code, const std::string& message) {
  std::cerr << "gracectl: " << message << "\n";
  throw CommandExit{code};
}

struct ExportFlags {
  std::string format;
  Epoch epoch = 0;
  std::string state_dir;
  std::string placement_path;
  std::string output;
  int model_layers = 0;
};

// "epochs 1..5", or that there are none.
std::string EpochRange(HistoryStore& store, const std::string& db_path) {
  HistoryQuery query;
  query.limit = 1000;
  Epoch lowest = 0, highest = 0;
  bool any = false;
  for (;; query.offset += query.limit) {
    StatusOr<std::vector<PlacementRecord>> page = store.ListPlacements(query);
    if (!page.ok()) Fail(2, page.status().WithContext(db_path).ToString());
    for (const PlacementRecord& r : *page) {
      lowest = any ? std::min(lowest, r.epoch) : r.epoch;
      highest = any ? std::max(highest, r.epoch) : r.epoch;
      any = true;
    }
    if (static_cast<int64_t>(page->size()) < query.limit) break;
  }
  if (!any) return "it holds no placement yet";
  return "epochs " + std::to_string(lowest) + ".." + std::to_string(highest);
}

// The placement of `epoch` (the current one when absent) from DIR/grace.db; `source` names it.
Placement LoadFromStore(const std::string& state_dir, std::optional<Epoch> epoch,
                        std::string* source) {
  const std::string db_path = state_dir + "/grace.db";
  if (!std::filesystem::is_regular_file(db_path) || !std::ifstream(db_path)) {
    Fail(2, "cannot read " + db_path + " (--state-dir: graced's state directory)");
  }
  SqliteStoreOptions options;
  options.read_only = true;  // beside a running graced, and never creating or migrating
  StatusOr<std::unique_ptr<HistoryStore>> store = OpenSqliteHistoryStore(db_path, options);
  if (!store.ok()) Fail(2, store.status().ToString());
  StatusOr<std::optional<PlacementRecord>> record =
      epoch ? (*store)->PlacementAt(*epoch) : (*store)->CurrentPlacement();
  if (!record.ok()) Fail(2, record.status().WithContext(db_path).ToString());
  if (!record->has_value()) {
    const std::string range = EpochRange(**store, db_path);
    if (!epoch) Fail(2, "no placement in " + db_path + "; " + range);
    Fail(2, "no epoch " + std::to_string(*epoch) + " in " + db_path + "; " + range);
  }
  *source = db_path + " epoch " + std::to_string((*record)->epoch);
  return std::move((*record)->placement);
}

Placement LoadFromFile(const std::string& path) {
  StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) Fail(2, "--placement: " + text.status().message());
  StatusOr<Placement> placement = PlacementFromJson(*text, path);
  if (!placement.ok()) Fail(2, placement.status().message());
  return std::move(*placement);
}

void RunExport(const ExportFlags& flags, bool epoch_given) {
  StatusOr<ExportFormat> format = ParseExportFormat(flags.format);
  if (!format.ok()) Fail(2, "export: --format: " + format.status().message());
  if (flags.state_dir.empty() == flags.placement_path.empty()) {
    Fail(2, "export: give --state-dir DIR (graced's store) or --placement FILE (gracectl plan)");
  }
  if (epoch_given && flags.state_dir.empty()) {
    Fail(2, "export: --epoch picks an epoch of --state-dir; a --placement file holds one");
  }
  if (flags.model_layers != 0 && *format != ExportFormat::kSglang) {
    Fail(2, "export: --model-layers applies to --format sglang only");
  }
  std::string source = flags.placement_path;
  Placement placement =
      flags.state_dir.empty()
          ? LoadFromFile(flags.placement_path)
          : LoadFromStore(flags.state_dir,
                          epoch_given ? std::optional<Epoch>(flags.epoch) : std::nullopt, &source);
  if (const int filled = FillEmptySlots(&placement); filled > 0) {
    std::cerr << "gracectl: note: " << source << ": filled " << filled
              << " empty (spare) slots with extra replicas; " << flags.format
              << " has no empty slots\n";
  }
  StatusOr<std::string> text = ExportPlacement(placement, *format, flags.model_layers);
  if (!text.ok()) Fail(2, source + ": " + text.status().message());
  if (flags.output.empty()) {
    std::cout << *text;
    return;
  }
  std::ofstream out(flags.output);
  out << *text;
  if (!out) Fail(2, "cannot write " + flags.output + " (-o)");
  if (*format == ExportFormat::kSglang && !flags.output.ends_with(".json")) {
    std::cerr << "gracectl: note: SGLang reads --init-expert-location as a file only when its "
                 "name ends in .json\n";
  }
}

}  // namespace

void AddExportCommands(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export", "write a placement in the format SGLang, vLLM or TensorRT-LLM reads at startup");
  auto flags = std::make_shared<ExportFlags>();
  cmd->add_option("--format", flags->format,
                  "sglang (--init-expert-location JSON), vllm (EPLB state JSON) or trtllm (MoE "
                  "load balancer YAML)")
      ->required();
  CLI::Option* epoch =
      cmd->add_option("--epoch", flags->epoch, "epoch to export (default: the current one)");
  cmd->add_option("--state-dir", flags->state_dir, "graced's state directory (reads DIR/grace.db)");
  cmd->add_option("--placement", flags->placement_path, "placement JSON written by gracectl plan");
  cmd->add_option("-o,--output", flags->output, "file to write (default: stdout)");
  cmd->add_option("--model-layers", flags->model_layers,
                  "sglang: layers in the model, dense ones included (default: last layer id + 1)")
      ->check(CLI::PositiveNumber);
  cmd->callback([flags, epoch] { RunExport(*flags, epoch->count() > 0); });
}

}  // namespace grace::tools
