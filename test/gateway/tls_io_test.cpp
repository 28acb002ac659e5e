// Listener TLS contexts: what makes a certificate unusable at start, and when a rotation on disk
// swaps the context (no sockets: the swap itself is what new connections read).
#include "gateway/tls.hpp"
#include "test/support/temp_dir.hpp"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

using namespace fluxrelay;
using test::TempDir;

namespace {

struct Pem {
    std::string certificate;
    std::string key;
};

std::string toPem(int (*write)(BIO*, void*), void* object) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    REQUIRE(write(bio.get(), object) == 1);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
}

// A self-signed P-256 certificate for `commonName`, valid for an hour.
Pem selfSigned(const std::string& commonName) {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    std::unique_ptr<X509, decltype(&X509_free)> certificate(X509_new(), &X509_free);
    REQUIRE((key && certificate));
    static long serial = 1;
    X509_set_version(certificate.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(certificate.get()), ++serial);
    X509_gmtime_adj(X509_getm_notBefore(certificate.get()), 0);
    X509_gmtime_adj(X509_getm_notAfter(certificate.get()), 3600);
    X509_set_pubkey(certificate.get(), key.get());
    X509_NAME* name = X509_get_subject_name(certificate.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(commonName.c_str()), -1,
                               -1, 0);
    X509_set_issuer_name(certificate.get(), name);
    REQUIRE(X509_sign(certificate.get(), key.get(), EVP_sha256()) > 0);
    return {
        .certificate =
            toPem([](BIO* bio, void* x) { return PEM_write_bio_X509(bio, static_cast<X509*>(x)); }, certificate.get()),
        .key = toPem(
            [](BIO* bio, void* k) {
                return PEM_write_bio_PrivateKey(bio, static_cast<EVP_PKEY*>(k), nullptr, nullptr, 0, nullptr, nullptr);
            },
            key.get())};
}

// As a Secret volume or cert-manager does: written aside, renamed over.
void replace(const TempDir& dir, const std::string& name, const std::string& content) {
    dir.write(name + ".new", content);
    std::filesystem::rename(dir.file(name + ".new"), dir.file(name));
}

std::string commonNameOf(const std::shared_ptr<boost::asio::ssl::context>& context) {
    X509* certificate = SSL_CTX_get0_certificate(context->native_handle());
    REQUIRE(certificate != nullptr);
    char name[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, name, sizeof name);
    return name;
}

}  // namespace

TEST_CASE("a listener's certificate files are checked at start") {
    TempDir dir;
    const Pem one = selfSigned("one");
    const Pem two = selfSigned("two");
    dir.write("tls.crt", one.certificate);
    dir.write("tls.key", one.key);
    dir.write("other.key", two.key);
    dir.write("garbage", "not PEM\n");

    const ServerTls good{.certFile = dir.file("tls.crt"), .keyFile = dir.file("tls.key")};
    CHECK(commonNameOf(makeServerTlsContext(good)) == "one");

    const auto startError = [](const ServerTls& settings) {
        try {
            ListenerTls tls("ingest", settings);
        } catch (const std::runtime_error& error) {
            return std::string(error.what());
        }
        return std::string("no error");
    };
    CHECK(startError({.certFile = dir.file("garbage"), .keyFile = dir.file("tls.key")})
              .starts_with("ingest TLS: certFile " + dir.file("garbage") + ": "));
    CHECK(startError({.certFile = dir.file("tls.crt"), .keyFile = dir.file("other.key")})
              .starts_with("ingest TLS: keyFile " + dir.file("other.key")));
    CHECK(startError(
              {.certFile = dir.file("tls.crt"), .keyFile = dir.file("tls.key"), .clientCAFile = dir.file("garbage")})
              .starts_with("ingest TLS: clientCAFile " + dir.file("garbage") + ": "));
    CHECK(startError(
              {.certFile = dir.file("tls.crt"), .keyFile = dir.file("tls.key"), .clientCAFile = dir.file("tls.crt")}) ==
          "no error");
}

TEST_CASE("a rotated certificate is swapped in; unusable files keep the previous one") {
    TempDir dir;
    const Pem one = selfSigned("one");
    const Pem two = selfSigned("two");
    dir.write("tls.crt", one.certificate);
    dir.write("tls.key", one.key);
    ListenerTls tls("ingest", {.certFile = dir.file("tls.crt"), .keyFile = dir.file("tls.key")});
    const auto first = tls.current();
    CHECK(commonNameOf(first) == "one");

    tls.refresh();
    CHECK(tls.current() == first);  // nothing changed: the same context, not a rebuilt one

    // Half-way through a rotation: the new certificate with the old key.
    replace(dir, "tls.crt", two.certificate);
    tls.refresh();
    CHECK(tls.current() == first);

    replace(dir, "tls.key", two.key);
    tls.refresh();
    CHECK(commonNameOf(tls.current()) == "two");

    // A forced refresh (SIGHUP, config reload) rebuilds even without a change.
    const auto second = tls.current();
    tls.refresh(true);
    CHECK(tls.current() != second);
    CHECK(commonNameOf(tls.current()) == "two");

    // A reload naming other files loads them at the next refresh.
    dir.write("b/tls.crt", one.certificate);
    dir.write("b/tls.key", one.key);
    tls.reconfigure({.certFile = dir.file("b/tls.crt"), .keyFile = dir.file("b/tls.key")});
    tls.refresh();
    CHECK(commonNameOf(tls.current()) == "one");
}
