// Bearer JWT (HS256 via libjwt) and API key checks, with the clock passed in.
#include "gateway/auth.hpp"

#include <gtest/gtest.h>
#include <jwt.h>

#include <cstdlib>
#include <memory>

#include "common/config.hpp"

namespace courier::gateway {
namespace {

using namespace std::chrono_literals;

const std::string kSecret = "0123456789abcdef0123456789abcdef";  // 32 bytes
constexpr long kNow = 1'800'000'000;

std::chrono::system_clock::time_point at(long unix_seconds) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
}

struct Claims {
  std::optional<std::string> sub = "alice";
  std::optional<long> exp = kNow + 60;
  std::optional<long> nbf = std::nullopt;
  std::optional<long> iat = std::nullopt;
  std::optional<std::string> iss = std::nullopt;
  std::optional<std::string> json = std::nullopt;  // more grants as a JSON object, e.g. aud
};

// Tokens made by libjwt itself: the tests never assemble or sign a token by hand.
std::string make_token(const Claims& c, const std::string& secret = kSecret,
                       jwt_alg_t alg = JWT_ALG_HS256) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) throw std::runtime_error("jwt_new");
  std::unique_ptr<jwt_t, void (*)(jwt_t*)> token(raw, jwt_free);
  if (c.sub) jwt_add_grant(raw, "sub", c.sub->c_str());
  if (c.exp) jwt_add_grant_int(raw, "exp", *c.exp);
  if (c.nbf) jwt_add_grant_int(raw, "nbf", *c.nbf);
  if (c.iat) jwt_add_grant_int(raw, "iat", *c.iat);
  if (c.iss) jwt_add_grant(raw, "iss", c.iss->c_str());
  if (c.json && jwt_add_grants_json(raw, c.json->c_str()) != 0) {
    throw std::runtime_error("jwt_add_grants_json");
  }
  const auto* key = reinterpret_cast<const unsigned char*>(secret.data());
  if (jwt_set_alg(raw, alg, alg == JWT_ALG_NONE ? nullptr : key,
                  alg == JWT_ALG_NONE ? 0 : static_cast<int>(secret.size())) != 0) {
    throw std::runtime_error("jwt_set_alg");
  }
  char* text = jwt_encode_str(raw);
  if (!text) throw std::runtime_error("jwt_encode_str");
  std::string out(text);
  std::free(text);
  return out;
}

Authenticator jwt_only() {
  AuthOptions o;
  o.jwt_secret = kSecret;
  return Authenticator(o);
}

AuthResult bearer(const Authenticator& a, const std::string& token, long now = kNow) {
  return a.check("Bearer " + token, "", at(now));
}

TEST(Authenticator, DisabledLetsEveryRequestThroughWithoutSubject) {
  const Authenticator a{AuthOptions{}};
  EXPECT_FALSE(a.enabled());
  const auto r = a.check("", "", at(kNow));
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.subject.empty());
}

TEST(Authenticator, ValidTokenYieldsItsSubject) {
  const auto r = bearer(jwt_only(), make_token({}));
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.subject, "alice");
}

TEST(Authenticator, SchemeIsCaseInsensitive) {
  EXPECT_TRUE(jwt_only().check("bearer " + make_token({}), "", at(kNow)).ok);
}

TEST(Authenticator, ExpiredTokenIsRejected) {
  const auto a = jwt_only();
  const auto token = make_token({.exp = kNow - 1});
  const auto r = bearer(a, token);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "token expired");
  EXPECT_FALSE(bearer(a, make_token({.exp = kNow})).ok) << "exp is the first invalid second";
}

TEST(Authenticator, LeewayToleratesSmallSkew) {
  AuthOptions o;
  o.jwt_secret = kSecret;
  o.leeway = 30s;
  const Authenticator a(o);
  EXPECT_TRUE(bearer(a, make_token({.exp = kNow - 10})).ok);
  EXPECT_FALSE(bearer(a, make_token({.exp = kNow - 31})).ok);
  EXPECT_TRUE(bearer(a, make_token({.nbf = kNow + 10})).ok);
}

