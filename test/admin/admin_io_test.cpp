// The admin listener's handler over a memory spool: what each endpoint answers.
#include "admin/admin.hpp"

#include <memory>
#include <string>

#include <doctest/doctest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "admin/telemetry.hpp"
#include "gateway/endpoints.hpp"

namespace fluxrelay {

namespace {

struct AdminFixture {
    std::unique_ptr<Storage> storage = makeMemoryStorage(100);
    Telemetry telemetry;
    ConfigPtr config = std::make_shared<const Config>();
    Admin admin{[this] { return config; }, *storage, telemetry, [] { return std::vector<TargetHealth>{}; }};

    HttpServerResponse send(boost::beast::http::verb method, std::string target) {
        HttpServerRequest request{method, target, 11};
        boost::asio::io_context io;
        auto answer = boost::asio::co_spawn(io, admin.handle(request), boost::asio::use_future);
        io.run();
        return answer.get();
    }

    HttpServerResponse get(std::string target) { return send(boost::beast::http::verb::get, std::move(target)); }

    // How many events /api/v1/events lists for `target`.
    std::size_t listed(std::string target) {
        const HttpServerResponse response = get(std::move(target));
        REQUIRE(response.result_int() == 200);
        return nlohmann::json::parse(response.body()).size();
    }
};

}  // namespace

TEST_CASE("admin: limit is a query parameter of its own; nolimit=1 is no limit") {
    AdminFixture fixture;
    for (int i = 0; i < 7; ++i) fixture.telemetry.onRejected("flux", 401, "signature", "bad signature");
    CHECK(fixture.listed("/api/v1/events") == 7);
    CHECK(fixture.listed("/api/v1/events?limit=3") == 3);
    CHECK(fixture.listed("/api/v1/events?nolimit=1") == 7);
    CHECK(fixture.listed("/api/v1/events?nolimit=1&limit=2") == 2);
    CHECK(fixture.listed("/api/v1/events?limit=%32") == 2);  // percent-encoded, as any client may send it
    // Not a whole positive number: the default.
    CHECK(fixture.listed("/api/v1/events?limit=2x") == 7);
    CHECK(fixture.listed("/api/v1/events?limit=0") == 7);
    CHECK(fixture.listed("/api/v1/events?limit=") == 7);
}

TEST_CASE("admin: health, readiness, and a clear 404 or 405 for anything else") {
    AdminFixture fixture;
    CHECK(fixture.get("/healthz").result_int() == 200);
    CHECK(fixture.get("/readyz?verbose").result_int() == 200);
    CHECK(fixture.get("/api/v1/targets").result_int() == 200);

    const HttpServerResponse missing = fixture.get("/api/v1/nothing?x=1");
    CHECK(missing.result_int() == 404);
    CHECK(missing.body().find("no admin endpoint at /api/v1/nothing") != std::string::npos);

    CHECK(fixture.send(boost::beast::http::verb::post, "/api/v1/deadletters").result_int() == 405);
    CHECK(fixture.send(boost::beast::http::verb::get, "/api/v1/deadletters/7/replay").result_int() == 405);
}

TEST_CASE("a request target is read as origin form: the path still encoded, query parameters decoded") {
    HttpServerRequest request{boost::beast::http::verb::get, "/flux/events%2Fx?a=1&b=two%20words&a=2", 11};
    CHECK(requestPath(request) == "/flux/events%2Fx");
    CHECK(queryParameter(request, "a") == "1");
    CHECK(queryParameter(request, "b") == "two words");
    CHECK_FALSE(queryParameter(request, "c").has_value());

    request.target("http://elsewhere/absolute-form");
    CHECK(requestPath(request).empty());
}

}  // namespace fluxrelay
