// NcclTransport with one rank (self send/receive through NCCL); skipped without a GPU.
#include <vector>

#include <gtest/gtest.h>

#include "agent/local_cluster.h"
#include "kernels/cuda_device.h"
#include "migrate/nccl_transport.h"
#include "migrate/tcp_transport.h"

namespace grace {
namespace {

TEST(NcclTransportTest, SelfAllToAllV) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) GTEST_SKIP() << why;
  auto port = PickFreePort();
  ASSERT_TRUE(port.ok());
  TcpTransportOptions o;
  o.rendezvous_port = static_cast<uint16_t>(*port);
  auto tcp = TcpTransport::Connect(o);
  ASSERT_TRUE(tcp.ok()) << tcp.status().ToString();
  auto nccl = NcclTransport::Create(**tcp, 0);
  ASSERT_TRUE(nccl.ok()) << nccl.status().ToString();
  std::vector<float> host(1000);
  for (int i = 0; i < 1000; ++i) host[i] = i;
  DeviceArray<float> send, recv;
  ASSERT_TRUE(send.Upload(host.data(), host.size(), nullptr).ok());
  ASSERT_TRUE(recv.Resize(host.size()).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  std::vector<size_t> bytes = {host.size() * 4};
  ASSERT_TRUE((*nccl)->AllToAllV(send.data(), bytes, recv.data(), bytes).ok());
  std::vector<float> back(1000);
  ASSERT_TRUE(recv.Download(back.data(), back.size(), nullptr).ok());
  ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
  EXPECT_EQ(back, host);
}

}  // namespace
}  // namespace grace
