// graced under hostile connections: the real daemon process on loopback, then
//   1. 200 idle and 8 slow-drip HTTP connections held open for the whole phase (reopened when
//      graced closes them, as a persistent attacker would), while this client measures
//        healthz_p99_ms          GET /healthz on fresh connections        (target < 50 ms)
//        status_keepalive_p99_ms 200 req/s of GET /api/v1/status, one kept-alive connection
//        status_fresh_p99_ms     200 req/s of GET /api/v1/status, a new connection each
//                                                                         (targets < 10 ms)
//      and with --tls also status_fresh_shared_ctx_p99_ms: the same fresh connections and full
//      handshakes from one client TLS context, as a long-running client makes them (each
//      httplib::Client above builds its own context and reads the CA file first; the
//      difference is that client-side set-up, not the server).
//   2. 2,000 unauthenticated connections to the agent port, opened and left idle, then
//        agent_join_ms           a real agent's connect -> TLS -> Challenge -> Hello -> Welcome
//                                                                         (target < 1 s)
//        agent_flood_cpu_cores   graced's CPU time / wall time over the next seconds (< 0.2)
//        agent_flood_rss_mb      graced's resident memory growth from the flood   (< 50 MB)
// Prints one JSON object. Bounded: about 40 s and 2,208 connections.
//
// With --tls the REST API serves https:// only (a throw-away certificate authority made here):
// the measuring clients verify it, the idle connections are completed TLS sessions that send
// nothing, and the slow-drip ones send their head one byte per TLS record.
//
//   hardening_bench [--http-seconds 10] [--strangers 2000] [--flood-seconds 10] [--tls]
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/local_cluster.h"
#include "bench/scratch_graced.h"
#include "core/wire_protocol.h"
#include "tests/testing/child_process.h"
#include "tls/daemon_connection.h"

namespace {

using Clock = std::chrono::steady_clock;

int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

double RssMb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Holds `idle` silent connections and `drip` connections that send a request head one byte
// every 500 ms, reopening any that graced closes, until stopped. With `tls` (a client context
// that trusts graced) each connection first completes its TLS handshake.
class HttpAttackers {
 public:
  HttpAttackers(int port, int idle, int drip, SSL_CTX* tls)
      : port_(port), idle_(idle), drip_(drip), tls_(tls) {
    thread_ = std::thread([this] { Run(); });
  }
  ~HttpAttackers() {
    stop_ = true;
    thread_.join();
    for (size_t i = 0; i < fds_.size(); ++i) Drop(i);
  }
  int reopened() const { return reopened_; }

 private:
  void Open(size_t i) {
    fds_[i] = Connect(port_);
    if (fds_[i] < 0 || tls_ == nullptr) return;
    timeval tv{5, 0};
    ::setsockopt(fds_[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sessions_[i] = SSL_new(tls_);
    SSL_set_fd(sessions_[i], fds_[i]);
    if (SSL_connect(sessions_[i]) != 1) return Drop(i);
    ::fcntl(fds_[i], F_SETFL, ::fcntl(fds_[i], F_GETFL) | O_NONBLOCK);
  }
  // Whether graced answered or closed connection i (it became readable). Over TLS the server
  // also sends session tickets after the handshake: those are read and the session kept.
  bool Ended(size_t i) {
    if (sessions_[i] == nullptr) return true;
    char buf[4096];
    size_t n = 0;
    if (SSL_read_ex(sessions_[i], buf, sizeof(buf), &n) == 1) return true;
    return SSL_get_error(sessions_[i], 0) != SSL_ERROR_WANT_READ;
  }
  void Drop(size_t i) {
    if (sessions_[i] != nullptr) SSL_free(sessions_[i]);
    sessions_[i] = nullptr;
    if (fds_[i] >= 0) ::close(fds_[i]);
    fds_[i] = -1;
  }
  bool SendByte(size_t i, char c) {
    if (sessions_[i] == nullptr) return ::send(fds_[i], &c, 1, MSG_NOSIGNAL) == 1;
    size_t n = 0;
    return SSL_write_ex(sessions_[i], &c, 1, &n) == 1;
  }

  void Run() {
    const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    fds_.assign(idle_ + drip_, -1);
    sessions_.assign(fds_.size(), nullptr);
    std::vector<size_t> sent(fds_.size(), 0);
    auto next_drip = Clock::now();
    while (!stop_) {
      for (size_t i = 0; i < fds_.size(); ++i) {
        if (fds_[i] < 0) {
          Open(i);
          sent[i] = 0;
        }
      }
      std::vector<pollfd> p(fds_.size());
      for (size_t i = 0; i < fds_.size(); ++i) p[i] = {fds_[i], POLLIN, 0};
      ::poll(p.data(), p.size(), 50);
      for (size_t i = 0; i < fds_.size(); ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) && Ended(i)) {
          Drop(i);
          ++reopened_;
        }
      }
      if (Clock::now() >= next_drip) {
        for (int i = idle_; i < idle_ + drip_; ++i) {
          if (fds_[i] < 0) continue;
          if (SendByte(i, sent[i] < head.size() ? head[sent[i]] : 'a')) ++sent[i];
        }
        next_drip = Clock::now() + std::chrono::milliseconds(500);
      }
    }
  }

