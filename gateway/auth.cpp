#include "gateway/auth.hpp"

#include <jwt.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/config.hpp"
#include "common/http_headers.hpp"

namespace courier::gateway {

namespace {

struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Compares every byte whatever the first mismatch, so timing does not reveal a key's prefix.
bool same_key(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

// A subject goes into a header: printable ASCII only, bounded.
bool valid_subject(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

AuthResult fail(std::string reason) { return AuthResult{false, {}, std::move(reason)}; }

// A NumericDate claim: nullopt when absent; `valid` false when present but not an integer.
struct Claim {
  bool present = false;
  bool valid = true;
  long value = 0;
};

Claim numeric_claim(jwt_t* token, const char* name) {
  errno = 0;
  const long v = jwt_get_grant_int(token, name);
  if (errno == ENOENT) return {};
  if (errno != 0) return {true, false, 0};
  return {true, true, v};
}

// Every claim as one JSON object (libjwt's typed getters cannot tell a claim of another type from
// a missing one); an empty object if libjwt has none to give.
nlohmann::json all_claims(jwt_t* token) {
  std::unique_ptr<char, decltype(&std::free)> text(jwt_get_grants_json(token, nullptr), &std::free);
  auto claims = text ? nlohmann::json::parse(text.get(), nullptr, false) : nlohmann::json();
  return claims.is_object() ? claims : nlohmann::json::object();
}

// `aud` (RFC 7519 4.1.3): one string or an array of strings, one of which must be ours.
bool names_audience(const nlohmann::json& claims, const std::string& audience) {
  const auto it = claims.find("aud");
  if (it == claims.end()) return false;
  const auto& aud = *it;
  if (aud.is_string()) return aud.get_ref<const std::string&>() == audience;
  if (!aud.is_array()) return false;
  for (const auto& a : aud) {
    if (a.is_string() && a.get_ref<const std::string&>() == audience) return true;
  }
  return false;
}

}  // namespace

std::vector<ApiKey> parse_api_keys(const std::string& setting, const std::string& value) {
  std::vector<ApiKey> keys;
  std::string_view rest = value;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto entry = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    if (entry.empty()) throw ConfigError(setting + ": empty API key entry");
    const auto colon = entry.find(':');
    ApiKey k;
    if (colon == std::string_view::npos) {
      k = {"api-key", std::string(entry)};
    } else {
      k = {std::string(trim(entry.substr(0, colon))), std::string(trim(entry.substr(colon + 1)))};
    }
    if (k.key.empty() || !valid_subject(k.subject)) {
      throw ConfigError(setting + ": each entry must be KEY or SUBJECT:KEY (printable ASCII)");
    }
    keys.push_back(std::move(k));
  }
  return keys;
}

Authenticator::Authenticator(AuthOptions options) : options_(std::move(options)) {}

AuthResult Authenticator::check(std::string_view authorization, std::string_view api_key,
                                std::chrono::system_clock::time_point now) const {
  if (!enabled()) return AuthResult{true, {}, {}};
  if (!api_key.empty() && !options_.api_keys.empty()) {
    auto r = check_api_key(trim(api_key));
    if (r.ok || authorization.empty()) return r;
  }
  if (!authorization.empty() && accepts_bearer()) {
    const auto value = trim(authorization);
    const auto space = value.find(' ');
    if (space == std::string_view::npos || !iequals(value.substr(0, space), "bearer")) {
      return fail("Authorization must use the Bearer scheme");
    }
    return check_bearer(trim(value.substr(space + 1)), now);
  }
  return fail("missing credentials");
}

AuthResult Authenticator::check_api_key(std::string_view key) const {
  // Every configured key is compared so the time taken does not depend on which one matched.
  const ApiKey* match = nullptr;
  for (const auto& k : options_.api_keys) {
    if (same_key(k.key, key) && !match) match = &k;
  }
  if (!match) return fail("invalid API key");
  return AuthResult{true, match->subject, {}};
}

AuthResult Authenticator::check_bearer(std::string_view token,
                                       std::chrono::system_clock::time_point now) const {
  if (token.empty()) return fail("empty bearer token");
  jwt_t* raw = nullptr;
  const std::string text(token);  // libjwt wants a NUL-terminated string
  const int rc = jwt_decode(&raw, text.c_str(),
                            reinterpret_cast<const unsigned char*>(options_.jwt_secret.data()),
                            static_cast<int>(options_.jwt_secret.size()));
  JwtPtr jwt(raw);
  if (rc != 0 || !jwt) return fail("invalid token");
  // Only the algorithm we configured: never "none", never another HMAC size.
  if (jwt_get_alg(jwt.get()) != JWT_ALG_HS256) return fail("token must be signed with HS256");

  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const auto leeway = options_.leeway.count();
  const auto exp = numeric_claim(jwt.get(), "exp");
  if (!exp.valid) return fail("token exp is not a number");
  if (!exp.present && options_.require_exp) return fail("token has no exp");
  if (exp.present && seconds >= exp.value + leeway) return fail("token expired");
  const auto nbf = numeric_claim(jwt.get(), "nbf");
  if (!nbf.valid) return fail("token nbf is not a number");
  if (nbf.present && seconds + leeway < nbf.value) return fail("token not yet valid");
  // Issued in the future: a clock far off, or a token minted to outlive its exp check.
  const auto claims = all_claims(jwt.get());
  if (const auto iat = claims.find("iat"); iat != claims.end()) {
    if (!iat->is_number()) return fail("token iat is not a number");
    if (static_cast<double>(seconds + leeway) < iat->get<double>()) {
      return fail("token issued in the future");
    }
  }
  if (!options_.issuer.empty()) {
    const char* iss = jwt_get_grant(jwt.get(), "iss");
    if (!iss || options_.issuer != iss) return fail("token issuer is not accepted");
  }
  if (!options_.audience.empty() && !names_audience(claims, options_.audience)) {
    return fail("token audience is not accepted");
  }

  const char* sub = jwt_get_grant(jwt.get(), "sub");
  if (!sub || !valid_subject(sub)) return fail("token has no usable sub");
  return AuthResult{true, sub, {}};
}

}  // namespace courier::gateway
