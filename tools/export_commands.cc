// gracectl export: writes a placement (an epoch of graced's store, or a `gracectl plan` file) in
// the format SGLang, vLLM or TensorRT-LLM reads at startup (the conversion: core/
// placement_export.h), and prints on stderr the launch flags the file implies.
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
  int mtp_layers = 0;
  int mtp_copy_layer = -1;
  int ep_size = 0;
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

// The placement of `epoch` (the current one when absent) from DIR/grace.db; `source` names it
// and `ranks` gets the epoch's EP size.
Placement LoadFromStore(const std::string& state_dir, std::optional<Epoch> epoch,
                        std::string* source, int* ranks) {
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
  *ranks = (*record)->topology.ranks();
  return std::move((*record)->placement);
}

// A `gracectl plan` file; `ranks` gets its topology's EP size (0 when it has none).
Placement LoadFromFile(const std::string& path, int* ranks) {
  StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) Fail(2, "--placement: " + text.status().message());
  Topology topology;
  topology.nodes = 0;  // stays 0 unless the file has a topology
  StatusOr<Placement> placement = PlacementFromJson(*text, path, &topology);
  if (!placement.ok()) Fail(2, placement.status().message());
  *ranks = topology.nodes > 0 ? topology.ranks() : 0;
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
  if (flags.model_layers != 0 && *format != ExportFormat::kSglang &&
      *format != ExportFormat::kTrtllm) {
    Fail(2, "export: --model-layers applies to --format sglang and trtllm only");
  }
  if ((flags.mtp_layers != 0 || flags.mtp_copy_layer >= 0) && *format != ExportFormat::kTrtllm) {
    Fail(2, "export: --mtp-layers and --mtp-copy-layer apply to --format trtllm only");
  }
  if (flags.mtp_copy_layer >= 0 && flags.mtp_layers == 0) {
    Fail(2, "export: --mtp-copy-layer needs --mtp-layers N");
  }
  std::string source = flags.placement_path;
  int ranks = 0;
  Placement placement =
      flags.state_dir.empty()
          ? LoadFromFile(flags.placement_path, &ranks)
          : LoadFromStore(flags.state_dir,
                          epoch_given ? std::optional<Epoch>(flags.epoch) : std::nullopt, &source,
                          &ranks);
  if (flags.ep_size > 0) {
    if (ranks > 0 && ranks != flags.ep_size) {
      Fail(2, "export: --ep-size " + std::to_string(flags.ep_size) + ", but " + source +
                  " was planned for " + std::to_string(ranks) + " ranks");
    }
    ranks = flags.ep_size;
  }
  if (const int filled = FillEmptySlots(&placement); filled > 0) {
    std::cerr << "gracectl: note: " << source << ": filled " << filled
              << " empty (spare) slots with extra replicas; " << flags.format
              << " has no empty slots\n";
  }
  ExportOptions options;
  options.num_model_layers = flags.model_layers;
  options.mtp_layers = flags.mtp_layers;
  options.mtp_copy_layer = flags.mtp_copy_layer;
  StatusOr<std::string> text = ExportPlacement(placement, *format, options);
  if (!text.ok()) Fail(2, source + ": " + text.status().message());
  // The launch flags go to stderr, so stdout stays the file when it is written there.
  const std::string file = flags.output.empty() ? "FILE" : flags.output;
  std::string flags_text = LaunchFlags(placement, *format, ranks, file);
  for (size_t at = 0, nl; (nl = flags_text.find('\n', at)) != std::string::npos; at = nl + 1) {
    std::cerr << "gracectl: launch: " << flags_text.substr(at, nl - at) << "\n";
  }
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
                  "sglang (--init-expert-location JSON), vllm (EPLB state JSON), vllm-mapping "
                  "(the eplb_initial_mapping JSONL record proposed in vLLM PR #41141) or trtllm "
                  "(MoE load balancer YAML)")
      ->required();
  CLI::Option* epoch =
      cmd->add_option("--epoch", flags->epoch, "epoch to export (default: the current one)");
  cmd->add_option("--state-dir", flags->state_dir, "graced's state directory (reads DIR/grace.db)");
  cmd->add_option("--placement", flags->placement_path, "placement JSON written by gracectl plan");
  cmd->add_option("-o,--output", flags->output, "file to write (default: stdout)");
  cmd->add_option("--model-layers", flags->model_layers,
                  "sglang: layers in the model, dense ones included; trtllm: the first MTP layer "
                  "id (default: last layer id + 1)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--mtp-layers", flags->mtp_layers,
                  "trtllm: add N multi-token-prediction MoE layers after the model's (balanced "
                  "round-robin rows)")
      ->check(CLI::Range(1, 16));
  cmd->add_option("--mtp-copy-layer", flags->mtp_copy_layer,
                  "trtllm: the MTP rows copy this layer id's row instead")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ep-size", flags->ep_size,
                  "EP size for the launch flags printed on stderr (default: the placement's "
                  "topology)")
      ->check(CLI::PositiveNumber);
  cmd->callback([flags, epoch] { RunExport(*flags, epoch->count() > 0); });
}

}  // namespace grace::tools
