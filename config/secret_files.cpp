// Reading the files a configuration names, and judging who else may touch a secret one.
#include "config/secret_files.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>

#include "core/file.hpp"

namespace fluxrelay::config_reading {

namespace {

// Who else may touch a secret file. Refused: a file every user may write, since whoever rewrites
// it can forge events or capture tokens. Warned about: one others may read, or the group may
// write. Nothing is said for a file on a read-only file system: Kubernetes mounts Secrets
// read-only, 0644 by default and through symlinks (followed here), and that is the usual case.
struct SecretFileExposure {
    std::string refusal;
    std::string warning;
};

SecretFileExposure secretFileExposure(const std::string& path) {
    struct stat info {};
    struct statvfs volume {};
    if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return {};
    if (::statvfs(path.c_str(), &volume) == 0 && (volume.f_flag & ST_RDONLY) != 0) return {};
    const unsigned mode = info.st_mode & 07777;
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", mode);
    const std::string shown = " (mode " + std::string(octal) + ")";
    if ((mode & S_IWOTH) != 0) {
        return {.refusal = "is writable by every user" + shown + ": anyone on this host could replace it; chmod o-w",
                .warning = {}};
    }
    if ((mode & S_IWGRP) != 0) {
        return {.refusal = {},
                .warning = "is writable by its group" + shown + "; chmod g-w unless that group is trusted"};
    }
    if ((mode & S_IROTH) != 0) {
        return {.refusal = {}, .warning = "is readable by every user" + shown + "; chmod 600 (or o-r)"};
    }
    return {};
}

void trimSecret(std::string& secret, SecretTrim trim) {
    if (trim == SecretTrim::trailingWhitespace) {
        while (!secret.empty() && std::isspace(static_cast<unsigned char>(secret.back()))) secret.pop_back();
        return;
    }
    if (secret.ends_with("\r\n")) {
        secret.resize(secret.size() - 2);
    } else if (secret.ends_with('\n')) {
        secret.pop_back();
    }
}

// A file holding a secret: refused or warned about by who else may write or read it.
void checkSecretFile(Reader& reader, const Entry& entry, std::string_view key, const std::string& path) {
    const SecretFileExposure exposure = secretFileExposure(path);
    if (!exposure.refusal.empty())
        reader.error(entry.key.Mark(), std::string(key) + " " + inQuotes(path) + " " + exposure.refusal);
    if (!exposure.warning.empty())
        reader.warning(entry.key.Mark(), std::string(key) + " " + inQuotes(path) + " " + exposure.warning);
}

std::string cannotRead(std::string_view key, const std::string& path, const std::string& why) {
    return "cannot read " + std::string(key) + " " + inQuotes(path) + ": " + why;
}

}  // namespace

std::optional<std::string> readableFile(Reader& reader, const Fields& fields, std::string_view key) {
    std::optional<std::string> path = reader.string(fields, key);
    if (!path) return std::nullopt;
    if (path->empty()) {
        reader.error(valueMark(*fields.find(key)), inQuotes(key) + " must not be empty");
        return std::nullopt;
    }
    const std::string resolved = reader.resolve(*path);
    if (reader.scope() == Reader::Scope::textOnly) return resolved;
    if (const FileContent file = readWholeFile(resolved); !file.ok()) {
        reader.error(fields.find(key)->key.Mark(), cannotRead(key, resolved, file.error));
    } else if (key == "keyFile") {
        checkSecretFile(reader, *fields.find(key), key, resolved);
    }
    return resolved;
}

std::string readSecret(Reader& reader, const Fields& fields, std::string_view inlineKey, std::string_view fileKey,
                       SecretTrim trim) {
    const Entry* inlineEntry = fields.find(inlineKey);
    const Entry* fileEntry = fields.find(fileKey);
    if (inlineEntry != nullptr && fileEntry != nullptr) {
        const Entry* later = inlineEntry->key.Mark().pos > fileEntry->key.Mark().pos ? inlineEntry : fileEntry;
        reader.error(later->key.Mark(), inQuotes(inlineKey) + " and " + inQuotes(fileKey) + " are mutually exclusive");
        return {};
    }
    if (inlineEntry != nullptr) {
        std::optional<std::string> value = reader.string(fields, inlineKey);
        if (value && value->empty()) reader.error(valueMark(*inlineEntry), inQuotes(inlineKey) + " must not be empty");
        return value.value_or("");
    }
    if (fileEntry == nullptr) return {};
    std::optional<std::string> path = reader.string(fields, fileKey);
    if (!path) return {};
    const std::string resolved = reader.resolve(*path);
    // Not empty, so that the checks of who needs a secret see one.
    if (reader.scope() == Reader::Scope::textOnly) return "(not read)";
    FileContent file = readWholeFile(resolved);
    if (!file.ok()) {
        reader.error(fileEntry->key.Mark(), cannotRead(fileKey, resolved, file.error));
        return {};
    }
    checkSecretFile(reader, *fileEntry, fileKey, resolved);
    trimSecret(file.bytes, trim);
    if (file.bytes.empty())
        reader.error(fileEntry->key.Mark(), std::string(fileKey) + " " + inQuotes(resolved) + " is empty");
    return std::move(file.bytes);
}

}  // namespace fluxrelay::config_reading