  int port_, idle_, drip_;
  SSL_CTX* tls_;
  std::vector<int> fds_;
  std::vector<SSL*> sessions_;
  std::atomic<bool> stop_{false};
  std::atomic<int> reopened_{0};
  std::thread thread_;
};

// Paced GETs of `path` at `rps` for `seconds`; latencies in ms (a failed request counts 10 s).
std::vector<double> Paced(const grace::ScratchGraced& graced, const std::string& path, int rps,
                          int seconds, bool keep_alive) {
  std::vector<double> out;
  httplib::Client kept = graced.Client();
  kept.set_keep_alive(true);
  const auto period = std::chrono::duration<double>(1.0 / rps);
  const auto t0 = Clock::now();
  for (int i = 0; i < rps * seconds; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(period * i));
    const auto s = Clock::now();
    bool ok;
    if (keep_alive) {
      auto r = kept.Get(path);
      ok = r && r->status == 200;
    } else {
      httplib::Client fresh = graced.Client();
      auto r = fresh.Get(path);
      ok = r && r->status == 200;
    }
    out.push_back(ok ? Ms(Clock::now() - s) : 10000.0);
  }
  return out;
}

// `rps` GETs of /api/v1/status per second for `seconds`, each on a new connection with a full
// TLS handshake (no resumption) from the one client context `tls`; latencies in ms (a failed
// request counts 10 s).
std::vector<double> PacedFreshTls(int port, SSL_CTX* tls, int rps, int seconds) {
  std::vector<double> out;
  const std::string request =
      "GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
      "Connection: close\r\n\r\n";
  const auto period = std::chrono::duration<double>(1.0 / rps);
  const auto t0 = Clock::now();
  for (int i = 0; i < rps * seconds; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(period * i));
    const auto s = Clock::now();
    bool ok = false;
    const int fd = Connect(port);
    if (fd >= 0) {
      timeval tv{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      SSL* ssl = SSL_new(tls);
      SSL_set_fd(ssl, fd);
      SSL_set1_host(ssl, "127.0.0.1");
      size_t n = 0;
      if (SSL_connect(ssl) == 1 && SSL_write_ex(ssl, request.data(), request.size(), &n) == 1) {
        std::string response;
        char buf[4096];
        while (SSL_read_ex(ssl, buf, sizeof(buf), &n) == 1) response.append(buf, n);
        ok = response.rfind("HTTP/1.1 200", 0) == 0;
      }
      SSL_free(ssl);
      ::close(fd);
    }
    out.push_back(ok ? Ms(Clock::now() - s) : 10000.0);
  }
  return out;
}

// A real agent's handshake over the agent's own socket (tls = "psk", the default): milliseconds
// from connect (through the TLS handshake, Challenge and Hello) to Welcome, or -1.
double JoinMs(int port, const std::string& secret) {
  const auto s = Clock::now();
  const auto deadline = s + std::chrono::seconds(10);
  grace::DaemonConnection conn("127.0.0.1:" + std::to_string(port), grace::AgentChannelTls::kPsk,
                               secret);
  if (!conn.Open(deadline).ok()) return -1;
  grace::FrameDecoder decoder;
  auto next = [&](grace::WireMessage* m) {
    while (Clock::now() < deadline) {
      auto more = decoder.Next(m);
      if (!more.ok()) return false;
      if (*more) return true;
      std::string bytes;
      if (!conn.Receive(std::chrono::milliseconds(50), &bytes).ok()) return false;
      decoder.Append(bytes);
    }
    return false;
  };
  grace::WireMessage m;
  if (!next(&m) || !std::holds_alternative<grace::Challenge>(m)) return -1;
  grace::Hello h;
  h.agent_id = "bench-agent";
  h.node = 0;
  h.ranks = {0};
  h.slots_per_rank = 8;
  h.proof = grace::ProveSecret(secret, std::get<grace::Challenge>(m).nonce);
  if (!conn.Send(grace::EncodeFrame(h), deadline).ok()) return -1;
  if (!next(&m) || !std::holds_alternative<grace::Welcome>(m)) return -1;
  return Ms(Clock::now() - s);
}

}  // namespace

