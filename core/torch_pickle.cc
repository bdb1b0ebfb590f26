#include "core/torch_pickle.h"

#include <bit>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "core/zip_stored.h"

namespace grace {

namespace {

// The typed storage classes torch.save names in its persistent ids.
std::optional<TorchDtype> DtypeOfStorage(std::string_view global) {
  static const std::pair<const char*, TorchDtype> kStorages[] = {
      {"torch.BoolStorage", TorchDtype::kBool},
      {"torch.ByteStorage", TorchDtype::kUint8},
      {"torch.CharStorage", TorchDtype::kInt8},
      {"torch.ShortStorage", TorchDtype::kInt16},
      {"torch.IntStorage", TorchDtype::kInt32},
      {"torch.LongStorage", TorchDtype::kInt64},
      {"torch.HalfStorage", TorchDtype::kFloat16},
      {"torch.BFloat16Storage", TorchDtype::kBFloat16},
      {"torch.FloatStorage", TorchDtype::kFloat32},
      {"torch.DoubleStorage", TorchDtype::kFloat64},
  };
  for (const auto& [name, dtype] : kStorages) {
    if (global == name) return dtype;
  }
  return std::nullopt;
}

}  // namespace

const char* TorchSaveFile::KindName(Kind kind) {
  switch (kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
    case Kind::kTensor: return "tensor";
    case Kind::kGlobal: return "global";
    case Kind::kStorage: return "storage";
  }
  return "?";
}

using Value = TorchSaveFile::Value;
using Kind = TorchSaveFile::Kind;

Kind Value::kind() const {
  return file_->nodes_[node_].kind;
}
int64_t Value::AsInt() const {
  return is_int() ? file_->nodes_[node_].i : 0;
}
double Value::AsDouble() const {
  const auto& n = file_->nodes_[node_];
  return n.kind == Kind::kFloat ? n.f : static_cast<double>(AsInt());
}
const std::string& Value::AsString() const {
  return file_->nodes_[node_].s;
}
const TorchTensor& Value::AsTensor() const {
  return file_->tensors_[static_cast<size_t>(file_->nodes_[node_].i)];
}
size_t Value::size() const {
  const auto& n = file_->nodes_[node_];
  return n.kind == Kind::kDict ? n.items.size() / 2 : n.items.size();
}
Value Value::at(size_t i) const {
  return Value(file_, file_->nodes_[node_].items[i]);
}
std::optional<Value> Value::Find(std::string_view key) const {
  const auto& n = file_->nodes_[node_];
  if (n.kind != Kind::kDict) return std::nullopt;
  std::optional<Value> found;
  for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
    const auto& k = file_->nodes_[n.items[i]];
    if (k.kind == Kind::kString && k.s == key) found = Value(file_, n.items[i + 1]);
  }
  return found;  // the last one, as a dict would keep it
}
std::vector<std::string> Value::Keys() const {
  std::vector<std::string> keys;
  const auto& n = file_->nodes_[node_];
  if (n.kind != Kind::kDict) return keys;
  for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
    const auto& k = file_->nodes_[n.items[i]];
    if (k.kind == Kind::kString) keys.push_back(k.s);
  }
  return keys;
}

// Runs data.pkl. Values live in file->nodes_ and are referred to by index, so the memo and
// shared references never copy, and a self-referencing list is just an index in its own items.
class PickleMachine {
 public:
  PickleMachine(TorchSaveFile* file, const StoredZip* zip, std::string_view pickle,
                std::string where)
      : file_(file), zip_(zip), p_(pickle), where_(std::move(where)) {}

  StatusOr<int32_t> Run() {
    while (pos_ < p_.size()) {
      const size_t at = pos_;
      const uint8_t op = static_cast<uint8_t>(p_[pos_++]);
      if (op == '.') {
        if (stack_.empty()) return Fail(at, "STOP with an empty stack");
        return stack_.back();
      }
      GRACE_RETURN_IF_ERROR(Step(op, at));
    }
    return Fail(pos_, "the pickle ends without STOP (truncated)");
  }

 private:
  using Node = TorchSaveFile::Node;

  Status Fail(size_t at, const std::string& what) const {
    return DataLoss(where_ + ": byte offset " + std::to_string(at) + ": " + what);
  }

