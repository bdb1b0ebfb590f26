// gracectl as graced's client: status, agents, placement, history, decisions, policy get|set,
// replan, apply, pause, resume over the REST API (docs/rest-api.md).
//
// Server from --server, else $GRACE_SERVER, else http://127.0.0.1:8750; the bearer token for
// writes from --token, else $GRACE_API_TOKEN. An https:// server's certificate is verified
// against --ca-file, else $GRACE_CA_FILE, else the system's trusted authorities; there is no
// way to skip the check. Tables for people, --json for scripts (the
// server's JSON as it is). Exit codes: 0 success; 1 the server answered with an error (its
// message is printed as it is); 2 bad usage; 3 the server could not be reached.
#include <httplib.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/trace_file.h"
#include "daemon/tls_context.h"
#include "tools/commands.h"

namespace grace::tools {

namespace {

using nlohmann::json;

constexpr int kExitServerError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

struct ClientFlags {
  std::string server;
  std::string token;
  std::string ca_file;
  bool json = false;
};

[[noreturn]] void Exit(int code, const std::string& message) {
  std::cerr << "gracectl: " << message << "\n";
  throw CommandExit{code};
}

std::string FromEnv(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

class Client {
 public:
  explicit Client(const ClientFlags& f)
      : server_(f.server.empty() ? FromEnv("GRACE_SERVER", "http://127.0.0.1:8750") : f.server),
        token_(f.token.empty() ? FromEnv("GRACE_API_TOKEN", "") : f.token),
        ca_file_(f.ca_file.empty() ? FromEnv("GRACE_CA_FILE", "") : f.ca_file),
        https_(server_.rfind("https://", 0) == 0),
        http_(server_) {
    if ((!https_ && server_.rfind("http://", 0) != 0) || !http_.is_valid()) {
      Exit(kExitUsage, "--server: '" + server_ + "' is not an http:// or https:// URL");
    }
    if (!ca_file_.empty()) {
      if (Status ok = CheckCaFile(ca_file_); !ok.ok()) Exit(kExitUsage, ok.message());
      http_.set_ca_cert_path(ca_file_);
    }
    http_.enable_server_certificate_verification(true);
    // OpenSSL writes with write(2): a server that closes first must fail the request, not end
    // gracectl by SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    http_.set_connection_timeout(std::chrono::seconds(5));
    http_.set_read_timeout(std::chrono::seconds(30));
  }

  json Get(const std::string& path) { return Check("GET", path, http_.Get(path)); }
  json Send(const std::string& method, const std::string& path, const std::string& body) {
    if (token_.empty()) {
      Exit(kExitUsage, method + " " + path + " needs the API token: --token or GRACE_API_TOKEN");
    }
    httplib::Headers auth = {{"Authorization", "Bearer " + token_}};
    return Check(method, path,
                 method == "PUT" ? http_.Put(path, auth, body, "application/json")
                                 : http_.Post(path, auth, body, "application/json"));
  }

 private:
  json Check(const std::string& method, const std::string& path, const httplib::Result& res) {
    if (!res) {
      std::string why = httplib::to_string(res.error());
      if (res.error() == httplib::Error::SSLServerVerification) {
        why = "the server's TLS certificate is not trusted (" +
              CertificateVerifyText(http_.get_openssl_verify_result()) +
              "): pass the authority that signed it with --ca-file or GRACE_CA_FILE";
      } else if (https_ && res.error() == httplib::Error::SSLConnection) {
        why += " (is the server serving TLS on that port?)";
      } else if (!https_ && res.error() == httplib::Error::Read) {
        why += " (if graced serves TLS, use an https:// URL)";
      }
      Exit(kExitUnreachable, method + " " + server_ + path + ": " + why);
    }
    json j = json::parse(res->body, nullptr, false);
    if (res->status / 100 != 2) {
      // The server's message as it is.
      const std::string message =
          !j.is_discarded() && j.contains("error") ? j["error"].get<std::string>() : res->body;
      Exit(kExitServerError,
           method + " " + path + ": " + std::to_string(res->status) + ": " + message);
    }
    if (j.is_discarded()) Exit(kExitServerError, method + " " + path + ": the answer is not JSON");
    return j;
  }

  std::string server_, token_, ca_file_;
  bool https_;
  httplib::Client http_;
};

// The i-th element of an array, null when there is none (graced's per-layer arrays are empty
// before its first interval).
const json& At(const json& array, size_t i) {
  static const json kNull;
  return array.is_array() && i < array.size() ? array[i] : kNull;
}

std::string Text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v.get<double>());
    return buf;
  }
  return v.dump();
}

