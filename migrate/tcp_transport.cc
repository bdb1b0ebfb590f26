#include "migrate/tcp_transport.h"

#include <array>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include <openssl/rand.h>

#include <boost/asio.hpp>

#include "core/wire_protocol.h"

namespace grace {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr uint32_t kHelloMagic = 0x47524331;  // "GRC1"

// The one place Asio errors become Status values.
Status AsioStatus(const boost::system::error_code& ec, const std::string& what) {
  if (!ec) return Status::Ok();
  if (ec == asio::error::operation_aborted || ec == asio::error::timed_out) {
    return DeadlineExceeded("tcp transport: " + what + ": timed out");
  }
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::connection_refused || ec == asio::error::broken_pipe) {
    return Unavailable("tcp transport: " + what + ": " + ec.message());
  }
  return Internal("tcp transport: " + what + ": " + ec.message());
}

struct MeshHello {
  uint32_t magic = kHelloMagic;
  int32_t rank = 0;
  int32_t size = 0;
  uint16_t port = 0;
  char host[64] = {};
};

}  // namespace

struct TcpTransport::Impl {
  TcpTransportOptions options;
  asio::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> peers;  // [rank]; null for self
  int strangers_dropped = 0;                        // connections refused while forming
  // Per-peer progress of one Group(): ops are chained so each socket carries them in order.
  struct PeerQueue {
    std::vector<const SendOp*> sends;
    std::vector<const RecvOp*> recvs;
    size_t next_send = 0, next_recv = 0;
    uint64_t send_len = 0, recv_len = 0;
  };
  std::vector<PeerQueue> queues;
  Status first_error;

  // Runs the io_context until it has no work or `timeout` passes (then cancels everything).
  Status RunFor(std::chrono::milliseconds timeout, const std::string& what) {
    io.restart();
    io.run_for(timeout);
    if (!io.stopped()) {
      for (auto& s : peers) {
        if (s) s->cancel();
      }
      io.restart();
      io.run();
      return DeadlineExceeded("tcp transport rank " + std::to_string(options.rank) + ": " + what +
                              ": no progress within " + std::to_string(timeout.count()) + " ms");
    }
    return Status::Ok();
  }

  static void Tune(tcp::socket& s) {
    s.set_option(tcp::no_delay(true));
    s.set_option(asio::socket_base::send_buffer_size(4 << 20));
    s.set_option(asio::socket_base::receive_buffer_size(4 << 20));
  }

  void StartSend(int peer) {
    PeerQueue& q = queues[peer];
    if (q.next_send == q.sends.size() || !first_error.ok()) return;
    const SendOp* op = q.sends[q.next_send];
    q.send_len = op->bytes;
    std::array<asio::const_buffer, 2> bufs = {asio::buffer(&q.send_len, sizeof q.send_len),
                                              asio::buffer(op->data, op->bytes)};
    asio::async_write(*peers[peer], bufs, [this, peer](boost::system::error_code ec, size_t) {
      if (ec) return Fail(AsioStatus(ec, "send to rank " + std::to_string(peer)));
      ++queues[peer].next_send;
      StartSend(peer);
    });
  }

  void StartRecv(int peer) {
    PeerQueue& q = queues[peer];
    if (q.next_recv == q.recvs.size() || !first_error.ok()) return;
    asio::async_read(
        *peers[peer], asio::buffer(&q.recv_len, sizeof q.recv_len),
        [this, peer](boost::system::error_code ec, size_t) {
          if (ec) return Fail(AsioStatus(ec, "receive from rank " + std::to_string(peer)));
          PeerQueue& q = queues[peer];
          const RecvOp* op = q.recvs[q.next_recv];
          if (q.recv_len != op->bytes) {
            return Fail(DataLoss("tcp transport: rank " + std::to_string(peer) + " sent " +
                                 std::to_string(q.recv_len) + " bytes, this rank expected " +
                                 std::to_string(op->bytes)));
          }
          asio::async_read(
              *peers[peer], asio::buffer(op->data, op->bytes),
              [this, peer](boost::system::error_code ec, size_t) {
                if (ec) {
                  return Fail(AsioStatus(ec, "receive from rank " + std::to_string(peer)));
                }
                ++queues[peer].next_recv;
                StartRecv(peer);
              });
        });
  }

