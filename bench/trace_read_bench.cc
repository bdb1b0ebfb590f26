// Native trace read speed in expert ids per second on one core (target: >= 50 M/s). Writes a
// synthetic trace of about 32 M ids (DeepSeek-like 256 experts, top-8) to a temporary file and
// reads it through NativeTraceReader, reusing one TraceStep as replay does. Google Benchmark's
// items_per_second is the figure; `gracectl bench trace-read` reports the same measurement.
#include <unistd.h>

#include <filesystem>

#include <benchmark/benchmark.h>

#include "core/native_trace.h"
#include "core/synthetic_trace.h"

namespace {

std::string WriteTrace(int experts, bool weights, int64_t target_ids) {
  grace::SyntheticTraceOptions o;
  o.experts = experts;
  o.top_k = 8;
  o.layers = 4;
  o.tokens_per_step = 4096;
  o.steps = 8;
  o.phases = 1;
  o.gate_weights = weights;
  const grace::Trace distinct = grace::SynthesizeTrace(o);
  const int64_t ids_per_step = int64_t{o.layers} * o.tokens_per_step * o.top_k;
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("grace-trace-read-bench-" + std::to_string(getpid()) + "-" +
                             std::to_string(experts) + (weights ? "w" : "") + ".gtrace"))
                               .string();
  auto writer = grace::NativeTraceWriter::Create(path, distinct.info);
  if (!writer.ok()) return "";
  for (int64_t s = 0; s < target_ids / ids_per_step; ++s) {
    if (!writer->Append(distinct.steps[s % distinct.steps.size()]).ok()) return "";
  }
  return writer->Close().ok() ? path : "";
}

// Args: experts (id width 1 byte up to 256, 2 bytes up to 65536), gate weights (0/1).
void BM_NativeTraceRead(benchmark::State& state) {
  const std::string path =
      WriteTrace(static_cast<int>(state.range(0)), state.range(1) != 0, int64_t{32} << 20);
  auto reader = grace::NativeTraceReader::Open(path);
  if (path.empty() || !reader.ok()) {
    state.SkipWithError("cannot write or open the trace");
    return;
  }
  grace::TraceStep step;
  int64_t ids = 0;
  for (auto _ : state) {
    if (!reader->Rewind().ok()) break;
    while (true) {
      auto more = reader->Next(&step);
      if (!more.ok() || !*more) break;
      ids += static_cast<int64_t>(step.tokens.expert_ids.size());
      benchmark::DoNotOptimize(step.tokens.expert_ids.data());
    }
  }
  state.SetItemsProcessed(ids);
  std::filesystem::remove(path);
}
BENCHMARK(BM_NativeTraceRead)
    ->Args({256, 0})
    ->Args({4096, 0})
    ->Args({256, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()  // ids per wall-clock second, what replay sees
    ->Repetitions(5)
    ->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
