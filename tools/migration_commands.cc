// gracectl bench migration [--json]: the live-migration figures (bench/migration_bench.h).
#include <cstdio>
#include <iostream>

#include "bench/migration_bench.h"
#include "tools/commands.h"

namespace grace::tools {

void AddMigrationCommands(CLI::App& /*app*/, CLI::App& bench) {
  struct Flags {
    bool json = false;
    bool no_sigkill = false;
    bool no_faults = false;
    MigrationBenchOptions options;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = bench.add_subcommand(
      "migration",
      "live expert migration on loopback agents: stall, exactness, bytes, SIGKILL, fault cases");
  cmd->add_flag("--json", flags->json, "print one JSON object");
  cmd->add_option("--steps", flags->options.steps, "replay steps")->capture_default_str();
  cmd->add_option("--every", flags->options.every_steps, "a re-placement every M steps")
      ->capture_default_str();
  cmd->add_option("--steps-per-second", flags->options.steps_per_second, "replay pacing")
      ->capture_default_str();
  cmd->add_option("--tokens-per-rank", flags->options.tokens_per_rank, "tokens per rank and step")
      ->capture_default_str();
  cmd->add_option("--hidden", flags->options.hidden, "hidden size")->capture_default_str();
  cmd->add_option("--ffn", flags->options.ffn, "expert FFN size")->capture_default_str();
  cmd->add_option("--max-bytes-per-s", flags->options.max_bytes_per_s,
                  "copy rate cap per agent in the migration run (0: none)")
      ->capture_default_str();
  cmd->add_flag("--no-sigkill", flags->no_sigkill, "skip the SIGKILL run");
  cmd->add_flag("--no-faults", flags->no_faults, "skip the fault cases");
  cmd->add_flag("--baseline", flags->options.baseline, "also run the replay with no migration");
  cmd->add_option("--kill-rank", flags->options.kill_rank, "the agent the SIGKILL run kills")
      ->capture_default_str();
  cmd->add_option("--work-dir", flags->options.work_dir, "keep the runs' files here");
  cmd->add_option("--agent", flags->options.agent_binary,
                  "grace-agent binary (default: $GRACE_AGENT_BINARY or the build tree's)");
  cmd->callback([flags] {
    flags->options.sigkill = !flags->no_sigkill;
    flags->options.faults = !flags->no_faults;
    auto result = RunMigrationBench(flags->options);
    if (!result.ok()) {
      std::cerr << "gracectl bench migration: " << result.status().ToString() << "\n";
      throw CommandExit{1};
    }
    const nlohmann::json& j = *result;
    if (flags->json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::printf("migrations:                %zu\n", j["migrations"].get<size_t>());
      std::printf("p99 during / p99 steady:   %.3f\n",
                  j["p99_during_over_p99_steady"].get<double>());
      std::printf("switch step / median step: %.3f\n", j["switch_step_over_median"].get<double>());
      std::printf("max step / steady p99:     %.3f\n", j["max_step_over_p99"].get<double>());
      std::printf("mixed-epoch steps:         %lld\n",
                  static_cast<long long>(j["mixed_epoch_steps"].get<int64_t>()));
      std::printf("tokens lost or duplicated: %lld\n",
                  static_cast<long long>(j["tokens_lost"].get<int64_t>()));
      std::printf("checksum mismatches:       %lld\n",
                  static_cast<long long>(j["checksum_mismatches"].get<int64_t>()));
      std::printf("bytes moved / minimum:     %llu / %llu\n",
                  static_cast<unsigned long long>(j["bytes_moved"].get<uint64_t>()),
                  static_cast<unsigned long long>(j["bytes_minimum"].get<uint64_t>()));
      std::printf("PREPARE -> switch ms:      %s\n", j["prepare_to_switch_ms"].dump().c_str());
      if (j.contains("faults")) {
        for (const auto& f : j["faults"])
          std::printf("fault:                     %s\n", f.dump().c_str());
      }
      if (j.contains("sigkill"))
        std::printf("sigkill:                   %s\n", j["sigkill"].dump().c_str());
    }
    bool exact = j["tokens_lost"].get<int64_t>() == 0 &&
                 j["checksum_mismatches"].get<int64_t>() == 0 &&
                 j["mixed_epoch_steps"].get<int64_t>() == 0;
    for (const auto& f : j.value("faults", nlohmann::json::array())) {
      exact = exact && f.value("mixed_epoch_steps", 1) == 0 && f.value("tokens_lost", 1) == 0 &&
              f.value("checksum_mismatches", 1) == 0;
    }
    if (!exact) throw CommandExit{1};
  });
}

}  // namespace grace::tools