  void Fail(Status s) {
    if (first_error.ok()) first_error = std::move(s);
    for (auto& p : peers) {
      if (p) p->cancel();
    }
  }
};

TcpTransport::TcpTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TcpTransport::~TcpTransport() = default;
RankId TcpTransport::rank() const {
  return impl_->options.rank;
}
int TcpTransport::size() const {
  return impl_->options.size;
}

StatusOr<std::unique_ptr<TcpTransport>> TcpTransport::Connect(const TcpTransportOptions& o) {
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size) {
    return InvalidArgument("tcp transport: rank " + std::to_string(o.rank) + " of size " +
                           std::to_string(o.size));
  }
  if (o.listen_host.size() >= sizeof(MeshHello::host)) {
    return InvalidArgument("tcp transport: listen_host too long");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->peers.resize(o.size);
  impl->queues.resize(o.size);
  asio::io_context& io = impl->io;
  const auto deadline = std::chrono::steady_clock::now() + o.connect_timeout;
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::max(
        deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration(1)));
  };
  boost::system::error_code ec;
  std::vector<MeshHello> table(o.size);

  // Transfers one value over a socket within the deadline.
  // Runs the one operation pending on `s` for at most `limit` (cancelling it after).
  auto run_on = [&](tcp::socket& s, std::chrono::milliseconds limit, const std::string& what) {
    io.restart();
    io.run_for(limit);
    if (io.stopped()) return Status::Ok();
    s.cancel();
    io.restart();
    io.run();
    return DeadlineExceeded("tcp transport rank " + std::to_string(o.rank) + ": " + what +
                            ": no progress within " + std::to_string(limit.count()) + " ms");
  };
  auto write_all = [&](tcp::socket& s, const void* data, size_t bytes, const std::string& what) {
    boost::system::error_code wec;
    asio::async_write(s, asio::buffer(data, bytes),
                      [&](boost::system::error_code e, size_t) { wec = e; });
    GRACE_RETURN_IF_ERROR(run_on(s, left(), what));
    return AsioStatus(wec, what);
  };
  auto read_all = [&](tcp::socket& s, void* data, size_t bytes, const std::string& what,
                      std::chrono::milliseconds limit = std::chrono::milliseconds::max()) {
    boost::system::error_code rec;
    asio::async_read(s, asio::buffer(data, bytes),
                     [&](boost::system::error_code e, size_t) { rec = e; });
    GRACE_RETURN_IF_ERROR(run_on(s, std::min(left(), limit), what));
    return AsioStatus(rec, what);
  };
  // Mutual proof of the cluster secret on a new connection (a no-op without a secret). The
  // accepting end sends a nonce first; the connecting end answers with its proof and a nonce
  // of its own, which the accepting end proves in turn.
  const bool authenticate = !o.cluster_secret.empty();
  using Nonce = std::array<uint8_t, 32>;
  auto fresh_nonce = [] {
    Nonce n;
    RAND_bytes(n.data(), static_cast<int>(n.size()));
    return n;
  };
  auto prove_as_acceptor = [&](tcp::socket& s) -> Status {
    if (!authenticate) return Status::Ok();
    const Nonce mine = fresh_nonce();
    GRACE_RETURN_IF_ERROR(write_all(s, mine.data(), mine.size(), "mesh challenge"));
    std::array<Nonce, 2> answer;  // their proof, their nonce
    GRACE_RETURN_IF_ERROR(
        read_all(s, answer.data(), sizeof(answer), "mesh proof", o.hello_timeout));
    if (!ProofsEqual(answer[0], ProveSecret(o.cluster_secret, mine))) {
      return FailedPrecondition("mesh peer failed the cluster-secret proof");
    }
    const Nonce proof = ProveSecret(o.cluster_secret, answer[1]);
    return write_all(s, proof.data(), proof.size(), "mesh proof");
  };
  auto prove_as_connector = [&](tcp::socket& s, const std::string& peer) -> Status {
    if (!authenticate) return Status::Ok();
    Nonce theirs;
    GRACE_RETURN_IF_ERROR(read_all(s, theirs.data(), theirs.size(), "mesh challenge from " + peer));
    const std::array<Nonce, 2> answer = {ProveSecret(o.cluster_secret, theirs), fresh_nonce()};
    GRACE_RETURN_IF_ERROR(write_all(s, answer.data(), sizeof(answer), "mesh proof"));
    Nonce proof;
    if (Status r = read_all(s, proof.data(), proof.size(), "mesh proof from " + peer); !r.ok()) {
      return FailedPrecondition("tcp transport: " + peer +
                                " did not accept this rank's cluster-secret proof (another "
                                "cluster's secret?): " +
                                r.message());
    }
    if (!ProofsEqual(proof, ProveSecret(o.cluster_secret, answer[1]))) {
      return FailedPrecondition("tcp transport: " + peer +
                                " failed the cluster-secret proof (another cluster's rank?)");
    }
    return Status::Ok();
  };
  auto accept_one = [&](tcp::acceptor& acceptor,
                        const std::string& what) -> StatusOr<std::unique_ptr<tcp::socket>> {
    auto s = std::make_unique<tcp::socket>(io);
    boost::system::error_code aec = asio::error::timed_out;
    acceptor.async_accept(*s, [&](boost::system::error_code e) { aec = e; });
    io.restart();
    io.run_for(left());
    if (!io.stopped()) {
      acceptor.cancel();
      io.restart();
      io.run();
      return DeadlineExceeded("tcp transport rank " + std::to_string(o.rank) + ": " + what +
                              ": no peer connected within " +
                              std::to_string(o.connect_timeout.count()) + " ms");
    }
    GRACE_RETURN_IF_ERROR(AsioStatus(aec, what));
    Impl::Tune(*s);
    return s;
  };
  auto resolve = [&](const std::string& host, uint16_t port) -> StatusOr<tcp::endpoint> {
    tcp::resolver resolver(io);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty())
      return AsioStatus(ec ? ec : asio::error::host_not_found, "resolve " + host);
    return results.begin()->endpoint();
  };
  // Connects, retrying while the peer is not listening yet, until the deadline.
  auto connect_to = [&](const std::string& host,
                        uint16_t port) -> StatusOr<std::unique_ptr<tcp::socket>> {
    GRACE_ASSIGN_OR_RETURN(tcp::endpoint ep, resolve(host, port));
    while (true) {
      auto s = std::make_unique<tcp::socket>(io);
      s->connect(ep, ec);
      if (!ec) {
        Impl::Tune(*s);
        return s;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return AsioStatus(ec, "connect to " + host + ":" + std::to_string(port) + " (rank " +
                                  std::to_string(o.rank) + ", timed out after " +
                                  std::to_string(o.connect_timeout.count()) + " ms)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };

  if (o.rank == 0) {
    GRACE_ASSIGN_OR_RETURN(tcp::endpoint ep, resolve(o.rendezvous_host, o.rendezvous_port));
    tcp::acceptor acceptor(io);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    GRACE_RETURN_IF_ERROR(AsioStatus(
        ec, "listen on rendezvous " + o.rendezvous_host + ":" + std::to_string(o.rendezvous_port)));
    for (int i = 1; i < o.size;) {
      GRACE_ASSIGN_OR_RETURN(auto s, accept_one(acceptor, "rendezvous"));
      MeshHello h;
      // A connection that proves nothing or says nothing useful is a stranger's (a port scan, a
      // health probe): it is dropped and the rendezvous goes on.
      Status admitted = prove_as_acceptor(*s);
      if (admitted.ok()) admitted = read_all(*s, &h, sizeof h, "rendezvous hello", o.hello_timeout);
      if (admitted.ok() && (h.magic != kHelloMagic || h.size != o.size || h.rank <= 0 ||
                            h.rank >= o.size || impl->peers[h.rank])) {
        admitted = InvalidArgument("bad hello (rank " + std::to_string(h.rank) + ", size " +
                                   std::to_string(h.size) + "; this cluster has " +
                                   std::to_string(o.size) + " ranks)");
      }
      if (!admitted.ok()) {
        ++impl->strangers_dropped;
        continue;
      }
      h.host[sizeof h.host - 1] = 0;
      table[h.rank] = h;
      impl->peers[h.rank] = std::move(s);
      ++i;
    }
    for (int r = 1; r < o.size; ++r) {
      GRACE_RETURN_IF_ERROR(write_all(*impl->peers[r], table.data(), sizeof(MeshHello) * o.size,
                                      "send address table"));
    }
  } else {
    GRACE_ASSIGN_OR_RETURN(tcp::endpoint lep, resolve(o.listen_host, 0));
    tcp::acceptor acceptor(io);
    acceptor.open(lep.protocol(), ec);
    if (!ec) acceptor.bind(lep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    GRACE_RETURN_IF_ERROR(AsioStatus(ec, "listen on " + o.listen_host));
    MeshHello me;
    me.rank = o.rank;
    me.size = o.size;
    me.port = acceptor.local_endpoint().port();
    std::memcpy(me.host, o.listen_host.data(), o.listen_host.size());
    GRACE_ASSIGN_OR_RETURN(impl->peers[0], connect_to(o.rendezvous_host, o.rendezvous_port));
    GRACE_RETURN_IF_ERROR(prove_as_connector(*impl->peers[0], "rank 0"));
    GRACE_RETURN_IF_ERROR(write_all(*impl->peers[0], &me, sizeof me, "rendezvous hello"));
    GRACE_RETURN_IF_ERROR(read_all(*impl->peers[0], table.data(), sizeof(MeshHello) * o.size,
                                   "receive address table"));
    for (int r = 1; r < o.rank; ++r) {
      GRACE_ASSIGN_OR_RETURN(impl->peers[r], connect_to(table[r].host, table[r].port));
      GRACE_RETURN_IF_ERROR(prove_as_connector(*impl->peers[r], "rank " + std::to_string(r)));
      GRACE_RETURN_IF_ERROR(write_all(*impl->peers[r], &me, sizeof me, "mesh hello"));
    }
    for (int i = o.rank + 1; i < o.size;) {
      GRACE_ASSIGN_OR_RETURN(auto s, accept_one(acceptor, "mesh"));
      MeshHello h;
      Status admitted = prove_as_acceptor(*s);
      if (admitted.ok()) admitted = read_all(*s, &h, sizeof h, "mesh hello", o.hello_timeout);
      if (admitted.ok() &&
          (h.magic != kHelloMagic || h.rank <= o.rank || h.rank >= o.size || impl->peers[h.rank])) {
        admitted = InvalidArgument("bad mesh hello from rank " + std::to_string(h.rank));
      }
      if (!admitted.ok()) {
        ++impl->strangers_dropped;
        continue;
      }
      impl->peers[h.rank] = std::move(s);
      ++i;
    }
  }
  return std::unique_ptr<TcpTransport>(new TcpTransport(std::move(impl)));
}

Status TcpTransport::Group(std::span<const SendOp> sends, std::span<const RecvOp> recvs) {
  Impl& m = *impl_;
  const int n = size();
  for (auto& q : m.queues) {
    q.sends.clear();
    q.recvs.clear();
    q.next_send = q.next_recv = 0;
  }
  for (const SendOp& op : sends) {
    if (op.peer < 0 || op.peer >= n)
      return InvalidArgument("tcp transport: send to rank " + std::to_string(op.peer));
    m.queues[op.peer].sends.push_back(&op);
  }
  for (const RecvOp& op : recvs) {
    if (op.peer < 0 || op.peer >= n)
      return InvalidArgument("tcp transport: receive from rank " + std::to_string(op.peer));
    m.queues[op.peer].recvs.push_back(&op);
  }
  // Messages to self are local copies, matched in order.
  Impl::PeerQueue& self = m.queues[rank()];
  if (self.sends.size() != self.recvs.size()) {
    return InvalidArgument("tcp transport: " + std::to_string(self.sends.size()) +
                           " sends to self but " + std::to_string(self.recvs.size()) + " receives");
  }
  for (size_t i = 0; i < self.sends.size(); ++i) {
    if (self.sends[i]->bytes != self.recvs[i]->bytes) {
      return DataLoss("tcp transport: self send of " + std::to_string(self.sends[i]->bytes) +
                      " bytes into a receive of " + std::to_string(self.recvs[i]->bytes));
    }
    if (self.sends[i]->bytes > 0)
      std::memmove(self.recvs[i]->data, self.sends[i]->data, self.sends[i]->bytes);
  }
  self.sends.clear();
  self.recvs.clear();
  m.first_error = Status::Ok();
  for (int p = 0; p < n; ++p) {
    if (p == rank()) continue;
    m.StartSend(p);
    m.StartRecv(p);
  }
  GRACE_RETURN_IF_ERROR(m.RunFor(m.options.io_timeout, "group"));
  return m.first_error;
}

}  // namespace grace
