// TorchSaveFile: the contents of a file written by torch.save (PyTorch >= 1.6, the zip format),
// read without Python: the archive's `<name>/data.pkl` pickle is run by a small pickle machine
// that knows exactly the subset torch.save emits for plain data (dicts, lists, tuples, ints,
// floats, strings, None, bools) and tensors (torch._utils._rebuild_tensor_v2 over persistent
// storage ids, whose bytes are the members `<name>/data/<key>`). Anything else (other classes,
// numpy arrays) is an error naming the object, never code run on the file's say-so.
//
//   GRACE_ASSIGN_OR_RETURN(TorchSaveFile f, TorchSaveFile::Parse(std::move(bytes), path));
//   TorchSaveFile::Value root = f.root();
//   if (auto counts = root.Find("logical_count"); counts && counts->is_tensor()) ...
//
// Every size is checked against the bytes that are there before anything is allocated, so a
// hostile file yields a Status, not an abort. Values are views into the TorchSaveFile, which must
// outlive them. Plain value, no I/O; thread-compatible.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/torch_tensor.h"

namespace grace {

class TorchSaveFile {
 public:
  enum class Kind : uint8_t {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kTuple,
    kDict,
    kTensor,
    kGlobal,
    kStorage
  };
  static const char* KindName(Kind kind);

  class Value {
   public:
    Kind kind() const;
    bool is_none() const { return kind() == Kind::kNone; }
    bool is_int() const { return kind() == Kind::kInt || kind() == Kind::kBool; }
    bool is_number() const { return is_int() || kind() == Kind::kFloat; }
    bool is_string() const { return kind() == Kind::kString; }
    bool is_sequence() const { return kind() == Kind::kList || kind() == Kind::kTuple; }
    bool is_dict() const { return kind() == Kind::kDict; }
    bool is_tensor() const { return kind() == Kind::kTensor; }

    int64_t AsInt() const;                // ints and bools; 0 otherwise
    double AsDouble() const;              // numbers; 0 otherwise
    const std::string& AsString() const;  // strings (and a global's "module.name")
    const TorchTensor& AsTensor() const;  // tensors only
    // Lists and tuples: elements; dicts: entries.
    size_t size() const;
    Value at(size_t i) const;  // element i of a list or tuple
    // A dict's value under a string key, if any.
    std::optional<Value> Find(std::string_view key) const;
    // A dict's keys that are strings, in insertion order.
    std::vector<std::string> Keys() const;

   private:
    friend class TorchSaveFile;
    Value(const TorchSaveFile* file, int32_t node) : file_(file), node_(node) {}
    const TorchSaveFile* file_;
    int32_t node_;
  };

  // `path` names the file in errors.
  static StatusOr<TorchSaveFile> Parse(std::string bytes, const std::string& path);

  Value root() const { return Value(this, root_); }
  // The archive's folder name ("archive", or the file's stem in newer PyTorch).
  const std::string& archive_name() const { return archive_name_; }

  struct Node;

 private:
  TorchSaveFile() = default;
  std::unique_ptr<std::string> bytes_;  // stable address: tensors view into it
  std::vector<Node> nodes_;
  std::vector<TorchTensor> tensors_;
  int32_t root_ = 0;
  std::string archive_name_;
  friend class PickleMachine;
};

struct TorchSaveFile::Node {
  Kind kind = Kind::kNone;
  int64_t i = 0;  // int, bool; tensor index; storage: dtype
  double f = 0;
  std::string s;               // string; global "module.name"; storage key
  std::vector<int32_t> items;  // list/tuple elements; dict key, value, key, value...
  int64_t storage_numel = 0;
};

// True when `bytes` starts like a pickle of PyTorch's pre-1.6 (non-zip) torch.save format.
bool LooksLikeLegacyTorchSave(std::string_view bytes);

}  // namespace grace
