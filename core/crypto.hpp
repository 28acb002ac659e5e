// Hashes, HMACs and constant-time comparison (OpenSSL).
#pragma once

#include <string>
#include <string_view>

namespace fluxrelay {

enum class HashAlgorithm { sha1, sha256, sha384, sha512 };

// Raw digest bytes.
std::string hmac(HashAlgorithm algorithm, std::string_view key, std::string_view data);
std::string sha256(std::string_view data);

std::string toHex(std::string_view bytes);
// Lower- or upper-case hex to bytes; false on odd length or a non-hex character.
bool fromHex(std::string_view hex, std::string& out);

// Compares without an early exit, so timing reveals nothing but the lengths.
bool constantTimeEquals(std::string_view a, std::string_view b);
// For a secret whose length is secret too (tokens, passwords, header values): compares digests
// in constant time, so neither the contents nor the length of `expected` leak.
bool secretEquals(std::string_view given, std::string_view expected);

// Cryptographically random bytes.
std::string randomBytes(std::size_t count);

std::string base64Encode(std::string_view bytes);

}  // namespace fluxrelay
