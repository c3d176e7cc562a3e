#include "common/http_headers.hpp"

#include <array>
#include <cctype>

namespace courier {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::array<std::string_view, 11> kNames = {"connection",
                                                              "keep-alive",
                                                              "proxy-connection",
                                                              "te",
                                                              "trailer",
                                                              "transfer-encoding",
                                                              "upgrade",
                                                              "proxy-authenticate",
                                                              "proxy-authorization",
                                                              "host",
                                                              "content-length"};
  for (auto n : kNames) {
    if (iequals(name, n)) return true;
  }
  return false;
}

namespace {

// True if `name` is one of the comma-separated tokens of a Connection header value.
bool listed_in(std::string_view list, std::string_view name) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    auto token = list.substr(0, comma);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
      token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (iequals(token, name)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

Headers end_to_end(const Headers& headers) {
  Headers out;
  out.reserve(headers.size());
  for (const auto& h : headers) {
    if (is_hop_by_hop(h.name)) continue;
    bool named = false;
    for (const auto& c : headers) {
      if (iequals(c.name, "connection") && listed_in(c.value, h.name)) named = true;
    }
    if (!named) out.push_back(h);
  }
  return out;
}

const Header* find_header(const Headers& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return &h;
  }
  return nullptr;
}

bool is_idempotent_method(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS" || method == "TRACE";
}

bool is_retry_safe(std::string_view method, const Headers& headers) {
  return is_idempotent_method(method) || find_header(headers, "Idempotency-Key") != nullptr;
}

}  // namespace courier
