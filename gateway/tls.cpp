// Listener TLS contexts: built from the configured files, swapped atomically when they change.
#include "gateway/tls.hpp"

#include <stdexcept>

#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ssl/context.hpp>

namespace fluxrelay {

namespace ssl = boost::asio::ssl;

namespace {

// TLS 1.2: forward secrecy and authenticated encryption only (no RSA key exchange, no CBC).
constexpr const char* kTls12Ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20";
// Tickets and cached sessions of one listener only; OpenSSL refuses to resume without it when
// client certificates are verified.
constexpr unsigned char kSessionIdContext[] = "fluxrelay";

std::string bioText(BIO* bio) {
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

// "subject CN=relay.example, expires Nov 27 12:00:00 2027 GMT", for the log.
std::string describeCertificate(ssl::context& context) {
    X509* certificate = SSL_CTX_get0_certificate(context.native_handle());
    if (certificate == nullptr) {
        return "no certificate";
    }
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    if (!bio) {
        return "certificate";
    }
    BIO_puts(bio.get(), "subject ");
    X509_NAME_print_ex(bio.get(), X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253);
    BIO_puts(bio.get(), ", expires ");
    ASN1_TIME_print(bio.get(), X509_get0_notAfter(certificate));
    if (X509_cmp_current_time(X509_get0_notAfter(certificate)) < 0) {
        BIO_puts(bio.get(), " (EXPIRED)");
    }
    return bioText(bio.get());
}

ListenerTls::FileStamp stampOf(const std::string& path) {
    struct stat info {};
    if (path.empty() || ::stat(path.c_str(), &info) != 0) {
        return {};
    }
    return {.device = static_cast<std::uint64_t>(info.st_dev),
            .inode = static_cast<std::uint64_t>(info.st_ino),
            .modifiedNs = static_cast<std::int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec,
            .size = static_cast<std::int64_t>(info.st_size)};
}

}  // namespace

std::shared_ptr<ssl::context> makeServerTlsContext(const ServerTls& settings) {
    auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX* native = context->native_handle();
    if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1 ||
        SSL_CTX_set_session_id_context(native, kSessionIdContext, sizeof kSessionIdContext - 1) != 1) {
        throw std::runtime_error("cannot set up TLS: OpenSSL refused the protocol settings");
    }
    SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);

    boost::system::error_code error;
    context->use_certificate_chain_file(settings.certFile, error);
    if (error) {
        throw std::runtime_error("certFile " + settings.certFile + ": " + error.message());
    }
    // Also checks that the key belongs to the certificate.
    context->use_private_key_file(settings.keyFile, ssl::context::pem, error);
    if (error) {
        throw std::runtime_error("keyFile " + settings.keyFile + " (with certFile " + settings.certFile +
                                 "): " + error.message());
    }
    if (!settings.clientCAFile.empty()) {
        context->load_verify_file(settings.clientCAFile, error);
        if (error) {
            throw std::runtime_error("clientCAFile " + settings.clientCAFile + ": " + error.message());
        }
        // Tells clients which CA to pick their certificate for.
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(settings.clientCAFile.c_str());
        if (names == nullptr) {
            throw std::runtime_error("clientCAFile " + settings.clientCAFile + ": no certificate in it");
        }
        SSL_CTX_set_client_CA_list(native, names);
        context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    }
    return context;
}

ListenerTls::ListenerTls(std::string listener, ServerTls settings)
    : listener_(std::move(listener)), settings_(std::move(settings)) {
    loaded_ = stamps();
    try {
        auto context = makeServerTlsContext(settings_);
        spdlog::info("{}: TLS certificate from {}: {}{}", listener_, settings_.certFile, describeCertificate(*context),
                     settings_.clientCAFile.empty() ? "" : "; client certificates required");
        current_.store(std::move(context));
    } catch (const std::exception& error) {
        throw std::runtime_error(listener_ + " TLS: " + error.what());
    }
}

ListenerTls::~ListenerTls() = default;

std::shared_ptr<ssl::context> ListenerTls::current() const { return current_.load(); }

std::vector<ListenerTls::FileStamp> ListenerTls::stamps() const {
    return {stampOf(settings_.certFile), stampOf(settings_.keyFile), stampOf(settings_.clientCAFile)};
}

void ListenerTls::refresh(bool force) {
    std::lock_guard lock(mutex_);
    // Taken before reading: a write that lands while reading is seen as a change next time.
    const std::vector<FileStamp> now = stamps();
    if (!force && (now == loaded_ || now == failed_)) {
        return;
    }
    try {
        auto context = makeServerTlsContext(settings_);
        spdlog::info("{}: TLS certificate {} from {}: {}", listener_, force ? "reloaded" : "changed, now serving",
                     settings_.certFile, describeCertificate(*context));
        current_.store(std::move(context));
        loaded_ = now;
        failed_.clear();
    } catch (const std::exception& error) {
        // Often a rotation caught half-way (new certificate, old key): the next change fixes it.
        spdlog::error("{}: TLS files cannot be used, the previous certificate keeps serving: {}", listener_,
                      error.what());
        failed_ = now;
    }
}

void ListenerTls::reconfigure(ServerTls settings) {
    std::lock_guard lock(mutex_);
    if (settings == settings_) {
        return;
    }
    settings_ = std::move(settings);
    loaded_.clear();  // other files: the next refresh() loads them
    failed_.clear();
}

}  // namespace fluxrelay
