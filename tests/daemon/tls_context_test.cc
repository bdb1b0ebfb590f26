#include "daemon/tls_context.h"

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/testing/test_certificate.h"

namespace grace {
namespace {

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tls_context_" + std::to_string(::getpid()));
    ASSERT_TRUE(testing::MakeTestCertificates(dir_, &certs_));
    ASSERT_TRUE(testing::MakeTestCertificates(dir_ / "other", &other_));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  static bool Names(const Status& s, const std::string& what) {
    return s.message().find(what) != std::string::npos;
  }

  std::filesystem::path dir_;
  testing::TestCertificates certs_, other_;
};

TEST_F(TlsContextTest, LoadsACertificateAndItsKey) {
  auto tls = TlsServerContext::Load(certs_.cert_file, certs_.key_file);
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_TRUE(CheckCaFile(certs_.ca_file).ok());
}

TEST_F(TlsContextTest, BadFilesAreNamed) {
  const std::string missing = (dir_ / "missing.pem").string();
  Status s = TlsServerContext::Load(missing, certs_.key_file).status();
  EXPECT_TRUE(Names(s, "certificate file " + missing + ": no such file")) << s.ToString();
  s = TlsServerContext::Load(certs_.cert_file, missing).status();
  EXPECT_TRUE(Names(s, "key file " + missing + ": no such file")) << s.ToString();
  s = TlsServerContext::Load(dir_.string(), certs_.key_file).status();
  EXPECT_TRUE(Names(s, "not a regular file")) << s.ToString();

  const std::string garbage = Write("garbage.pem", "not a certificate\n");
  s = TlsServerContext::Load(garbage, certs_.key_file).status();
  EXPECT_TRUE(Names(s, "certificate file " + garbage + ": not a PEM certificate")) << s.ToString();
  s = TlsServerContext::Load(certs_.cert_file, garbage).status();
  EXPECT_TRUE(Names(s, "key file " + garbage + ": not an unencrypted PEM private key"))
      << s.ToString();
  // The certificate where the key should be, and another server's key.
  s = TlsServerContext::Load(certs_.cert_file, certs_.cert_file).status();
  EXPECT_TRUE(Names(s, "key file " + certs_.cert_file)) << s.ToString();
  s = TlsServerContext::Load(certs_.cert_file, other_.key_file).status();
  EXPECT_TRUE(Names(s, other_.key_file + " does not match the certificate in " + certs_.cert_file))
      << s.ToString();

  EXPECT_TRUE(Names(CheckCaFile(missing), "CA file " + missing + ": no such file"));
  EXPECT_TRUE(Names(CheckCaFile(garbage), "CA file " + garbage + ": no PEM certificate"));
}

}  // namespace
}  // namespace grace
