// For the importer tests: a file of given bytes in the test's temporary directory, and the
// message ImportTraces refuses it with.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/trace_import.h"

namespace grace::testing {

inline std::string WriteTestFile(const std::string& name, const std::string& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// The error of importing `path`; a failure of the calling test if it imports.
inline std::string ImportError(const std::string& path) {
  StatusOr<Trace> t = ImportTraces({path});
  EXPECT_FALSE(t.ok()) << path << " imported";
  return t.ok() ? "" : t.status().message();
}

}  // namespace grace::testing
