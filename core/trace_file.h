// Trace files: the one place grace's core opens files, so that every importer and the native
// format see the same errors ("cannot open X: No such file or directory") and every other part of
// core stays parsing from memory.
//
//   GRACE_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));       // JSON
//   GRACE_RETURN_IF_ERROR(ForEachFileLine(path, kMaxLineBytes, fn));      // JSONL, streamed
//   GRACE_ASSIGN_OR_RETURN(InputFile in, InputFile::Open(path));          // streamed binary
//
// InputFile and OutputFile are move-only handles owned by one thread at a time.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace grace {

// Every reader below opens only regular files: a FIFO (which would block), a device such as
// /dev/zero (which never ends) or a directory is refused naming the path, without blocking.

// The most ReadWholeFile reads: text traces and placements past it are refused, not allocated.
constexpr uint64_t kMaxWholeFileBytes = 1ull << 30;

// Reads a whole (text) file of at most `max_bytes` (checked from its size before anything is
// allocated); fails naming the path.
StatusOr<std::string> ReadWholeFile(const std::string& path,
                                    uint64_t max_bytes = kMaxWholeFileBytes);

// Reads the first `max_bytes` of a file (fewer when it is shorter), for format detection.
StatusOr<std::string> ReadFilePrefix(const std::string& path, size_t max_bytes);

// The longest line ForEachFileLine hands over: a longer one is refused, naming the line.
constexpr size_t kMaxLineBytes = 256ull << 20;

// Streams a (text) file line by line: `fn(line, number)` for each line (1-based, without its
// '\n'), in order, holding one line and a 64 KiB buffer at a time, whatever the file's size;
// stops at fn's first error. A line over max_line_bytes fails naming the file and the line.
Status ForEachFileLine(const std::string& path, size_t max_line_bytes,
                       const std::function<Status(std::string_view line, int64_t number)>& fn);

// A sequential binary reader that knows its byte offset and size, backed by a file or by memory
// (the fuzz target and tests read bytes without touching the disk).
class InputFile {
 public:
  static StatusOr<InputFile> Open(const std::string& path);
  // `name` stands in for the path in error messages.
  static StatusOr<InputFile> FromMemory(std::string bytes, std::string name);

  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }
  uint64_t offset() const { return offset_; }

  // Reads exactly n bytes or fails with DataLoss naming the file and the offset where it ended.
  Status ReadExact(void* out, size_t n, const char* what);
  Status Seek(uint64_t offset);

 private:
  struct Closer {
    void operator()(std::FILE* f) const {
      if (f != nullptr) std::fclose(f);
    }
  };
  InputFile() = default;

  std::unique_ptr<std::FILE, Closer> file_;
  std::shared_ptr<std::string> memory_;  // owns the bytes of a FromMemory file
  std::string name_;
  uint64_t size_ = 0;
  uint64_t offset_ = 0;
};

// A sequential binary writer; Close() reports write errors that buffering delayed.
class OutputFile {
 public:
  static StatusOr<OutputFile> Create(const std::string& path);

  const std::string& name() const { return name_; }
  uint64_t offset() const { return offset_; }
  Status Write(const void* data, size_t n);
  Status Close();

 private:
  struct Closer {
    void operator()(std::FILE* f) const {
      if (f != nullptr) std::fclose(f);
    }
  };
  OutputFile() = default;

  std::unique_ptr<std::FILE, Closer> file_;
  std::string name_;
  uint64_t offset_ = 0;
};

}  // namespace grace
