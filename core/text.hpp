// Small text helpers shared by parsers and providers: ASCII case folding, "did you mean",
// UTF-8 validity.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace fluxrelay {

char asciiLower(char c);
std::string asciiLowered(std::string_view text);
// ASCII case-insensitive equality, as HTTP header names and GitHub event names want it.
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// The candidate a misspelt `name` most likely meant: equal but for case, else the nearest within
// two edits (insert, delete, replace or swap two neighbours; case ignored), and never more edits
// than a third of the name's length, so short names are not "corrected" into unrelated ones.
std::optional<std::string_view> closestMatch(std::string_view name, std::span<const std::string_view> candidates);

// Length of the well-formed UTF-8 sequence at text[0] (no overlong forms, surrogates or values
// past U+10FFFF, as Go's utf8.ValidString judges it), or 0 when the bytes there are not one.
std::size_t utf8SequenceLength(std::string_view text);
// Whether the whole text is well-formed UTF-8 in that sense.
bool isValidUtf8(std::string_view text);

}  // namespace fluxrelay
