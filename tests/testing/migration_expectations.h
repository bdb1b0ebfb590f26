// ExpectMigrationsSwitchedAndExact(j): what every live-migration run of RunMigrationBench
// (bench/migration_bench.h) must show, whatever the backend: at least two migrations, each
// switched; no token lost, no output or step sum off the dense reference, no step mixing epochs
// across ranks; and exactly PlanMigration's minimum of bytes staged.
#pragma once

#include <cstdint>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace grace::testing {

inline void ExpectMigrationsSwitchedAndExact(const nlohmann::json& j) {
  ASSERT_GE(j["migration"]["migrations"].size(), 2u);
  for (const auto& m : j["migration"]["migrations"]) EXPECT_TRUE(m["switched"].get<bool>());
  EXPECT_EQ(j["tokens_lost"].get<int64_t>(), 0);
  EXPECT_EQ(j["checksum_mismatches"].get<int64_t>(), 0);  // token outputs and step sums
  EXPECT_EQ(j["mixed_epoch_steps"].get<int64_t>(), 0);
  EXPECT_GT(j["bytes_minimum"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["bytes_moved"].get<uint64_t>(), j["bytes_minimum"].get<uint64_t>());
}

}  // namespace grace::testing