// Left-aligned columns sized to their widest cell.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size() && c < width.size(); ++c)
      width[c] = std::max(width[c], r[c].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t c = 0; c < r.size(); ++c) {
      out += r[c];
      if (c + 1 < r.size()) out += std::string(width[c] - r[c].size() + 2, ' ');
    }
    std::printf("%s\n", out.c_str());
  };
  line(header);
  for (const auto& r : rows) line(r);
}

void Output(const ClientFlags& f, const json& j, const std::function<void(const json&)>& table) {
  if (f.json) {
    std::cout << j.dump(2) << "\n";
  } else {
    table(j);
  }
}

}  // namespace

void AddClientCommands(CLI::App& app) {
  auto flags = std::make_shared<ClientFlags>();
  auto add = [&](CLI::App* cmd) {
    cmd->add_option("--server", flags->server,
                    "graced's URL (default $GRACE_SERVER or http://127.0.0.1:8750)");
    cmd->add_option("--token", flags->token, "API token for changes (default $GRACE_API_TOKEN)");
    cmd->add_option("--ca-file", flags->ca_file,
                    "PEM authority that signed an https:// server's certificate (default "
                    "$GRACE_CA_FILE, else the system's)");
    cmd->add_flag("--json", flags->json, "print the server's JSON");
    return cmd;
  };

  add(app.add_subcommand("status", "graced's epoch, agents, counters and per-layer figures"))
      ->callback([flags] {
        Client c(*flags);
        Output(*flags, c.Get("/api/v1/status"), [](const json& j) {
          std::printf("epoch %s%s, agents up %s, lost %s\n", Text(j["epoch"]).c_str(),
                      j.value("paused", false) ? " (paused)" : "", Text(j["agents_up"]).c_str(),
                      Text(j["agents_lost"]).c_str());
          std::printf("migrations %s (%s bytes), decisions %s, forecast wMAPE %s (last value %s)\n",
                      Text(j["migrations_total"]).c_str(), Text(j["migration_bytes_total"]).c_str(),
                      Text(j["decisions_total"]).c_str(), Text(j["forecast_mape"]).c_str(),
                      Text(j["last_value_mape"]).c_str());
          std::vector<std::vector<std::string>> rows;
          for (size_t l = 0; l < j["layers"].size(); ++l) {
            rows.push_back({Text(At(j["layers"], l)), Text(At(j["layer_imbalance"], l)),
                            Text(At(j["layer_cross_node_sends"], l))});
          }
          PrintTable({"layer", "max/mean", "cross-node sends/token (model)"}, rows);
        });
      });

  add(app.add_subcommand("agents", "the agents graced knows and their recent events"))
      ->callback([flags] {
        Client c(*flags);
        Output(*flags, c.Get("/api/v1/agents"), [](const json& j) {
          std::vector<std::vector<std::string>> rows;
          for (const json& a : j["agents"]) {
            rows.push_back({Text(a["agent_id"]), Text(a["node"]), Text(a["ranks"]),
                            Text(a["state"]), Text(a["epoch"]), Text(a["step"])});
          }
          PrintTable({"agent", "node", "ranks", "state", "epoch", "step"}, rows);
        });
      });

  {
    auto epoch = std::make_shared<int64_t>(-1);
    auto layer = std::make_shared<int>(-1);
    CLI::App* cmd = add(app.add_subcommand("placement", "the placement in force, or of an epoch"));
    cmd->add_option("--epoch", *epoch, "an epoch of the history (default: the current one)");
    cmd->add_option("--layer", *layer, "only this layer (its index in the placement)");
    cmd->callback([flags, epoch, layer] {
      Client c(*flags);
      json j =
          c.Get(*epoch >= 0 ? "/api/v1/placements/" + std::to_string(*epoch) : "/api/v1/placement");
      const json& rows = j["physical_to_logical_map"];
      if (*layer >= 0 && *layer >= static_cast<int>(rows.size())) {
        Exit(kExitUsage, "--layer " + std::to_string(*layer) + ": the placement has " +
                             std::to_string(rows.size()) + " layers");
      }
      if (*layer >= 0) {
        j["physical_to_logical_map"] = json::array({rows[*layer]});
        j["layers"] = json::array({j["layers"][*layer]});
      }
      Output(*flags, j, [](const json& p) {
        const int slots = p["topology"].value("slots_per_gpu", 1);
        std::printf("epoch %s, %s experts, slots per GPU %d\n", Text(p["epoch"]).c_str(),
                    Text(p["num_experts"]).c_str(), slots);
        for (size_t l = 0; l < p["physical_to_logical_map"].size(); ++l) {
          std::printf("layer %s:\n", Text(At(p["layers"], l)).c_str());
          const json& row = p["physical_to_logical_map"][l];
          for (size_t s = 0; s < row.size(); s += slots) {
            std::string gpu;
            for (size_t i = s; i < s + slots && i < row.size(); ++i) {
              gpu += (i > s ? " " : "") + (row[i].get<int>() < 0 ? std::string("-") : Text(row[i]));
            }
            std::printf("  GPU %zu: %s\n", s / slots, gpu.c_str());
          }
        }
      });
    });
  }

  add(app.add_subcommand("history", "the committed epochs, newest first"))->callback([flags] {
    Client c(*flags);
    Output(*flags, c.Get("/api/v1/placements?limit=1000"), [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (const json& p : j["items"]) {
        rows.push_back({Text(p["epoch"]), Text(p["committed_at_ms"]), Text(p["decision_id"])});
      }
      PrintTable({"epoch", "committed_at_ms", "decision"}, rows);
    });
  });

  add(app.add_subcommand("decisions", "graced's decisions, newest first"))->callback([flags] {
    Client c(*flags);
    Output(*flags, c.Get("/api/v1/decisions?limit=1000"), [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (const json& d : j["items"]) {
        rows.push_back({Text(d["id"]), Text(d["action"]), Text(d["layer_index"]),
                        Text(d["predicted_gain_ms"]), Text(d["realised_gain_ms"]), Text(d["bytes"]),
                        Text(d["epoch"]), Text(d["reason"])});
      }
      PrintTable(
          {"id", "action", "layer", "predicted_ms", "realised_ms", "bytes", "epoch", "reason"},
          rows);
    });
  });

  {
    CLI::App* policy = app.add_subcommand("policy", "the control loop's policy: get, or set");
    policy->require_subcommand(1);
    auto print_policy = [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (const auto& [k, v] : j.items()) rows.push_back({k, Text(v)});
      PrintTable({"field", "value"}, rows);
    };
    add(policy->add_subcommand("get", "the policy in force"))->callback([flags, print_policy] {
      Client c(*flags);
      Output(*flags, c.Get("/api/v1/policy"), print_policy);
    });
    auto assignments = std::make_shared<std::vector<std::string>>();
    CLI::App* set = add(policy->add_subcommand("set", "change fields: KEY=VALUE..."));
    set->add_option("assignments", *assignments, "KEY=VALUE (numbers as numbers, else strings)")
        ->required();
    set->callback([flags, assignments, print_policy] {
      json patch = json::object();
      for (const std::string& a : *assignments) {
        const size_t eq = a.find('=');
        if (eq == std::string::npos || eq == 0) Exit(kExitUsage, "'" + a + "': expected KEY=VALUE");
        const std::string key = a.substr(0, eq), value = a.substr(eq + 1);
        json parsed = json::parse(value, nullptr, false);
        patch[key] = !parsed.is_discarded() && parsed.is_number() ? parsed : json(value);
      }
      Client c(*flags);
      Output(*flags, c.Send("PUT", "/api/v1/policy", patch.dump()), print_policy);
    });
  }

  for (const auto& [name, what] : std::vector<std::pair<std::string, std::string>>{
           {"replan", "ask graced to decide at its next tick (cool-down ignored)"},
           {"pause", "stop new decisions"},
           {"resume", "resume decisions"}}) {
    const std::string path = "/api/v1/" + name;
    add(app.add_subcommand(name, what))->callback([flags, path] {
      Client c(*flags);
      Output(*flags, c.Send("POST", path, ""), [](const json& j) {
        for (const auto& [k, v] : j.items()) std::printf("%s: %s\n", k.c_str(), Text(v).c_str());
      });
    });
  }

  auto placement_file = std::make_shared<std::string>();
  CLI::App* apply = add(app.add_subcommand(
      "apply", "migrate live to a placement file (gracectl plan -o), past the policy"));
  apply->add_option("placement", *placement_file, "grace's placement JSON")->required();
  apply->callback([flags, placement_file] {
    StatusOr<std::string> text = ReadWholeFile(*placement_file);
    if (!text.ok()) Exit(kExitUsage, text.status().message());
    Client c(*flags);
    Output(*flags, c.Send("POST", "/api/v1/placement", *text), [](const json& j) {
      for (const auto& [k, v] : j.items()) std::printf("%s: %s\n", k.c_str(), Text(v).c_str());
    });
  });
}

}  // namespace grace::tools