  Status Need(size_t n, size_t at) const {
    if (p_.size() - pos_ < n) return Fail(at, "truncated pickle opcode");
    return Status::Ok();
  }
  uint64_t ReadLe(int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p_[pos_ + i]);
    pos_ += bytes;
    return v;
  }

  int32_t Add(Node node) {
    file_->nodes_.push_back(std::move(node));
    return static_cast<int32_t>(file_->nodes_.size() - 1);
  }
  int32_t AddKind(Kind kind) {
    Node n;
    n.kind = kind;
    return Add(std::move(n));
  }
  Node& N(int32_t i) { return file_->nodes_[i]; }

  Status Pop(size_t at, int32_t* out) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      return Fail(at, "pickle stack underflow");
    }
    *out = stack_.back();
    stack_.pop_back();
    return Status::Ok();
  }
  // The items above the last MARK, removed from the stack with the mark.
  Status PopMark(size_t at, std::vector<int32_t>* items) {
    if (marks_.empty()) return Fail(at, "no MARK on the pickle stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    items->assign(stack_.begin() + static_cast<int64_t>(m), stack_.end());
    stack_.resize(m);
    return Status::Ok();
  }
  Status Top(size_t at, int32_t* out) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      return Fail(at, "pickle stack underflow");
    }
    *out = stack_.back();
    return Status::Ok();
  }

  Status PushString(size_t len, size_t at) {
    GRACE_RETURN_IF_ERROR(Need(len, at));
    Node n;
    n.kind = Kind::kString;
    n.s.assign(p_.substr(pos_, len));
    pos_ += len;
    stack_.push_back(Add(std::move(n)));
    return Status::Ok();
  }
  void PushInt(int64_t v, Kind kind = Kind::kInt) {
    Node n;
    n.kind = kind;
    n.i = v;
    stack_.push_back(Add(std::move(n)));
  }

  Status Memoize(uint64_t key, size_t at) {
    int32_t top = 0;
    GRACE_RETURN_IF_ERROR(Top(at, &top));
    memo_[key] = top;
    return Status::Ok();
  }
  Status Recall(uint64_t key, size_t at) {
    auto it = memo_.find(key);
    if (it == memo_.end()) return Fail(at, "memo key " + std::to_string(key) + " was never put");
    stack_.push_back(it->second);
    return Status::Ok();
  }

  Status Append(const std::vector<int32_t>& items, size_t at) {
    int32_t list = 0;
    GRACE_RETURN_IF_ERROR(Top(at, &list));
    if (N(list).kind != Kind::kList) {
      return Fail(at, std::string("APPEND to a ") + TorchSaveFile::KindName(N(list).kind));
    }
    N(list).items.insert(N(list).items.end(), items.begin(), items.end());
    return Status::Ok();
  }
  Status SetItems(const std::vector<int32_t>& items, size_t at) {
    int32_t dict = 0;
    GRACE_RETURN_IF_ERROR(Top(at, &dict));
    if (N(dict).kind != Kind::kDict || items.size() % 2 != 0) {
      return Fail(at, std::string("SETITEM on a ") + TorchSaveFile::KindName(N(dict).kind));
    }
    N(dict).items.insert(N(dict).items.end(), items.begin(), items.end());
    return Status::Ok();
  }

  Status Tuple(std::vector<int32_t> items) {
    Node n;
    n.kind = Kind::kTuple;
    n.items = std::move(items);
    stack_.push_back(Add(std::move(n)));
    return Status::Ok();
  }

  Status Global(std::string module, std::string name) {
    Node n;
    n.kind = Kind::kGlobal;
    n.s = module + "." + name;
    stack_.push_back(Add(std::move(n)));
    return Status::Ok();
  }

  Status ReadLine(size_t at, std::string* out) {
    const size_t nl = p_.find('\n', pos_);
    if (nl == std::string_view::npos) return Fail(at, "GLOBAL without a newline");
    out->assign(p_.substr(pos_, nl - pos_));
    pos_ = nl + 1;
    return Status::Ok();
  }

  // ('storage', torch.XStorage, key, location, numel): the member <archive>/data/<key>.
  Status PersistentLoad(int32_t pid, size_t at) {
    const Node& t = N(pid);
    if (t.kind != Kind::kTuple || t.items.size() < 5 || N(t.items[0]).s != "storage" ||
        N(t.items[1]).kind != Kind::kGlobal || N(t.items[2]).kind != Kind::kString ||
        N(t.items[4]).kind != Kind::kInt) {
      return Fail(at, "persistent id is not ('storage', type, key, location, numel)");
    }
    const std::string& type = N(t.items[1]).s;
    const std::optional<TorchDtype> dtype = DtypeOfStorage(type);
    if (!dtype) return Fail(at, "storage type " + type + " is not one grace reads");
    const std::string key = N(t.items[2]).s;
    const int64_t numel = N(t.items[4]).i;
    const std::string member = file_->archive_name_ + "/data/" + key;
    const StoredZip::Entry* e = zip_->Find(member);
    if (e == nullptr) return Fail(at, "storage " + key + ": no member " + member);
    const uint64_t width = static_cast<uint64_t>(TorchDtypeBytes(*dtype));
    if (numel < 0 || static_cast<uint64_t>(numel) > e->size / width) {
      return Fail(at, "storage " + key + ": " + std::to_string(numel) + " " +
                          TorchDtypeName(*dtype) + " elements announced, member " + member +
                          " holds " + std::to_string(e->size) + " bytes");
    }
    Node n;
    n.kind = Kind::kStorage;
    n.i = static_cast<int64_t>(*dtype);
    n.s = member;
    n.storage_numel = numel;
    stack_.push_back(Add(std::move(n)));
    return Status::Ok();
  }

  StatusOr<std::vector<int64_t>> IntTuple(int32_t node, const char* what, size_t at) {
    const Node& t = N(node);
    if (t.kind != Kind::kTuple && t.kind != Kind::kList) {
      return Fail(at, std::string("tensor ") + what + " is not a tuple");
    }
    if (t.items.size() > 16) return Fail(at, std::string("tensor ") + what + ": over 16 dims");
    std::vector<int64_t> out;
    for (int32_t i : t.items) {
      if (N(i).kind != Kind::kInt || N(i).i < 0) {
        return Fail(at, std::string("tensor ") + what + " holds a negative or non-int entry");
      }
      out.push_back(N(i).i);
    }
    return out;
  }

  // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, ...).
  Status RebuildTensor(const Node& args, size_t at) {
    if (args.items.size() < 4 || N(args.items[0]).kind != Kind::kStorage ||
        N(args.items[1]).kind != Kind::kInt) {
      return Fail(at, "_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, ...)");
    }
    const Node& storage = N(args.items[0]);
    TorchTensor t;
    t.dtype = static_cast<TorchDtype>(storage.i);
    t.storage_offset = N(args.items[1]).i;
    GRACE_ASSIGN_OR_RETURN(t.shape, IntTuple(args.items[2], "size", at));
    GRACE_ASSIGN_OR_RETURN(t.strides, IntTuple(args.items[3], "stride", at));
    if (t.shape.size() != t.strides.size())
      return Fail(at, "tensor size and stride differ in rank");
    // Every element must lie in the storage, and (the subset read here) a tensor holds no more
    // elements than its storage, which bounds what ToInt64 allocates by the file's size.
    const int64_t numel = storage.storage_numel;
    int64_t count = 1;
    int64_t last = t.storage_offset;
    bool empty = false;
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (t.shape[d] == 0) empty = true;
      if (t.shape[d] != 0 && count > numel / t.shape[d]) {
        return Fail(at, "tensor of shape larger than its storage of " + std::to_string(numel) +
                            " elements");
      }
      count *= t.shape[d];
      if (t.shape[d] > 1 && t.strides[d] > (numel - last) / (t.shape[d] - 1)) {
        return Fail(
            at, "tensor strides reach past its storage of " + std::to_string(numel) + " elements");
      }
      if (t.shape[d] > 0) last += (t.shape[d] - 1) * t.strides[d];
    }
    if (t.storage_offset < 0 || (!empty && last >= numel)) {
      return Fail(at, "tensor reaches past its storage of " + std::to_string(numel) + " elements");
    }
    const StoredZip::Entry* e = zip_->Find(storage.s);
    t.storage = std::string_view(*file_->bytes_).substr(e->data_offset, e->size);
    file_->tensors_.push_back(std::move(t));
    Node n;
    n.kind = Kind::kTensor;
    n.i = static_cast<int64_t>(file_->tensors_.size() - 1);
    stack_.push_back(Add(std::move(n)));
    return Status::Ok();
  }

  Status Reduce(size_t at) {
    int32_t args = 0, callable = 0;
    GRACE_RETURN_IF_ERROR(Pop(at, &args));
    GRACE_RETURN_IF_ERROR(Pop(at, &callable));
    if (N(callable).kind != Kind::kGlobal || N(args).kind != Kind::kTuple) {
      return Fail(at, "REDUCE on something other than a global and a tuple");
    }
    const std::string& name = N(callable).s;
    if (name == "torch._utils._rebuild_tensor_v2") return RebuildTensor(N(args), at);
    if (name == "collections.OrderedDict" && N(args).items.empty()) {
      stack_.push_back(AddKind(Kind::kDict));
      return Status::Ok();
    }
    return Fail(at, "calls " + name +
                        ", which is not in the subset grace reads (plain data and "
                        "tensors)");
  }

  Status Build(size_t at) {
    int32_t state = 0, obj = 0;
    GRACE_RETURN_IF_ERROR(Pop(at, &state));
    GRACE_RETURN_IF_ERROR(Top(at, &obj));
    const bool empty_state =
        N(state).kind == Kind::kNone ||
        ((N(state).kind == Kind::kDict || N(state).kind == Kind::kTuple) && N(state).items.empty());
    if (!empty_state) {
      return Fail(at, std::string("BUILD with state on a ") + TorchSaveFile::KindName(N(obj).kind) +
                          ", not in the subset grace reads");
    }
    return Status::Ok();
  }

  Status Step(uint8_t op, size_t at) {
    switch (op) {
      case 0x80:  // PROTO
        GRACE_RETURN_IF_ERROR(Need(1, at));
        ++pos_;
        return Status::Ok();
      case 0x95:  // FRAME
        GRACE_RETURN_IF_ERROR(Need(8, at));
        pos_ += 8;
        return Status::Ok();
      case '}': stack_.push_back(AddKind(Kind::kDict)); return Status::Ok();
      case ']': stack_.push_back(AddKind(Kind::kList)); return Status::Ok();
      case ')': return Tuple({});
      case '(': marks_.push_back(stack_.size()); return Status::Ok();
      case 'N': stack_.push_back(AddKind(Kind::kNone)); return Status::Ok();
      case 0x88: PushInt(1, Kind::kBool); return Status::Ok();
      case 0x89: PushInt(0, Kind::kBool); return Status::Ok();
      case 'K':
        GRACE_RETURN_IF_ERROR(Need(1, at));
        PushInt(static_cast<int64_t>(ReadLe(1)));
        return Status::Ok();
      case 'M':
        GRACE_RETURN_IF_ERROR(Need(2, at));
        PushInt(static_cast<int64_t>(ReadLe(2)));
        return Status::Ok();
      case 'J':
        GRACE_RETURN_IF_ERROR(Need(4, at));
        PushInt(static_cast<int32_t>(ReadLe(4)));
        return Status::Ok();
      case 0x8a: {  // LONG1: little-endian two's complement of n bytes
        GRACE_RETURN_IF_ERROR(Need(1, at));
        const int n = static_cast<int>(ReadLe(1));
        if (n > 8) return Fail(at, "integer of " + std::to_string(n) + " bytes (over 64 bits)");
        GRACE_RETURN_IF_ERROR(Need(n, at));
        uint64_t v = n == 0 ? 0 : ReadLe(n);
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
        PushInt(static_cast<int64_t>(v));
        return Status::Ok();
      }
      case 'G': {  // BINFLOAT, big-endian
        GRACE_RETURN_IF_ERROR(Need(8, at));
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | static_cast<uint8_t>(p_[pos_ + i]);
        pos_ += 8;
        Node n;
        n.kind = Kind::kFloat;
        n.f = std::bit_cast<double>(bits);
        stack_.push_back(Add(std::move(n)));
        return Status::Ok();
      }
      case 'X':  // BINUNICODE
      case 'B':  // BINBYTES
      case 'T':  // BINSTRING
        GRACE_RETURN_IF_ERROR(Need(4, at));
        return PushString(ReadLe(4), at);
      case 0x8c:  // SHORT_BINUNICODE
      case 'C':   // SHORT_BINBYTES
      case 'U':   // SHORT_BINSTRING
        GRACE_RETURN_IF_ERROR(Need(1, at));
        return PushString(ReadLe(1), at);
      case 0x8d:  // BINUNICODE8
      case 0x8e:  // BINBYTES8
        GRACE_RETURN_IF_ERROR(Need(8, at));
        return PushString(ReadLe(8), at);
      case 'q': GRACE_RETURN_IF_ERROR(Need(1, at)); return Memoize(ReadLe(1), at);
      case 'r': GRACE_RETURN_IF_ERROR(Need(4, at)); return Memoize(ReadLe(4), at);
      case 0x94: return Memoize(memo_.size(), at);  // MEMOIZE
      case 'h': GRACE_RETURN_IF_ERROR(Need(1, at)); return Recall(ReadLe(1), at);
      case 'j': GRACE_RETURN_IF_ERROR(Need(4, at)); return Recall(ReadLe(4), at);
      case 'a': {
        int32_t v = 0;
        GRACE_RETURN_IF_ERROR(Pop(at, &v));
        return Append({v}, at);
      }
      case 'e': {
        std::vector<int32_t> items;
        GRACE_RETURN_IF_ERROR(PopMark(at, &items));
        return Append(items, at);
      }
      case 's': {
        int32_t k = 0, v = 0;
        GRACE_RETURN_IF_ERROR(Pop(at, &v));
        GRACE_RETURN_IF_ERROR(Pop(at, &k));
        return SetItems({k, v}, at);
      }
      case 'u': {
        std::vector<int32_t> items;
        GRACE_RETURN_IF_ERROR(PopMark(at, &items));
        return SetItems(items, at);
      }
      case 't': {
        std::vector<int32_t> items;
        GRACE_RETURN_IF_ERROR(PopMark(at, &items));
        return Tuple(std::move(items));
      }
      case 0x85:
      case 0x86:
      case 0x87: {
        std::vector<int32_t> items(op - 0x84);
        for (size_t i = items.size(); i-- > 0;) GRACE_RETURN_IF_ERROR(Pop(at, &items[i]));
        return Tuple(std::move(items));
      }
      case 'c': {
        std::string module, name;
        GRACE_RETURN_IF_ERROR(ReadLine(at, &module));
        GRACE_RETURN_IF_ERROR(ReadLine(at, &name));
        return Global(std::move(module), std::move(name));
      }
      case 0x93: {  // STACK_GLOBAL
        int32_t name = 0, module = 0;
        GRACE_RETURN_IF_ERROR(Pop(at, &name));
        GRACE_RETURN_IF_ERROR(Pop(at, &module));
        if (N(name).kind != Kind::kString || N(module).kind != Kind::kString) {
          return Fail(at, "STACK_GLOBAL of non-strings");
        }
        return Global(N(module).s, N(name).s);
      }
      case 'Q': {
        int32_t pid = 0;
        GRACE_RETURN_IF_ERROR(Pop(at, &pid));
        return PersistentLoad(pid, at);
      }
      case 'R': return Reduce(at);
      case 'b': return Build(at);
      case '0': {
        int32_t v = 0;
        return Pop(at, &v);
      }
      case '1': {
        std::vector<int32_t> items;
        return PopMark(at, &items);
      }
      case '2': {
        int32_t v = 0;
        GRACE_RETURN_IF_ERROR(Top(at, &v));
        stack_.push_back(v);
        return Status::Ok();
      }
      default: {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "0x%02x", op);
        return Fail(at, std::string("pickle opcode ") + buf +
                            " is not in the subset torch.save writes for plain data");
      }
    }
  }

  TorchSaveFile* file_;
  const StoredZip* zip_;
  std::string_view p_;
  std::string where_;
  size_t pos_ = 0;
  std::vector<int32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, int32_t> memo_;
};

