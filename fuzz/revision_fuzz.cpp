// Fuzzes the GitHub target's reading of Flux revisions (providers/github): revision → commit sha,
// and the reason → status description text that goes out with it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/event.hpp"
#include "core/text.hpp"
#include "fuzz/check.hpp"
#include "providers/github.hpp"

namespace {

using namespace fluxrelay;

bool lowerHex(std::string_view text) {
    for (const char c : text) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

// Code points of valid UTF-8; 0 when the text is not valid UTF-8.
std::size_t codePoints(std::string_view text, bool& valid) {
    std::size_t count = 0;
    valid = true;
    while (!text.empty()) {
        const std::size_t length = utf8SequenceLength(text);
        if (length == 0) {
            valid = false;
            return 0;
        }
        text.remove_prefix(length);
        ++count;
    }
    return count;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    const CommitRef commit = parseRevision(text);
    FUZZ_CHECK(commit.ok() == commit.error.empty());
    if (commit.ok()) {
        // A commit is 40 hex digits, written lower-case, taken from the end of the revision.
        FUZZ_CHECK(commit.sha.size() == 40 && lowerHex(commit.sha));
        FUZZ_CHECK(asciiLowered(text).ends_with(commit.sha));
    } else {
        FUZZ_CHECK(commit.sha.empty());
    }

    // Through an event, as the provider reads it: the same answer, under the metadata's name.
    FluxEvent event;
    event.metadata["revision"] = std::string(text);
    const CommitRef viaEvent = commitOf(event);
    if (text.empty()) {
        FUZZ_CHECK(!viaEvent.ok());
    } else {
        FUZZ_CHECK(viaEvent.sha == commit.sha);
        FUZZ_CHECK(viaEvent.ok() == commit.ok());
    }

    // The reason as a status description: nothing lost by the split, bounded by GitHub's limit.
    std::string joined;
    for (const std::string& run : splitCamelCase(text)) {
        FUZZ_CHECK(!run.empty());
        joined += run;
    }
    FUZZ_CHECK(joined == text);
    const std::string description = statusDescription(text);
    bool textValid = false;
    codePoints(text, textValid);
    bool descriptionValid = false;
    const std::size_t descriptionChars = codePoints(description, descriptionValid);
    if (textValid) {
        FUZZ_CHECK(descriptionValid);
        FUZZ_CHECK(descriptionChars <= 140);
    }
    return 0;
}
