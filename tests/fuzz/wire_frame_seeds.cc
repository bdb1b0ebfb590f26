// Writes seed inputs for wire_frame_fuzz into the directory given: one frame of each message
// type, and load reports with co-activation and traffic sections (one refused), each file the
// fuzz target's split byte followed by the frame.
//
//   wire_frame_seeds build-fuzz/corpus/wire_frame_fuzz
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "core/wire_protocol.h"

namespace {

grace::LoadReport Report(uint32_t layers, uint32_t experts, uint32_t slots) {
  grace::LoadReport r;
  r.step_from = 3;
  r.step_to = 9;
  r.num_layers = layers;
  r.num_experts = experts;
  r.counts.assign(layers * experts, 5);
  r.coactivation_sample_every = 8;
  r.coactivation_max_pairs = 4;
  for (uint32_t l = 0; l < layers; l += 2) {
    r.coactivation.push_back({l, 12, 2, {{0, 1, 6}, {1, 2, 3}, {0, 2, 1}}});
  }
  r.slots_per_rank = slots;
  grace::DispatchCounts d{8, 2, 5, 2, 2 * 64, 2 * 64, std::vector<uint32_t>(slots, 4)};
  r.traffic = {{0, std::vector<grace::DispatchCounts>(layers, d)},
               {1, std::vector<grace::DispatchCounts>(layers, d)}};
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: wire_frame_seeds <corpus dir>\n";
    return 2;
  }
  grace::LoadReport refused = Report(2, 4, 2);
  refused.coactivation[0].pairs[1].b = 1;  // a == b
  grace::Hello hello;
  hello.agent_id = "node0";
  hello.ranks = {0, 1};
  hello.slots_per_rank = 2;
  grace::Hello hello_spare = hello;  // every optional field, spare_slots last
  hello_spare.placement_json = "{}";
  hello_spare.daemon_nonce.emplace().fill(1);
  hello_spare.spare_slots = 1;
  const std::vector<std::pair<std::string, grace::WireMessage>> seeds = {
      {"load_report", Report(2, 4, 2)},
      {"load_report_wide", Report(3, 64, 5)},
      {"load_report_refused_pair", refused},
      {"hello", hello},
      {"hello_spare_slots", hello_spare},
      {"heartbeat", grace::Heartbeat{7, 2}},
      {"prepare", grace::Prepare{3, "{}", {1.0f}, {{0, 1, 2, 3, 4096}}}},
      {"commit", grace::Commit{3, 40}}};
  for (const auto& [name, message] : seeds) {
    std::ofstream f(std::string(argv[1]) + "/seed_" + name, std::ios::binary);
    const std::string frame = grace::EncodeFrame(message);
    f << static_cast<char>(frame.size() / 2 % 251) << frame;
    if (!f) {
      std::cerr << "wire_frame_seeds: cannot write under " << argv[1] << "\n";
      return 1;
    }
  }
  return 0;
}
