// The trusted-proxy list: addresses and CIDR blocks of both families, IPv4-mapped peers, and the
// configuration errors that stop start-up.
#include "gateway/trusted_proxies.hpp"

#include <gtest/gtest.h>

#include "common/config.hpp"

namespace courier::gateway {
namespace {

TEST(TrustedProxies, EmptyTrustsNobody) {
  const auto t = TrustedProxies::parse("--trusted-proxies", "  ");
  EXPECT_TRUE(t.empty());
  EXPECT_FALSE(t.contains("127.0.0.1"));
  EXPECT_FALSE(TrustedProxies{}.contains("::1"));
}

TEST(TrustedProxies, MatchesAddressesAndBlocksOfBothFamilies) {
  const auto t =
      TrustedProxies::parse("x", "10.0.0.0/8, 192.168.1.7 ,172.16.0.0/12,fd00::/8, 2001:db8::1");
  for (const std::string_view in :
       {"10.0.0.1", "10.255.255.255", "192.168.1.7", "172.31.0.9", "fd12::3", "2001:db8::1"}) {
    EXPECT_TRUE(t.contains(in)) << in;
  }
  for (const std::string_view out : {"11.0.0.1", "192.168.1.8", "172.32.0.1", "fe80::1",
                                     "2001:db8::2", "::1", "127.0.0.1", "", "not-an-ip"}) {
    EXPECT_FALSE(t.contains(out)) << out;
  }
}

TEST(TrustedProxies, AnIpv4MappedPeerCountsAsItsIpv4Address) {
  const auto t = TrustedProxies::parse("x", "10.1.2.0/24");
  EXPECT_TRUE(t.contains("::ffff:10.1.2.3"));
  EXPECT_FALSE(t.contains("::ffff:10.1.3.3"));
  // An IPv4 block matches nothing of IPv6 that is not a mapped IPv4 address.
  EXPECT_FALSE(t.contains("::a01:203"));
}

TEST(TrustedProxies, HostBitsUnderTheMaskAreIgnoredAndZeroPrefixTrustsAFamily) {
  EXPECT_TRUE(TrustedProxies::parse("x", "10.1.2.3/8").contains("10.200.0.1"));
  const auto all_v4 = TrustedProxies::parse("x", "0.0.0.0/0");
  EXPECT_TRUE(all_v4.contains("203.0.113.9"));
  EXPECT_FALSE(all_v4.contains("2001:db8::1"));
  EXPECT_TRUE(TrustedProxies::parse("x", "::/0").contains("2001:db8::1"));
}

TEST(TrustedProxies, BadEntriesStopStartUpNamingTheSetting) {
  for (const std::string bad :
       {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "10.0.0", "host.example",
        "10.0.0.1,,10.0.0.2", "10.0.0.1,", "*", "10.0.0.0/-1", "10.0.0.0/8/8"}) {
    try {
      (void)TrustedProxies::parse("--trusted-proxies (gateway.trusted_proxies)", bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--trusted-proxies"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace courier::gateway
