#include "gateway/trusted_proxies.hpp"

#include <charconv>
#include <optional>

#include "common/asio.hpp"
#include "common/config.hpp"

namespace courier::gateway {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The address as 16 bytes, IPv4 mapped into IPv6 (RFC 4291 2.5.5.2); `v4` says which it was.
std::optional<std::array<std::uint8_t, 16>> as_v6(std::string_view text, bool* v4 = nullptr) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(std::string(text), ec);
  if (ec) return std::nullopt;
  if (v4) *v4 = address.is_v4();
  if (address.is_v4()) {
    return asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()).to_bytes();
  }
  // A scoped address (fe80::1%eth0) is the same address for this purpose.
  return address.to_v6().to_bytes();
}

bool same_prefix(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                 unsigned bits) {
  std::size_t i = 0;
  for (; bits >= 8; bits -= 8, ++i) {
    if (a[i] != b[i]) return false;
  }
  if (bits == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
  return (a[i] & mask) == (b[i] & mask);
}

}  // namespace

TrustedProxies TrustedProxies::parse(const std::string& setting, std::string_view value) {
  TrustedProxies out;
  if (trim(value).empty()) return out;
  while (true) {
    const auto comma = value.find(',');
    const auto entry = trim(value.substr(0, comma));
    const auto bad = [&](const std::string& why) {
      return ConfigError(setting + ": '" + std::string(entry) + "' " + why);
    };
    if (entry.empty()) throw ConfigError(setting + ": empty entry in the trusted proxy list");
    const auto slash = entry.find('/');
    bool v4 = false;
    const auto bytes = as_v6(entry.substr(0, slash), &v4);
    if (!bytes) throw bad("is not an IP address or CIDR block");
    const unsigned width = v4 ? 32 : 128;
    unsigned prefix = width;
    if (slash != std::string_view::npos) {
      const auto digits = entry.substr(slash + 1);
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
      if (digits.empty() || ec != std::errc{} || ptr != digits.data() + digits.size() ||
          prefix > width) {
        throw bad("has a prefix length that is not 0-" + std::to_string(width));
      }
    }
    out.blocks_.push_back({*bytes, v4 ? 96 + prefix : prefix});
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

bool TrustedProxies::contains(std::string_view peer) const {
  if (blocks_.empty()) return false;
  const auto bytes = as_v6(peer);
  if (!bytes) return false;
  for (const auto& b : blocks_) {
    if (same_prefix(*bytes, b.bytes, b.prefix)) return true;
  }
  return false;
}

}  // namespace courier::gateway