TEST(Authenticator, NotYetValidTokenIsRejected) {
  const auto r = bearer(jwt_only(), make_token({.nbf = kNow + 5}));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "token not yet valid");
  EXPECT_TRUE(bearer(jwt_only(), make_token({.nbf = kNow})).ok);
}

TEST(Authenticator, TokenWithoutExpIsRejectedUnlessAllowed) {
  const auto token = make_token({.exp = std::nullopt});
  EXPECT_FALSE(bearer(jwt_only(), token).ok);
  AuthOptions o;
  o.jwt_secret = kSecret;
  o.require_exp = false;
  EXPECT_TRUE(bearer(Authenticator(o), token).ok);
}

TEST(Authenticator, TokenIssuedInTheFutureBeyondTheLeewayIsRejected) {
  const auto r = bearer(jwt_only(), make_token({.iat = kNow + 5}));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "token issued in the future");
  EXPECT_TRUE(bearer(jwt_only(), make_token({.iat = kNow})).ok);
  EXPECT_TRUE(bearer(jwt_only(), make_token({.iat = kNow - 3600})).ok);
  AuthOptions o;
  o.jwt_secret = kSecret;
  o.leeway = 30s;
  EXPECT_TRUE(bearer(Authenticator(o), make_token({.iat = kNow + 30})).ok);
  EXPECT_FALSE(bearer(Authenticator(o), make_token({.iat = kNow + 31})).ok);
  const auto not_a_number = bearer(jwt_only(), make_token({.json = R"({"iat":"soon"})"}));
  EXPECT_FALSE(not_a_number.ok);
  EXPECT_EQ(not_a_number.reason, "token iat is not a number");
}

Authenticator with_audience_and_issuer(std::string audience, std::string issuer) {
  AuthOptions o;
  o.jwt_secret = kSecret;
  o.audience = std::move(audience);
  o.issuer = std::move(issuer);
  return Authenticator(o);
}

TEST(Authenticator, AudienceMustBeNamedAsAStringOrInAnArray) {
  const auto a = with_audience_and_issuer("courier", "");
  EXPECT_TRUE(bearer(a, make_token({.json = R"({"aud":"courier"})"})).ok);
  EXPECT_TRUE(bearer(a, make_token({.json = R"({"aud":["other","courier"]})"})).ok);
  for (const char* bad :
       {R"({"aud":"other"})", R"({"aud":["other"]})", R"({"aud":[]})", R"({"aud":"Courier"})",
        R"({"aud":7})", R"({"aud":[7,{"x":1}]})", R"({"aud":{"courier":1}})", R"({"other":1})"}) {
    const auto r = bearer(a, make_token({.json = bad}));
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_EQ(r.reason, "token audience is not accepted") << bad;
  }
  // Not configured: aud is not looked at.
  EXPECT_TRUE(bearer(jwt_only(), make_token({.json = R"({"aud":"other"})"})).ok);
}

