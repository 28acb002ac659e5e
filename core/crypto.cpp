// Hashes, HMACs, hex, base64 and randomness on top of OpenSSL 3's EVP interfaces.
#include "core/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <utility>

namespace fluxrelay {

namespace {

const char* digestName(HashAlgorithm algorithm) {
    switch (algorithm) {
        case HashAlgorithm::sha1:
            return "SHA1";
        case HashAlgorithm::sha256:
            return "SHA256";
        case HashAlgorithm::sha384:
            return "SHA384";
        case HashAlgorithm::sha512:
            return "SHA512";
    }
    return "SHA256";
}

// OpenSSL wants a non-null pointer even for zero bytes.
const unsigned char* bytesOf(std::string_view data) {
    static const unsigned char empty = 0;
    return data.empty() ? &empty : reinterpret_cast<const unsigned char*>(data.data());
}

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string hmac(HashAlgorithm algorithm, std::string_view key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    std::size_t length = 0;
    // EVP_Q_mac is OpenSSL 3's one-shot MAC; HMAC_CTX and friends are deprecated.
    if (EVP_Q_mac(nullptr, "HMAC", nullptr, digestName(algorithm), nullptr, bytesOf(key), key.size(), bytesOf(data),
                  data.size(), out, sizeof out, &length) == nullptr) {
        // Only a broken OpenSSL installation gets here; no input can cause it.
        throw std::runtime_error("OpenSSL HMAC failed");
    }
    return std::string(reinterpret_cast<const char*>(out), length);
}

std::string sha256(std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    if (EVP_Digest(bytesOf(data), data.size(), out, &length, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("OpenSSL SHA-256 failed");
    }
    return std::string(reinterpret_cast<const char*>(out), length);
}

std::string toHex(std::string_view bytes) {
    static constexpr char kHexDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out.push_back(kHexDigits[c >> 4]);
        out.push_back(kHexDigits[c & 0x0f]);
    }
    return out;
}

bool fromHex(std::string_view hex, std::string& out) {
    if (hex.size() % 2 != 0) return false;
    std::string bytes;
    bytes.reserve(hex.size() / 2);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        const int high = hexValue(hex[i]);
        const int low = hexValue(hex[i + 1]);
        if (high < 0 || low < 0) return false;
        bytes.push_back(static_cast<char>((high << 4) | low));
    }
    out = std::move(bytes);
    return true;
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
    // Lengths are not secret (an HMAC's length follows from its algorithm); contents are.
    if (a.size() != b.size()) return false;
    if (a.empty()) return true;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool secretEquals(std::string_view given, std::string_view expected) {
    return constantTimeEquals(sha256(given), sha256(expected));
}

std::string randomBytes(std::size_t count) {
    std::string out(count, '\0');
    std::size_t done = 0;
    while (done < count) {
        const std::size_t chunk = std::min<std::size_t>(count - done, INT_MAX);
        if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data() + done), static_cast<int>(chunk)) != 1) {
            // Without entropy no id or token we hand out would be safe; never fall back.
            throw std::runtime_error("OpenSSL RAND_bytes failed");
        }
        done += chunk;
    }
    return out;
}

std::string base64Encode(std::string_view bytes) {
    std::string out;
    // EVP_EncodeBlock takes an int length, so long inputs go in chunks of whole 3-byte groups.
    constexpr std::size_t kChunkSize = 3 * 16 * 1024;
    for (std::size_t offset = 0; offset < bytes.size(); offset += kChunkSize) {
        const std::string_view chunk = bytes.substr(offset, kChunkSize);
        const std::size_t start = out.size();
        out.resize(start + 4 * ((chunk.size() + 2) / 3) + 1);
        const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + start), bytesOf(chunk),
                                            static_cast<int>(chunk.size()));
        out.resize(start + static_cast<std::size_t>(written));
    }
    return out;
}

}  // namespace fluxrelay
