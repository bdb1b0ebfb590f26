// For the benches that load a real graced: one on free loopback ports in a scratch directory,
// and the CPU time a process has used. Header-only; the including target defines GRACED_BINARY
// (the built graced; the environment variable GRACED_BINARY overrides it).
#pragma once

#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "agent/local_cluster.h"
#include "core/status.h"
#include "tests/testing/child_process.h"
#include "tests/testing/test_certificate.h"

namespace grace {

struct ScratchGraced {
  std::filesystem::path dir;
  int http_port = 0;
  int agents_port = 0;
  std::string ca_file;            // set: the REST API is https:// only, signed by this authority
  testing::ChildProcess process;  // killed when this goes

  // A client of the REST API (https:// verified against ca_file when set).
  httplib::Client Client() const {
    httplib::Client client((ca_file.empty() ? "http://127.0.0.1:" : "https://127.0.0.1:") +
                           std::to_string(http_port));
    if (!ca_file.empty()) client.set_ca_cert_path(ca_file);
    return client;
  }
};

// Writes `dir`/graced.toml (a [daemon] table with the ports and state_dir, then `tables`),
// starts graced with API token and cluster secret "bench", and waits for /healthz up to
// `timeout`. With `tls`, the REST API serves https:// only with tls's certificate (an [http]
// table; `tables` must not have one). On failure the message names the log.
inline Status StartScratchGraced(const std::filesystem::path& dir, const std::string& tables,
                                 std::chrono::seconds timeout, ScratchGraced* g,
                                 const testing::TestCertificates* tls = nullptr) {
  g->dir = dir;
  std::filesystem::create_directories(dir);
  GRACE_ASSIGN_OR_RETURN(g->http_port, PickFreePort());
  GRACE_ASSIGN_OR_RETURN(g->agents_port, PickFreePort());
  const std::string config = (dir / "graced.toml").string();
  {
    std::ofstream f(config);
    f << "[daemon]\nhttp = \"127.0.0.1:" << g->http_port
      << "\"\nagents = \"127.0.0.1:" << g->agents_port << "\"\nstate_dir = \""
      << (dir / "state").string() << "\"\n"
      << tables;
    if (tls != nullptr) {
      f << "[http]\ntls_cert_file = \"" << tls->cert_file << "\"\ntls_key_file = \""
        << tls->key_file << "\"\n";
      g->ca_file = tls->ca_file;
    }
  }
  const char* env = std::getenv("GRACED_BINARY");
  const std::string log = (dir / "graced.log").string();
  g->process.Start({env != nullptr ? env : GRACED_BINARY, "--config", config},
                   {"GRACE_API_TOKEN=bench", "GRACE_CLUSTER_SECRET=bench"}, log);
  httplib::Client probe = g->Client();
  probe.set_connection_timeout(1, 0);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline && g->process.Running() &&
         !probe.Get("/healthz")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!probe.Get("/healthz")) return Unavailable("graced did not start; see " + log);
  return Status::Ok();
}

// User plus system CPU seconds of process `pid`, from /proc/<pid>/stat.
inline double ProcessCpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
  std::istringstream in(line.substr(line.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace grace
