// Shell-style glob matching for eventSources names/namespaces and GitHub branch patterns.
#include "filters/glob.hpp"

#include <cstddef>

namespace fluxrelay {

namespace {

// Length of the UTF-8 sequence starting at `pos`: the lead byte plus its continuation bytes.
// Counting continuation bytes (instead of trusting the lead byte) keeps invalid input in bounds.
std::size_t codePointLength(std::string_view text, std::size_t pos) {
    std::size_t end = pos + 1;
    while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) {
        ++end;
    }
    return end - pos;
}

}  // namespace

// Greedy matching that remembers only the last `*`: when a later literal fails, that star
// absorbs one more character and matching resumes after it. Earlier stars never need to be
// revisited (whatever they absorbed, the last star can absorb instead), so the cost is
// O(pattern * text) at worst, never exponential.
bool globMatch(std::string_view pattern, std::string_view text) {
    constexpr std::size_t kNone = std::string_view::npos;
    std::size_t p = 0;
    std::size_t t = 0;
    std::size_t starPattern = kNone;  // position just after the last `*` seen
    std::size_t starText = 0;         // where the text resumes if that star absorbs more

    while (t < text.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            starPattern = ++p;
            starText = t;
        } else if (p < pattern.size() && pattern[p] == '?') {
            // One character, not one byte, so branch names with non-ASCII letters glob as users expect.
            ++p;
            t += codePointLength(text, t);
        } else if (p < pattern.size() && pattern[p] == text[t]) {
            ++p;
            ++t;
        } else if (starPattern != kNone) {
            starText += codePointLength(text, starText);
            p = starPattern;
            t = starText;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') {
        ++p;
    }
    return p == pattern.size();
}

}  // namespace fluxrelay
