// grace's native trace format: a binary file that replay streams one step at a time, so a trace
// of any length replays in the memory of its largest step.
//
// Layout (little-endian):
//   "GRACETRC" | u32 version | u32 header bytes | u32 header CRC-32C | header
//   header: TraceInfo, the id width (1, 2 or 4 bytes, the smallest that holds num_experts - 1),
//           and NativeTraceExtras (dropped records, notes, cross-layer counts)
//   then per step one chunk:  u32 tag "STEP" | u32 payload CRC-32C | u64 payload bytes | payload
//     token step:  u8 kind, u8 flags (home ranks, gate weights), u16 0, u32 tokens,
//                  [i32 home rank x tokens], ids [layer][token][k] at the id width,
//                  [f32 gate weight x ids]
//     count step:  u8 kind, u8 flags (co-activation), u16 0, u32 0,
//                  f64 counts [layer][expert], [f64 co-activation [layer][a][b]]
//   and last an end chunk: u32 tag "END." | u32 CRC | u64 8 | u64 number of steps.
// A file without its end chunk is truncated: the reader reports it instead of ending quietly.
//
// NativeTraceWriter and NativeTraceReader are move-only and used by one thread at a time. Every
// reader error is DataLoss or InvalidArgument naming the file and the byte offset.
//
//   GRACE_ASSIGN_OR_RETURN(NativeTraceReader reader, NativeTraceReader::Open(path));
//   TraceStep step;  // reused: its vectors keep their capacity from step to step
//   while (true) {
//     GRACE_ASSIGN_OR_RETURN(bool more, reader.Next(&step));
//     if (!more) break;
//     Replay(reader.info(), step);
//   }
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/trace.h"
#include "core/trace_file.h"

namespace grace {

inline constexpr char kNativeTraceMagic[8] = {'G', 'R', 'A', 'C', 'E', 'T', 'R', 'C'};
inline constexpr uint32_t kNativeTraceVersion = 1;

// The parts of a Trace that are not steps, kept in the header so that a converted trace still
// says what its importer dropped and noticed.
struct NativeTraceExtras {
  std::string source_format;  // the importer that read the original ("vllm-jsonl", ...)
  std::vector<std::string> source_files;
  std::vector<DroppedRecords> dropped;
  std::vector<std::string> notes;
  std::vector<CrossLayerCounts> cross_layer;
};

class NativeTraceWriter {
 public:
  // Writes the header; info.format and info.sources are kept as extras.source_format and
  // extras.source_files when those are empty.
  static StatusOr<NativeTraceWriter> Create(const std::string& path, const TraceInfo& info,
                                            const NativeTraceExtras& extras = {});

  // Checks the step against the header (kind, sizes, ids in [0, num_experts)) and writes it.
  Status Append(const TraceStep& step);
  // Writes the end chunk and closes the file; a writer dropped without Close leaves a file the
  // reader rejects as truncated.
  Status Close();

  int64_t steps_written() const { return steps_; }

 private:
  NativeTraceWriter(OutputFile out, TraceInfo info, int id_width)
      : out_(std::move(out)), info_(std::move(info)), id_width_(id_width) {}

  OutputFile out_;
  TraceInfo info_;
  int id_width_;
  int64_t steps_ = 0;
  std::vector<unsigned char> scratch_;
};

class NativeTraceReader {
 public:
  static StatusOr<NativeTraceReader> Open(const std::string& path);
  // Reads bytes already in memory; `name` stands in for the path in errors (fuzzing, tests).
  static StatusOr<NativeTraceReader> FromMemory(std::string bytes, std::string name);

  // The header: info().format is "native" and info().sources the file read; the original
  // importer and files are in extras().
  const TraceInfo& info() const { return info_; }
  const NativeTraceExtras& extras() const { return extras_; }

  // Reads the next step into *step, reusing its vectors' capacity. Returns false at the end
  // chunk, an error for anything truncated, garbled or inconsistent with the header.
  StatusOr<bool> Next(TraceStep* step);
  // Goes back to the first step.
  Status Rewind();

 private:
  explicit NativeTraceReader(InputFile in) : in_(std::move(in)) {}
  static StatusOr<NativeTraceReader> ReadHeader(InputFile in);
  Status ReadTokens(uint64_t payload_bytes, uint64_t payload_start, uint32_t expected_crc,
                    const unsigned char* fixed, TraceStep* step);
  Status ReadCounts(uint64_t payload_bytes, uint64_t payload_start, uint32_t expected_crc,
                    const unsigned char* fixed, TraceStep* step);

  InputFile in_;
  TraceInfo info_;
  NativeTraceExtras extras_;
  int id_width_ = 4;
  uint64_t first_chunk_offset_ = 0;
  int64_t steps_read_ = 0;
  bool finished_ = false;
  std::unique_ptr<unsigned char[]> narrow_ids_;  // staging for 1- and 2-byte ids
  size_t narrow_capacity_ = 0;
};

// Whole-trace helpers over the streaming classes.
Status WriteNativeTrace(const std::string& path, const Trace& trace);
StatusOr<Trace> ReadNativeTrace(const std::string& path);

}  // namespace grace
