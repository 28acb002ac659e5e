// Fuzzes the ingest listener's request path without a socket: the input is the bytes a client
// sends on one connection, read by Beast's request_parser with the server's header and body
// limits (gateway/server.cpp), each request answered by the ingest handler (gateway/ingest.cpp)
// over an in-memory spool, keep-alive requests one after the other.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/system/system_error.hpp>
#include <nlohmann/json.hpp>

#include "config/loader.hpp"
#include "core/observer.hpp"
#include "fuzz/check.hpp"
#include "gateway/ingest.hpp"
#include "gateway/server.hpp"
#include "storage/storage.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace fluxrelay;

// Unsigned sources, so that the fuzzer gets past authentication to the parsers and routes;
// maxBodyBytes small enough for the 413 path to be reachable with short inputs.
constexpr std::string_view kConfig = R"yaml(
server:
  listen: 127.0.0.1:0
  maxBodyBytes: 16384
storage:
  path: ./unused
sources:
  - {name: flux, type: flux, path: /flux/events}
  - {name: flux-signed, type: flux, path: /flux/signed, hmacKey: fuzz-key}
  - {name: github, type: github, path: /github/webhook, events: [ping, push]}
  - {name: github-any, type: github, path: /github/any}
targets:
  - {name: alertmanager, type: alertmanager, address: "http://127.0.0.1:9/api/v2/alerts", resolve: true}
  - {name: status, type: github, address: "https://github.com/example/apps", token: fuzz-token}
  - name: receiver
    type: flux-receiver
    address: http://127.0.0.1:9
    receiver: {name: github-webhook, namespace: flux-system}
    token: fuzz-token
routes:
  - name: errors
    source: flux
    eventSeverity: error
    eventSources:
      - {kind: Kustomization, name: "*"}
      - {kind: HelmRelease, name: "*", namespace: "apps-*"}
    exclusionList: ["dial.*tcp.*timeout"]
    dedup: {mode: normalized, window: 5m}
    targets: [alertmanager, status]
  - name: matched
    source: flux
    inclusionList: ["fail", "succeeded"]
    match: {reason: "^(Reconciliation|Health)",
                           metadata : {
cluster:
    "^home$"
}
}
    eventMetadata: {cluster: home}
    targets: [alertmanager]
  - {name: push, source: github, events: [push], branches: [main, "release-*", refs/tags/v*], debounce: 10s, targets: [receiver]}
  - {name: any-push, source: github-any, events: [push], targets: [receiver]}
)yaml";

const ConfigPtr& config() {
    static const ConfigPtr loaded = loadConfigText(std::string(kConfig), "fuzz.yaml");
    return loaded;
}

// A SyncReadStream over the input, handing it out `chunk` bytes at a time as TCP segments would.
class InputStream {
public:
    InputStream(std::string_view data, std::size_t chunk) : data_(data), chunk_(chunk) {}

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers, beast::error_code& error) {
        if (data_.empty()) {
            error = asio::error::eof;
            return 0;
        }
        error = {};
        const std::size_t n = asio::buffer_copy(buffers, asio::buffer(data_.data(), std::min(chunk_, data_.size())));
        data_.remove_prefix(n);
        return n;
    }

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers) {
        beast::error_code error;
        const std::size_t n = read_some(buffers, error);
        if (error) throw boost::system::system_error(error);
        return n;
    }

private:
    std::string_view data_;
    std::size_t chunk_;
};

bool expectedStatus(unsigned status) {
    for (const unsigned allowed : {200U, 202U, 400U, 401U, 404U, 405U, 413U, 415U, 429U, 503U}) {
        if (status == allowed) return true;
    }
    return false;
}

// One connection's worth of requests; returns the status of each answer, and 0 for a request
// Beast refused to read (the server then answers 400, 413 or 431 itself, or just closes).
std::vector<unsigned> serveConnection(std::string_view data, std::size_t chunk) {
    asio::io_context io;
    const std::unique_ptr<Storage> storage = makeMemoryStorage(1000);
    NullObserver observer;
    Ingest ingest([] { return config(); }, *storage, observer);
    // As app/relay.cpp builds the ingest listener's limits.
    const ServerLimits limits{.maxBodyBytes = config()->server.maxBodyBytes};

    InputStream stream(data, chunk);
    beast::flat_buffer buffer;
    std::vector<unsigned> statuses;
    // A pipelining client could send many; a few show that requests do not bleed into each other.
    for (int i = 0; i < 8; ++i) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(limits.maxHeaderBytes));
        parser.body_limit(limits.maxBodyBytes);
        beast::error_code error;
        http::read_header(stream, buffer, parser, error);
        if (!error && !parser.is_done()) http::read(stream, buffer, parser, error);
        if (error) {
            if (error != http::error::end_of_stream) statuses.push_back(0);
            break;
        }

        HttpServerRequest request = parser.release();
        std::optional<HttpServerResponse> answer;
        asio::co_spawn(io, ingest.handle(request), [&answer](std::exception_ptr thrown, HttpServerResponse response) {
            // Untrusted input is answered with a 4xx, never an exception (STYLE.md §7).
            if (thrown) std::rethrow_exception(thrown);
            answer = std::move(response);
        });
        io.run();
        io.restart();
        FUZZ_CHECK(answer.has_value());

        HttpServerResponse& response = *answer;
        const unsigned status = response.result_int();
        FUZZ_CHECK(expectedStatus(status));
        FUZZ_CHECK(response[http::field::content_type] == "application/json");
        FUZZ_CHECK(nlohmann::json::accept(response.body()));
        // The rest of what serve() does with an answer: it must serialize.
        response.version(request.version());
        response.keep_alive(request.keep_alive());
        response.prepare_payload();
        std::ostringstream wire;
        wire << response;
        FUZZ_CHECK(!wire.str().empty());

        statuses.push_back(status);
        if (!request.keep_alive()) break;
    }
    return statuses;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);
    config();  // a config error here is the fuzzer's bug: fail at once
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const std::vector<unsigned> whole = serveConnection(bytes, bytes.size() + 1);
    // However the bytes are split into segments, the answers are the same.
    const std::vector<unsigned> split = serveConnection(bytes, 1 + size % 61);
    FUZZ_CHECK(whole == split);
    return 0;
}
