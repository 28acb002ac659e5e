// Unit tests for core/crypto: digests against published vectors, hex, comparison, base64.
#include "core/crypto.hpp"

#include <doctest/doctest.h>

using namespace fluxrelay;

TEST_CASE("sha256 matches the FIPS 180-2 vectors") {
    CHECK(toHex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(toHex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("hmac matches the RFC 4231 test case 2") {
    const std::string key = "Jefe";
    const std::string data = "what do ya want for nothing?";
    CHECK(toHex(hmac(HashAlgorithm::sha256, key, data)) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CHECK(toHex(hmac(HashAlgorithm::sha384, key, data)) ==
          "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649");
    CHECK(toHex(hmac(HashAlgorithm::sha512, key, data)) ==
          "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a"
          "6b4b"
          "636e070a38bce737");
    // RFC 2202 test case 2.
    CHECK(toHex(hmac(HashAlgorithm::sha1, key, data)) == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

TEST_CASE("hmac accepts an empty key and empty data") {
    CHECK(toHex(hmac(HashAlgorithm::sha256, "", "")) ==
          "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST_CASE("hex round trip") {
    const std::string bytes("\x00\x01\xab\xff", 4);
    CHECK(toHex(bytes) == "0001abff");
    std::string out;
    REQUIRE(fromHex("0001ABff", out));
    CHECK(out == bytes);
    REQUIRE(fromHex("", out));
    CHECK(out.empty());
}

TEST_CASE("fromHex rejects odd lengths and non-hex characters without touching out") {
    std::string out = "kept";
    CHECK_FALSE(fromHex("abc", out));
    CHECK_FALSE(fromHex("zz", out));
    CHECK_FALSE(fromHex("0g", out));
    CHECK_FALSE(fromHex(" 0", out));
    CHECK(out == "kept");
}

TEST_CASE("secretEquals compares whole values of any length") {
    CHECK(secretEquals("Bearer token", "Bearer token"));
    CHECK_FALSE(secretEquals("Bearer token", "Bearer tokeN"));
    CHECK_FALSE(secretEquals("Bearer token", "Bearer token "));
    CHECK_FALSE(secretEquals("Bearer", "Bearer token"));
    CHECK_FALSE(secretEquals("", "x"));
}

TEST_CASE("constantTimeEquals") {
    CHECK(constantTimeEquals("", ""));
    CHECK(constantTimeEquals("secret", "secret"));
    CHECK_FALSE(constantTimeEquals("secret", "secreT"));
    CHECK_FALSE(constantTimeEquals("secret", "secret2"));
    CHECK_FALSE(constantTimeEquals("", "x"));
}

TEST_CASE("randomBytes gives the requested length and differs between calls") {
    CHECK(randomBytes(0).empty());
    const std::string a = randomBytes(32);
    const std::string b = randomBytes(32);
    CHECK(a.size() == 32);
    CHECK(a != b);
}

TEST_CASE("base64Encode matches RFC 4648 section 10") {
    CHECK(base64Encode("") == "");
    CHECK(base64Encode("f") == "Zg==");
    CHECK(base64Encode("fo") == "Zm8=");
    CHECK(base64Encode("foo") == "Zm9v");
    CHECK(base64Encode("foob") == "Zm9vYg==");
    CHECK(base64Encode("fooba") == "Zm9vYmE=");
    CHECK(base64Encode("foobar") == "Zm9vYmFy");
    CHECK(base64Encode(std::string("\xff\xfe", 2)) == "//4=");
}

TEST_CASE("base64Encode of a long input is one unbroken string") {
    const std::string input(100'000, 'a');
    const std::string encoded = base64Encode(input);
    CHECK(encoded.size() == 4 * ((input.size() + 2) / 3));
    CHECK(encoded.find('\n') == std::string::npos);
    CHECK(encoded.substr(0, 8) == "YWFhYWFh");
}
