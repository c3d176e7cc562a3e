#include "broker/zap_authenticator.hpp"

#include <gtest/gtest.h>

#include <random>

namespace courier::broker {
namespace {

using protocol::Frames;

Frames frames_of(std::initializer_list<std::string> parts) {
  Frames out;
  for (const auto& p : parts) out.emplace_back(p.data(), p.size());
  return out;
}

std::string raw(const std::string& z85) { return *curve::decode(z85); }

class ZapAuthenticatorTest : public ::testing::Test {
 protected:
  ZapAuthenticatorTest() {
    zap_.allow(kGatewayDomain, {{gateway_.public_key, "gw-1"}});
    zap_.allow(kWorkerDomain, {{worker_.public_key, "wk-1"}});
  }
  Frames ask(const std::string& domain, const std::string& key,
             const std::string& mechanism = "CURVE") {
    return zap_.handle(frames_of({"1.0", "req-7", domain, "10.0.0.9", "", mechanism, raw(key)}),
                       now_);
  }
  static std::string at(const Frames& f, std::size_t i) {
    return i < f.size() ? std::string(f[i].to_string_view()) : "<none>";
  }

  curve::KeyPair gateway_ = curve::generate();
  curve::KeyPair worker_ = curve::generate();
  ZapAuthenticator zap_;
  Clock::time_point now_{};
};

TEST_F(ZapAuthenticatorTest, AdmitsAListedKeyWithItsNameAsUserId) {
  const auto r = ask(kGatewayDomain, gateway_.public_key);
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(at(r, 0), "1.0");
  EXPECT_EQ(at(r, 1), "req-7");
  EXPECT_EQ(at(r, 2), "200");
  EXPECT_EQ(at(r, 4), "gw-1");
  EXPECT_EQ(zap_.admitted(kGatewayDomain), 1u);
  EXPECT_EQ(zap_.denied(kGatewayDomain), 0u);
}

TEST_F(ZapAuthenticatorTest, DeniesAnUnlistedKeyAndCountsIt) {
  const auto r = ask(kGatewayDomain, curve::generate().public_key);
  EXPECT_EQ(at(r, 1), "req-7");
  EXPECT_EQ(at(r, 2), "400");
  EXPECT_EQ(at(r, 4), "");
  EXPECT_EQ(zap_.denied(kGatewayDomain), 1u);
}

TEST_F(ZapAuthenticatorTest, AKeyIsAdmittedOnlyOnItsOwnSocket) {
  EXPECT_EQ(at(ask(kWorkerDomain, gateway_.public_key), 2), "400");
  EXPECT_EQ(at(ask(kGatewayDomain, worker_.public_key), 2), "400");
  EXPECT_EQ(at(ask(kWorkerDomain, worker_.public_key), 2), "200");
  EXPECT_EQ(zap_.denied(kWorkerDomain), 1u);
  EXPECT_EQ(zap_.denied(kGatewayDomain), 1u);
}

TEST_F(ZapAuthenticatorTest, DeniesOtherMechanismsAndUnknownDomains) {
  EXPECT_EQ(at(zap_.handle(frames_of({"1.0", "1", kGatewayDomain, "a", "", "NULL"}), now_), 2),
            "400");
  EXPECT_EQ(
      at(zap_.handle(frames_of({"1.0", "1", kGatewayDomain, "a", "", "PLAIN", "u", "p"}), now_), 2),
      "400");
  EXPECT_EQ(at(ask("elsewhere", gateway_.public_key), 2), "400");
  EXPECT_EQ(zap_.denied(kGatewayDomain), 2u);
}

TEST_F(ZapAuthenticatorTest, MalformedRequestsGet400OrNothingNeverAnException) {
  EXPECT_TRUE(zap_.handle({}, now_).empty());
  EXPECT_TRUE(zap_.handle(frames_of({"1.0"}), now_).empty());
  EXPECT_EQ(at(zap_.handle(frames_of({"2.0", "id", kGatewayDomain, "a", "", "CURVE",
                                      raw(gateway_.public_key)}),
                           now_),
               2),
            "400");
  EXPECT_EQ(at(zap_.handle(frames_of({"1.0", "id", kGatewayDomain}), now_), 2), "400");
  // A credential of the wrong size, or extra frames.
  EXPECT_EQ(
      at(zap_.handle(frames_of({"1.0", "id", kGatewayDomain, "a", "", "CURVE", "short"}), now_), 2),
      "400");
  EXPECT_EQ(at(zap_.handle(frames_of({"1.0", "id", kGatewayDomain, "a", "", "CURVE",
                                      raw(gateway_.public_key), "extra"}),
                           now_),
               2),
            "400");
  EXPECT_GE(zap_.malformed(), 3u);
  EXPECT_EQ(zap_.admitted(kGatewayDomain), 0u);
}

TEST_F(ZapAuthenticatorTest, RandomFramesNeverThrowAndNeverAdmit) {
  std::mt19937 rng(12);
  for (int i = 0; i < 5'000; ++i) {
    Frames f;
    const int n = static_cast<int>(rng() % 9);
    for (int k = 0; k < n; ++k) {
      std::string s(rng() % 40, '\0');
      for (auto& c : s) c = static_cast<char>(rng());
      if (k == 0 && rng() % 2) s = "1.0";
      if (k == 2 && rng() % 2) s = kGatewayDomain;
      if (k == 5 && rng() % 2) s = "CURVE";
      f.emplace_back(s.data(), s.size());
    }
    const auto r = zap_.handle(f, now_);
    if (!r.empty()) {
      EXPECT_NE(at(r, 2), "200");
    }
    now_ += std::chrono::milliseconds(1);
  }
  EXPECT_EQ(zap_.admitted(kGatewayDomain), 0u);
}

}  // namespace
}  // namespace courier::broker
