// Dead-letter commands talk to the admin listener of the relay in service, so they work the same
// whatever storage it runs on and never open its database behind its back.
#include "app/deadletters.hpp"

#include <cstdio>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "config/loader.hpp"
#include "providers/http_client.hpp"

namespace fluxrelay {
namespace {

constexpr Duration kTimeout = std::chrono::seconds(10);

// An admin listener with TLS is trusted by the certificate in its own certFile, not by a CA: it
// is reached at its listen address, which that certificate need not name. The file is this
// relay's, so the pin is as strong as a host name check.
std::shared_ptr<boost::asio::ssl::context> adminTlsContext(const ServerTls& tls, std::string& error) {
    namespace ssl = boost::asio::ssl;
    auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
    boost::system::error_code loadError;
    context->load_verify_file(tls.certFile, loadError);
    if (loadError) {
        error = "admin.tls.certFile " + tls.certFile + ": " + loadError.message();
        return nullptr;
    }
    X509_STORE_set_flags(SSL_CTX_get_cert_store(context->native_handle()), X509_V_FLAG_PARTIAL_CHAIN);
    context->set_verify_mode(ssl::verify_peer);
    return context;
}

// One blocking request to the admin API: this is a command-line tool, not an io thread.
HttpResult call(const Config& config, std::string method, const std::string& path) {
    // A wildcard listen address is reached over loopback.
    std::string host = config.admin.listen.host;
    if (host == "0.0.0.0") {
        host = "127.0.0.1";
    } else if (host == "::") {
        host = "::1";
    }
    std::shared_ptr<boost::asio::ssl::context> tls;
    if (config.admin.tls) {
        if (!config.admin.tls->clientCAFile.empty()) {
            return HttpResult{.error =
                                  "admin.tls.clientCAFile is set and this command has no client certificate; call "
                                  "the admin API with one instead (e.g. curl --cert)"};
        }
        std::string error;
        if (tls = adminTlsContext(*config.admin.tls, error); !tls) {
            return HttpResult{.error = std::move(error)};
        }
    }
    HttpRequest request{
        .method = std::move(method),
        .url = Url{.scheme = tls ? "https" : "http", .host = host, .port = config.admin.listen.port, .target = path}};
    if (!config.admin.token.empty()) {
        request.headers.emplace_back("Authorization", "Bearer " + config.admin.token);
    }
    boost::asio::io_context io;
    HttpConnection connection(io.get_executor(), tls, false);
    auto result = boost::asio::co_spawn(io, connection.send(request, kTimeout), boost::asio::use_future);
    io.run();
    return result.get();
}

// The JSON body of a 2xx answer, or nullopt after printing why there is none.
std::optional<nlohmann::json> jsonBody(const HttpResult& result) {
    if (!result.response) {
        std::fprintf(stderr, "cannot reach the relay's admin listener: %s\n", result.error.c_str());
        return std::nullopt;
    }
    auto body = nlohmann::json::parse(result.response->body, nullptr, false);
    if (result.response->status / 100 != 2 || body.is_discarded()) {
        const std::string error =
            body.is_object() && body.contains("error") ? body["error"].get<std::string>() : result.response->body;
        std::fprintf(stderr, "admin API answered %d: %s\n", result.response->status, error.c_str());
        return std::nullopt;
    }
    return body;
}

int list(const Config& config) {
    auto letters = jsonBody(call(config, "GET", "/api/v1/deadletters"));
    if (!letters) {
        return 1;
    }
    std::printf("%-8s %-20s %-20s %-8s %-20s %s\n", "ID", "TARGET", "ROUTE", "ATTEMPTS", "DEAD AT", "REASON");
    for (const auto& letter : *letters) {
        std::printf("%-8llu %-20s %-20s %-8d %-20s %s\n", letter.value("id", 0ULL), letter.value("target", "").c_str(),
                    letter.value("route", "").c_str(), letter.value("attempts", 0), letter.value("deadAt", "").c_str(),
                    letter.value("reason", "").c_str());
    }
    return 0;
}

int replay(const Config& config, std::vector<std::string> ids, bool all) {
    if (all) {
        auto letters = jsonBody(call(config, "GET", "/api/v1/deadletters"));
        if (!letters) {
            return 1;
        }
        for (const auto& letter : *letters) {
            ids.push_back(std::to_string(letter.value("id", 0ULL)));
        }
    }
    if (ids.empty()) {
        std::fputs(all ? "no dead letters\n" : "replay: give dead letter IDs or --all\n", stderr);
        return all ? 0 : 2;
    }
    int failures = 0;
    for (const auto& id : ids) {
        if (jsonBody(call(config, "POST", "/api/v1/deadletters/" + id + "/replay"))) {
            std::printf("replaying %s\n", id.c_str());
        } else {
            ++failures;
        }
    }
    return failures == 0 ? 0 : 1;
}

}  // namespace

int runDeadLetters(const std::string& configPath, const std::vector<std::string>& args, bool all) {
    ConfigPtr config;
    try {
        config = loadConfigFile(configPath);
    } catch (const ConfigError& error) {
        for (const auto& diagnostic : error.diagnostics()) {
            std::fprintf(stderr, "%s\n", diagnostic.toString().c_str());
        }
        return 1;
    }
    if (args.empty() || (args[0] != "list" && args[0] != "replay")) {
        std::fputs("deadletters: say list or replay\n", stderr);
        return 2;
    }
    if (args[0] == "list") {
        return list(*config);
    }
    return replay(*config, {args.begin() + 1, args.end()}, all);
}

}  // namespace fluxrelay
