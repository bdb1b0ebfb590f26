// Where tests and benchmarks find the real routing traces of ../shared/traces/real.
//
// One setting: the environment variable GRACE_TRACES_DIR, else <source dir>/../shared/traces/real.
// Without the folder a developer's run skips the tests that need it, naming the path; under CI
// (CI=true) its absence fails them, so CI can never pass by skipping.
//
//   TEST(Foo, Bar) {
//     GRACE_REQUIRE_REAL_TRACES(dir);   // std::string dir, or skip / fail
//     auto t = ImportTraces({dir + "/qwen1.5-moe-a2.7b-gsm8k/moe_layer0.jsonl"});
//   }
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace grace::testing {

inline std::string RealTracesDir() {
  if (const char* env = std::getenv("GRACE_TRACES_DIR"); env != nullptr && *env != '\0') return env;
  return std::string(GRACE_SOURCE_DIR) + "/../shared/traces/real";
}

inline bool RunningUnderCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

}  // namespace grace::testing

#define GRACE_REQUIRE_REAL_TRACES(var)                                                 \
  std::string var = ::grace::testing::RealTracesDir();                                 \
  if (!std::filesystem::is_directory(var)) {                                           \
    if (::grace::testing::RunningUnderCi()) {                                          \
      FAIL() << "real traces not found at " << var << " (CI=true requires them)";      \
    } else {                                                                           \
      GTEST_SKIP() << "real traces not found at " << var << " (set GRACE_TRACES_DIR)"; \
    }                                                                                  \
  }
