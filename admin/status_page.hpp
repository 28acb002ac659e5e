// The status page: the HTML embedded at build time from admin/status_page.html, and the
// Content-Security-Policy it is served with.
#pragma once

#include <string>
#include <string_view>

namespace fluxrelay {

std::string_view statusPageHtml();

// A policy that allows the page's own inline <script> and <style> elements (by their SHA-256
// hashes), requests back to the admin listener, and nothing else.
const std::string& statusPageContentSecurityPolicy();

// The same policy for any HTML text: one hash per inline <script> and <style> element.
std::string contentSecurityPolicyFor(std::string_view html);

}  // namespace fluxrelay
