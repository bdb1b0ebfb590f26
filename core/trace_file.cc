#include "core/trace_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace grace {
namespace {

Status OpenError(const std::string& path, const char* verb) {
  return NotFound("cannot " + std::string(verb) + " " + path + ": " + std::strerror(errno));
}

using FilePtr = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

// Opens `path` for reading if it is a regular file. O_NONBLOCK keeps open() of a FIFO without
// a writer from blocking; it is cleared once the file is known to be regular.
StatusOr<FilePtr> OpenRegularFile(const std::string& path, uint64_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return OpenError(path, "open");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const bool dir = S_ISDIR(st.st_mode);
    ::close(fd);
    return InvalidArgument(path + ": not a regular file (" +
                           (dir ? "a directory" : "a FIFO, socket or device") + "); give a file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  FilePtr f(::fdopen(fd, "rb"), &std::fclose);
  if (!f) {
    ::close(fd);
    return OpenError(path, "open");
  }
  if (size != nullptr) *size = static_cast<uint64_t>(st.st_size);
  return f;
}

}  // namespace

StatusOr<std::string> ReadWholeFile(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  GRACE_ASSIGN_OR_RETURN(FilePtr f, OpenRegularFile(path, &size));
  if (size > max_bytes) {
    return InvalidArgument(path + ": " + std::to_string(size) + " bytes, over the " +
                           std::to_string(max_bytes) +
                           " a text trace, placement or scenario may have; split it, or convert "
                           "it in parts to grace's native format");
  }
  std::string text;
  text.reserve(static_cast<size_t>(size));
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f.get())) > 0) {
    text.append(buffer, n);
    if (text.size() > max_bytes) return InvalidArgument(path + ": grew while read");
  }
  if (std::ferror(f.get())) return DataLoss("cannot read " + path + ": " + std::strerror(errno));
  return text;
}

StatusOr<std::string> ReadFilePrefix(const std::string& path, size_t max_bytes) {
  GRACE_ASSIGN_OR_RETURN(FilePtr f, OpenRegularFile(path, nullptr));
  std::string text(max_bytes, '\0');
  text.resize(std::fread(text.data(), 1, max_bytes, f.get()));
  if (std::ferror(f.get())) return DataLoss("cannot read " + path + ": " + std::strerror(errno));
  return text;
}

Status ForEachFileLine(const std::string& path, size_t max_line_bytes,
                       const std::function<Status(std::string_view line, int64_t number)>& fn) {
  GRACE_ASSIGN_OR_RETURN(FilePtr f, OpenRegularFile(path, nullptr));
  std::string line;
  int64_t number = 1;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f.get())) > 0) {
    size_t pos = 0;
    while (pos < n) {
      const char* nl = static_cast<const char*>(std::memchr(buffer + pos, '\n', n - pos));
      const size_t end = nl == nullptr ? n : static_cast<size_t>(nl - buffer);
      if (line.size() + (end - pos) > max_line_bytes) {
        return InvalidArgument(path + ":" + std::to_string(number) + ": a line longer than " +
                               std::to_string(max_line_bytes) + " bytes; not a JSONL trace?");
      }
      line.append(buffer + pos, end - pos);
      pos = end;
      if (nl == nullptr) break;
      ++pos;  // the '\n'
      GRACE_RETURN_IF_ERROR(fn(line, number++));
      line.clear();
    }
  }
  if (std::ferror(f.get())) return DataLoss("cannot read " + path + ": " + std::strerror(errno));
  if (!line.empty()) return fn(line, number);
  return Status::Ok();
}

StatusOr<InputFile> InputFile::Open(const std::string& path) {
  InputFile in;
  in.name_ = path;
  GRACE_ASSIGN_OR_RETURN(FilePtr f, OpenRegularFile(path, nullptr));
  in.file_.reset(f.release());
  if (std::fseek(in.file_.get(), 0, SEEK_END) != 0) return OpenError(path, "seek in");
  const long size = std::ftell(in.file_.get());
  if (size < 0 || std::fseek(in.file_.get(), 0, SEEK_SET) != 0) return OpenError(path, "seek in");
  in.size_ = static_cast<uint64_t>(size);
  // Steps are read in one fread each; a larger buffer only helps the small header reads.
  std::setvbuf(in.file_.get(), nullptr, _IOFBF, 1 << 16);
  return in;
}

StatusOr<InputFile> InputFile::FromMemory(std::string bytes, std::string name) {
  InputFile in;
  in.name_ = std::move(name);
  in.memory_ = std::make_shared<std::string>(std::move(bytes));
  in.size_ = in.memory_->size();
  // fmemopen rejects a zero-length buffer; an empty file reads as one that ends at once.
  if (in.memory_->empty()) in.memory_->push_back('\0');
  in.file_.reset(fmemopen(in.memory_->data(), in.memory_->size(), "rb"));
  if (!in.file_) return Internal("fmemopen failed for " + in.name_);
  return in;
}

Status InputFile::ReadExact(void* out, size_t n, const char* what) {
  if (n > size_ - offset_) {
    return DataLoss(name_ + ": truncated at byte offset " + std::to_string(offset_) + ": " + what +
                    " needs " + std::to_string(n) + " bytes, " + std::to_string(size_ - offset_) +
                    " left");
  }
  if (n > 0 && std::fread(out, 1, n, file_.get()) != n) {
    return DataLoss(name_ + ": read error at byte offset " + std::to_string(offset_) + " (" + what +
                    ")");
  }
  offset_ += n;
  return Status::Ok();
}

Status InputFile::Seek(uint64_t offset) {
  if (offset > size_ || std::fseek(file_.get(), static_cast<long>(offset), SEEK_SET) != 0) {
    return DataLoss(name_ + ": cannot seek to byte offset " + std::to_string(offset));
  }
  offset_ = offset;
  return Status::Ok();
}

StatusOr<OutputFile> OutputFile::Create(const std::string& path) {
  OutputFile out;
  out.name_ = path;
  out.file_.reset(std::fopen(path.c_str(), "wb"));
  if (!out.file_) return OpenError(path, "create");
  std::setvbuf(out.file_.get(), nullptr, _IOFBF, 1 << 20);
  return out;
}

Status OutputFile::Write(const void* data, size_t n) {
  if (!file_) return FailedPrecondition(name_ + ": write after close");
  if (n > 0 && std::fwrite(data, 1, n, file_.get()) != n) {
    return Unavailable("cannot write " + name_ + " at byte offset " + std::to_string(offset_) +
                       ": " + std::strerror(errno));
  }
  offset_ += n;
  return Status::Ok();
}

Status OutputFile::Close() {
  if (!file_) return Status::Ok();
  std::FILE* f = file_.release();
  const bool flushed = std::fflush(f) == 0;
  const bool closed = std::fclose(f) == 0;
  if (!flushed || !closed)
    return Unavailable("cannot write " + name_ + ": " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace grace
