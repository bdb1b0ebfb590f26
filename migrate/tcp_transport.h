// TcpTransport: the Transport over TCP with Boost.Asio, for CPU ranks (development machines,
// CI, tests on loopback). Host memory only.
//
// Rendezvous: rank 0 listens on a known host:port; every other rank opens a listener on an
// ephemeral port, connects to rank 0 and says who it is and where it listens; rank 0 answers
// with everyone's address, then each rank r connects to every rank in [1, r) and accepts the
// ranks above it: a full mesh of one socket per pair. Every message carries its length, so a
// size mismatch between sender and receiver is reported, not silently misread.
//
//   TcpTransportOptions o{.rank = 2, .size = 4, .rendezvous_host = "10.0.0.1",
//                         .rendezvous_port = 29500};
//   GRACE_ASSIGN_OR_RETURN(auto t, TcpTransport::Connect(o));
//
// Thread contract: one thread at a time (Transport's); Group() runs the socket I/O on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "migrate/transport.h"

namespace grace {

struct TcpTransportOptions {
  RankId rank = 0;
  int size = 1;
  std::string rendezvous_host = "127.0.0.1";
  uint16_t rendezvous_port = 29500;       // rank 0 listens here
  std::string listen_host = "127.0.0.1";  // where this rank accepts its peers
  std::chrono::milliseconds connect_timeout{30000};
  std::chrono::milliseconds io_timeout{120000};  // one Group() call
  // When set, every mesh connection is admitted only after both ends prove it (HMAC-SHA256 of
  // the other's random nonce, core/wire_protocol.h's ProveSecret); a connection that fails the
  // proof, sends a bad hello or stays silent for hello_timeout is dropped and the rank goes on
  // accepting, so a stranger's connect-and-close cannot break the mesh. Nothing is encrypted.
  std::string cluster_secret;
  std::chrono::milliseconds hello_timeout{2000};
};

class TcpTransport final : public Transport {
 public:
  static StatusOr<std::unique_ptr<TcpTransport>> Connect(const TcpTransportOptions& options);
  ~TcpTransport() override;

  RankId rank() const override;
  int size() const override;
  const char* name() const override { return "tcp"; }
  Status Group(std::span<const SendOp> sends, std::span<const RecvOp> recvs) override;

 private:
  struct Impl;
  explicit TcpTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace grace
