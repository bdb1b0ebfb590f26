// datapath_bench: the figures of bench/datapath_bench.h as one JSON object, without gracectl
// (the same code `gracectl bench datapath --json` runs).
#include <iostream>

#include "bench/datapath_bench.h"

int main() {
  auto result = grace::RunDatapathBench({});
  if (!result.ok()) {
    std::cerr << "datapath_bench: " << result.status().ToString() << "\n";
    return 1;
  }
  std::cout << result->dump(2) << "\n";
  return (*result)["lossless"].get<bool>() ? 0 : 1;
}
