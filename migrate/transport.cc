#include "migrate/transport.h"

#include <cstdint>

namespace grace {

Status Transport::AllToAll(const void* send, void* recv, size_t bytes_each) {
  const int n = size();
  send_ops_.resize(n);
  recv_ops_.resize(n);
  for (int p = 0; p < n; ++p) {
    send_ops_[p] = {p, static_cast<const std::byte*>(send) + p * bytes_each, bytes_each};
    recv_ops_[p] = {p, static_cast<std::byte*>(recv) + p * bytes_each, bytes_each};
  }
  return Group(send_ops_, recv_ops_);
}

Status Transport::AllToAllV(const void* send, std::span<const size_t> send_bytes, void* recv,
                            std::span<const size_t> recv_bytes) {
  const int n = size();
  if (static_cast<int>(send_bytes.size()) != n || static_cast<int>(recv_bytes.size()) != n) {
    return InvalidArgument("AllToAllV: need one size per rank (" + std::to_string(n) + ")");
  }
  send_ops_.resize(n);
  recv_ops_.resize(n);
  size_t send_at = 0, recv_at = 0;
  for (int p = 0; p < n; ++p) {
    send_ops_[p] = {p, static_cast<const std::byte*>(send) + send_at, send_bytes[p]};
    recv_ops_[p] = {p, static_cast<std::byte*>(recv) + recv_at, recv_bytes[p]};
    send_at += send_bytes[p];
    recv_at += recv_bytes[p];
  }
  return Group(send_ops_, recv_ops_);
}

Status Transport::Barrier() {
  std::vector<uint8_t> send(size(), 1), recv(size(), 0);
  return AllToAll(send.data(), recv.data(), 1);
}

}  // namespace grace