int main(int argc, char** argv) {
  int http_seconds = 10, strangers = 2000, flood_seconds = 10;
  bool tls = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tls") {
      tls = true;
      continue;
    }
    if (i + 1 >= argc) break;
    const int v = std::atoi(argv[++i]);
    if (a == "--http-seconds") http_seconds = std::clamp(v, 1, 60);
    if (a == "--strangers") strangers = std::clamp(v, 1, 10000);
    if (a == "--flood-seconds") flood_seconds = std::clamp(v, 1, 60);
  }
  // The clients here write through OpenSSL (write(2)) to a server that may close first.
  std::signal(SIGPIPE, SIG_IGN);
  // This process holds every attacker connection.
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("graced_harden_" + std::to_string(::getpid()));
  grace::testing::TestCertificates certs;
  if (tls && !grace::testing::MakeTestCertificates(dir / "tls", &certs)) {
    std::cerr << "cannot write test certificates into " << (dir / "tls").string() << "\n";
    return 1;
  }
  grace::ScratchGraced graced;
  if (grace::Status up =
          grace::StartScratchGraced(dir,
                                    "[topology]\nnodes = 1\ngpus_per_node = 1\nslots_per_gpu = 8\n"
                                    "[model]\nnum_experts = 8\ntop_k = 2\nlayers = [0]\n",
                                    std::chrono::seconds(60), &graced, tls ? &certs : nullptr);
      !up.ok()) {
    std::cerr << up.message() << "\n";
    return 1;
  }
  nlohmann::json out;
  out["tls"] = tls;
  SSL_CTX* attacker_tls = nullptr;
  if (tls) {
    attacker_tls = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(attacker_tls, certs.ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(attacker_tls, SSL_VERIFY_PEER, nullptr);
  }
  {
    HttpAttackers attackers(graced.http_port, 200, 8, attacker_tls);
    std::this_thread::sleep_for(std::chrono::seconds(1));
    out["healthz_p99_ms"] = Percentile(Paced(graced, "/healthz", 50, http_seconds, false), .99);
    out["status_keepalive_p99_ms"] =
        Percentile(Paced(graced, "/api/v1/status", 200, http_seconds, true), .99);
    const std::vector<double> fresh = Paced(graced, "/api/v1/status", 200, http_seconds, false);
    out["status_fresh_p50_ms"] = Percentile(fresh, .5);
    out["status_fresh_p99_ms"] = Percentile(fresh, .99);
    if (tls) {
      const std::vector<double> shared =
          PacedFreshTls(graced.http_port, attacker_tls, 200, http_seconds);
      out["status_fresh_shared_ctx_p50_ms"] = Percentile(shared, .5);
      out["status_fresh_shared_ctx_p99_ms"] = Percentile(shared, .99);
    }
    out["http_attacker_reconnects"] = attackers.reopened();
  }
  if (attacker_tls != nullptr) SSL_CTX_free(attacker_tls);

  const pid_t pid = graced.process.pid();
  const double rss0 = RssMb(pid);
  std::vector<int> flood;
  for (int i = 0; i < strangers; ++i) {
    const int fd = Connect(graced.agents_port);
    if (fd >= 0) flood.push_back(fd);
  }
  out["agent_strangers_connected"] = flood.size();
  out["agent_join_ms"] = JoinMs(graced.agents_port, "bench");
  const double cpu0 = grace::ProcessCpuSeconds(pid);
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(flood_seconds));
  out["agent_flood_cpu_cores"] = (grace::ProcessCpuSeconds(pid) - cpu0) /
                                 std::chrono::duration<double>(Clock::now() - t0).count();
  out["agent_flood_rss_mb"] = RssMb(pid) - rss0;
  out["agent_join_after_flood_ms"] = JoinMs(graced.agents_port, "bench");
  for (int fd : flood) ::close(fd);
  graced.process.Kill(SIGTERM);
  std::cout << out.dump(2) << "\n";
  std::filesystem::remove_all(dir);
  return 0;
}