bool LooksLikeLegacyTorchSave(std::string_view bytes) {
  // pickle protocol 2, then LONG1 of 10 bytes: torch's legacy magic number.
  return bytes.size() >= 3 && static_cast<uint8_t>(bytes[0]) == 0x80 &&
         static_cast<uint8_t>(bytes[2]) == 0x8a;
}

StatusOr<TorchSaveFile> TorchSaveFile::Parse(std::string bytes, const std::string& path) {
  TorchSaveFile file;
  file.bytes_ = std::make_unique<std::string>(std::move(bytes));
  if (LooksLikeLegacyTorchSave(*file.bytes_)) {
    return InvalidArgument(path +
                           ": a legacy (PyTorch < 1.6) torch.save file; re-save it with "
                           "a newer PyTorch: torch.save(torch.load(f), f)");
  }
  GRACE_ASSIGN_OR_RETURN(StoredZip zip, StoredZip::Parse(*file.bytes_, path));
  const StoredZip::Entry* pickle = nullptr;
  for (const StoredZip::Entry& e : zip.entries()) {
    const size_t slash = e.name.find('/');
    if (slash != std::string::npos && e.name.substr(slash) == "/data.pkl") {
      pickle = &e;
      file.archive_name_ = e.name.substr(0, slash);
      break;
    }
  }
  if (pickle == nullptr) {
    return InvalidArgument(path +
                           ": a zip archive but not a torch.save file (no <name>/data.pkl "
                           "member)");
  }
  if (const StoredZip::Entry* order = zip.Find(file.archive_name_ + "/byteorder");
      order != nullptr && zip.Bytes(*order) != "little") {
    return InvalidArgument(path + ": member " + order->name + " says \"" +
                           std::string(zip.Bytes(*order)) + "\"; only little-endian is read");
  }
  PickleMachine machine(&file, &zip, zip.Bytes(*pickle), path + ": " + pickle->name);
  GRACE_ASSIGN_OR_RETURN(file.root_, machine.Run());
  return file;
}

}  // namespace grace
