// Caller authentication for forwarded requests (off unless configured): HS256 bearer tokens
// verified by libjwt, and/or static API keys. The clock is a parameter so tests need no sleeping.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "common/options.hpp"

namespace courier::gateway {

struct ApiKey {
  std::string subject;  // what the worker sees in X-Courier-Subject
  std::string key;      // never logged
};

struct AuthOptions {
  std::string jwt_secret;        // HS256 shared secret; empty: bearer tokens are not accepted
  std::vector<ApiKey> api_keys;  // empty: X-API-Key is not accepted
  // Clock skew tolerated on exp, nbf and iat.
  std::chrono::seconds leeway = std::chrono::duration_cast<std::chrono::seconds>(
      options::gateway::kAuthLeeway.default_seconds());
  bool require_exp = options::gateway::kAuthRequireExp.default_bool();  // reject never-expiring
  // When set, a token must name it in `aud` (a string, or an array holding it).
  std::string audience{};
  // When set, a token's `iss` must be exactly this.
  std::string issuer{};

  bool enabled() const { return !jwt_secret.empty() || !api_keys.empty(); }
};

// "alice:k1,k2" -> {{"alice","k1"}, {"api-key","k2"}}: a subject before the first ':' is
// optional. Throws ConfigError naming `setting` on an empty entry.
std::vector<ApiKey> parse_api_keys(const std::string& setting, const std::string& value);

struct AuthResult {
  bool ok = false;
  std::string subject;  // when ok
  std::string reason;   // when not: safe to send to the client (never echoes the credential)
};

class Authenticator {
 public:
  explicit Authenticator(AuthOptions options);

  bool enabled() const { return options_.enabled(); }
  bool accepts_bearer() const { return !options_.jwt_secret.empty(); }
  bool accepts_api_keys() const { return !options_.api_keys.empty(); }

  // `authorization` and `api_key` are the raw header values ("" when absent). A request passes
  // when either credential is valid; with auth disabled every request passes with no subject.
  AuthResult check(std::string_view authorization, std::string_view api_key,
                   std::chrono::system_clock::time_point now) const;

 private:
  AuthResult check_bearer(std::string_view token, std::chrono::system_clock::time_point now) const;
  AuthResult check_api_key(std::string_view key) const;

  AuthOptions options_;
};

}  // namespace courier::gateway
