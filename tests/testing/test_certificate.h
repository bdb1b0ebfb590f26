// TestCertificates: a throw-away certificate authority and a server certificate it signed, for
// 127.0.0.1 and localhost, written as PEM files into a directory (OpenSSL's API; no `openssl`
// binary needed). For tests and benches that serve TLS on loopback. Header-only; link
// OpenSSL::SSL (or grace_daemon).
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace grace::testing {

struct TestCertificates {
  std::string ca_file;    // the authority's certificate: what a client trusts
  std::string cert_file;  // the server's certificate
  std::string key_file;   // the server's private key
};

namespace certificate_detail {

inline void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext != nullptr) X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `common_name` with `key`, signed by `issuer_key` (`issuer` null: itself).
inline X509* MakeCertificate(const char* common_name, EVP_PKEY* key, X509* issuer,
                             EVP_PKEY* issuer_key, bool is_ca, long serial) {
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 7L * 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(cert, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* signer = issuer != nullptr ? issuer : cert;
  if (is_ca) {
    AddExtension(cert, signer, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(cert, signer, NID_basic_constraints, "critical,CA:FALSE");
    AddExtension(cert, signer, NID_ext_key_usage, "serverAuth");
    AddExtension(cert, signer, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  }
  X509_sign(cert, issuer_key, EVP_sha256());
  return cert;
}

inline bool WriteCertificate(const std::string& path, X509* cert) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  const bool ok = PEM_write_X509(f, cert) == 1;
  std::fclose(f);
  return ok;
}

}  // namespace certificate_detail

// Writes ca.pem, server.pem and server.key into `dir` (created); false when it cannot.
inline bool MakeTestCertificates(const std::filesystem::path& dir, TestCertificates* out) {
  namespace d = certificate_detail;
  std::filesystem::create_directories(dir);
  out->ca_file = (dir / "ca.pem").string();
  out->cert_file = (dir / "server.pem").string();
  out->key_file = (dir / "server.key").string();
  EVP_PKEY* ca_key = EVP_EC_gen("P-256");
  EVP_PKEY* server_key = EVP_EC_gen("P-256");
  bool ok = ca_key != nullptr && server_key != nullptr;
  if (ok) {
    X509* ca = d::MakeCertificate("grace test CA", ca_key, nullptr, ca_key, true, 1);
    X509* server = d::MakeCertificate("127.0.0.1", server_key, ca, ca_key, false, 2);
    ok = d::WriteCertificate(out->ca_file, ca) && d::WriteCertificate(out->cert_file, server);
    std::FILE* f = std::fopen(out->key_file.c_str(), "w");
    ok = ok && f != nullptr &&
         PEM_write_PrivateKey(f, server_key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    if (f != nullptr) std::fclose(f);
    X509_free(server);
    X509_free(ca);
  }
  EVP_PKEY_free(server_key);
  EVP_PKEY_free(ca_key);
  return ok;
}

}  // namespace grace::testing
