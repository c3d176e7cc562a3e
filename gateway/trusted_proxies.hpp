// The proxies whose forwarding headers (Forwarded, X-Forwarded-*, X-Real-IP) the gateway believes:
// addresses and CIDR blocks, IPv4 and IPv6, parsed once at start-up (gateway.trusted_proxies).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace courier::gateway {

class TrustedProxies {
 public:
  TrustedProxies() = default;  // trusts nobody

  // "10.0.0.0/8, 192.168.1.7, fd00::/8" (entries separated by commas, spaces around them
  // ignored; host bits under the mask are ignored too). Throws ConfigError naming `setting` on an
  // empty entry, an entry that is not an address, or a prefix out of range.
  static TrustedProxies parse(const std::string& setting, std::string_view value);

  bool empty() const { return blocks_.empty(); }
  // `peer` as the socket reports it ("10.1.2.3", "::1", "::ffff:10.1.2.3": an IPv4-mapped IPv6
  // address counts as its IPv4 address). False for anything that is not an address.
  bool contains(std::string_view peer) const;

 private:
  // Every block as IPv6 (IPv4 as ::ffff:a.b.c.d/96+n), so one comparison serves both families.
  struct Block {
    std::array<std::uint8_t, 16> bytes{};
    unsigned prefix = 0;  // bits of `bytes` that must match
  };
  std::vector<Block> blocks_;
};

}  // namespace courier::gateway