TEST(Authenticator, IssuerMustMatchExactly) {
  const auto a = with_audience_and_issuer("", "https://issuer.example");
  EXPECT_TRUE(bearer(a, make_token({.iss = "https://issuer.example"})).ok);
  for (const auto& bad : std::vector<std::optional<std::string>>{
           std::optional<std::string>{}, std::optional<std::string>{"https://issuer.example/"},
           std::optional<std::string>{"https://evil.example"}, std::optional<std::string>{""}}) {
    const auto r = bearer(a, make_token({.iss = bad}));
    EXPECT_FALSE(r.ok) << bad.value_or("(none)");
    EXPECT_EQ(r.reason, "token issuer is not accepted");
  }
  EXPECT_FALSE(bearer(a, make_token({.json = R"({"iss":["https://issuer.example"]})"})).ok);
  EXPECT_TRUE(bearer(jwt_only(), make_token({.iss = "https://evil.example"})).ok);
}

TEST(Authenticator, AudienceAndIssuerAreBothChecked) {
  const auto a = with_audience_and_issuer("courier", "iss-1");
  EXPECT_TRUE(bearer(a, make_token({.iss = "iss-1", .json = R"({"aud":"courier"})"})).ok);
  EXPECT_FALSE(bearer(a, make_token({.iss = "iss-1"})).ok);
  EXPECT_FALSE(bearer(a, make_token({.json = R"({"aud":"courier"})"})).ok);
}

TEST(Authenticator, BadSignatureIsRejected) {
  const auto r = bearer(jwt_only(), make_token({}, "another-secret-another-secret-xx"));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.reason, "invalid token");
}

TEST(Authenticator, TamperedPayloadIsRejected) {
  auto token = make_token({});
  const auto dot = token.find('.');
  token[dot + 2] = token[dot + 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(bearer(jwt_only(), token).ok);
}

TEST(Authenticator, OtherAlgorithmsAreRejected) {
  EXPECT_FALSE(bearer(jwt_only(), make_token({}, kSecret, JWT_ALG_HS384)).ok);
  EXPECT_FALSE(bearer(jwt_only(), make_token({}, kSecret, JWT_ALG_NONE)).ok);
}

TEST(Authenticator, TokenWithoutSubjectIsRejected) {
  EXPECT_FALSE(bearer(jwt_only(), make_token({.sub = std::nullopt})).ok);
  EXPECT_FALSE(bearer(jwt_only(), make_token({.sub = "bad\r\nheader"})).ok);
}

TEST(Authenticator, MissingOrMalformedCredentialsAreRejected) {
  const auto a = jwt_only();
  EXPECT_EQ(a.check("", "", at(kNow)).reason, "missing credentials");
  EXPECT_FALSE(a.check("Basic dXNlcjpwdw==", "", at(kNow)).ok);
  EXPECT_FALSE(a.check("Bearer", "", at(kNow)).ok);
  EXPECT_FALSE(a.check("Bearer not.a.jwt", "", at(kNow)).ok);
  EXPECT_FALSE(a.check("Bearer ....", "", at(kNow)).ok);
}

TEST(Authenticator, ApiKeysNameTheirSubject) {
  AuthOptions o;
  o.api_keys = parse_api_keys("test", "svc-a:key-aaaa, key-bbbb");
  const Authenticator a(o);
  auto r = a.check("", "key-aaaa", at(kNow));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.subject, "svc-a");
  r = a.check("", "key-bbbb", at(kNow));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.subject, "api-key");
  EXPECT_FALSE(a.check("", "key-aaa", at(kNow)).ok);
  EXPECT_FALSE(a.check("", "", at(kNow)).ok);
  EXPECT_FALSE(a.check("Bearer " + make_token({}), "", at(kNow)).ok) << "JWT not configured";
}

TEST(Authenticator, EitherCredentialWorksWhenBothAreConfigured) {
  AuthOptions o;
  o.jwt_secret = kSecret;
  o.api_keys = parse_api_keys("test", "ops:k1");
  const Authenticator a(o);
  EXPECT_EQ(a.check("", "k1", at(kNow)).subject, "ops");
  EXPECT_EQ(a.check("Bearer " + make_token({}), "", at(kNow)).subject, "alice");
  EXPECT_EQ(a.check("Bearer " + make_token({}), "wrong", at(kNow)).subject, "alice");
  EXPECT_FALSE(a.check("Bearer " + make_token({.exp = kNow - 1}), "wrong", at(kNow)).ok);
}

TEST(ParseApiKeys, RejectsEmptyEntriesNamingTheSetting) {
  try {
    parse_api_keys("gateway.auth.api_keys", "a,,b");
    FAIL() << "no exception";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("gateway.auth.api_keys"), std::string::npos);
  }
  EXPECT_THROW(parse_api_keys("x", "svc:"), ConfigError);
}

}  // namespace
}  // namespace courier::gateway
