#include "common/http_headers.hpp"

#include <array>
#include <cctype>
#include <string>
#include <vector>

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

Headers end_to_end(Headers headers) {
  // The Connection values first (copied: erasing moves the strings they would point into).
  std::vector<std::string> connection;
  for (const auto& h : headers) {
    if (iequals(h.name, "connection")) connection.push_back(h.value);
  }
  std::erase_if(headers, [&](const Header& h) {
    if (is_hop_by_hop(h.name)) return true;
    for (const auto& list : connection) {
      if (listed_in(list, h.name)) return true;
    }
    return false;
  });
  return headers;
}

const Header* find_header(const Headers& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (iequals(h.name, name)) return &h;
  }
  return nullptr;
}

bool is_token(std::string_view s) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  if (s.empty()) return false;
  for (char c : s) {
    // ASCII letters and digits spelled out: std::isalnum would follow the locale.
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && kSymbols.find(c) == kSymbols.npos) return false;
  }
  return true;
}

bool is_field_value(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

namespace {

char loose(char c) {
  return c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

}  // namespace

bool loosely_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (loose(a[i]) != loose(b[i])) return false;
  }
  return true;
}

bool loosely_starts_with(std::string_view name, std::string_view prefix) {
  return name.size() >= prefix.size() && loosely_equal(name.substr(0, prefix.size()), prefix);
}

bool is_idempotent_method(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS" || method == "TRACE";
}

bool is_retry_safe(std::string_view method, const Headers& headers) {
  return is_idempotent_method(method) || find_header(headers, "Idempotency-Key") != nullptr;
}

}  // namespace courier
