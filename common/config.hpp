// Settings shared by all binaries: the service table (upstreams, timeouts, retries, auth) resolved
// from built-in defaults, a YAML config file, environment variables and --set flags.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace courier {

// A start-up error: the message names the offending setting. main() prints it and exits 2.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct UpstreamUrl {
  std::string host;
  std::uint16_t port = 80;
  std::string base_path;  // "" or "/prefix" without a trailing slash
  std::string text;       // as configured, for logs
  bool operator==(const UpstreamUrl&) const = default;
};

// Parses "http://host[:port][/base]". Throws ConfigError naming `setting` when invalid.
UpstreamUrl parse_upstream_url(const std::string& setting, const std::string& value);

enum class AuthMode {
  kForward,  // pass the client's Authorization header through (default)
  kBearer,   // replace it with "Authorization: Bearer <secret>"
  kApiKey,   // send the secret in header `auth_header` (default X-API-Key)
};

struct ServiceConfig {
  std::string name;  // e.g. "rule-engine"
  UpstreamUrl upstream;
  std::chrono::milliseconds timeout{10'000};  // per attempt and default request deadline
  int max_attempts = 3;                       // PROXY_MAX_RETRIES: attempts in all
  std::chrono::milliseconds retry_min_wait{1'000};
  std::chrono::milliseconds retry_max_wait{10'000};
  AuthMode auth_mode = AuthMode::kForward;
  std::string auth_header = "X-API-Key";
  std::string auth_secret;                 // never logged
  std::size_t max_queue = 1024;            // broker: waiting requests before 503 OVERLOADED
  std::uint32_t worker_concurrency = 256;  // worker: requests one worker runs at once
  std::size_t max_connections = 256;       // worker: pooled upstream connections
  // The worker's circuit breaker (workers/circuit_breaker.hpp): it opens when the window holds
  // circuit_min_requests attempts and circuit_failures failures and their ratio reaches the rate.
  int circuit_failures = 5;  // 0 turns the breaker off
  int circuit_min_requests = 10;
  double circuit_failure_rate = 0.5;
  std::chrono::milliseconds circuit_window{10'000};
  std::chrono::milliseconds circuit_cooldown{5'000};
  int circuit_probes = 3;  // attempts let through while half-open
  // Upstream statuses the breaker counts as failures; connect failures, resets, timeouts and
  // malformed responses always count. None by default: an answer proves the upstream is up.
  std::vector<unsigned> circuit_failure_statuses;
  double retry_budget_ratio = 0.2;  // retries in flight at most this share of active requests
  int retry_budget_min = 3;         // ... but always allow this many
  // Streamed replies (docs/protocol.md, "Streams"). `timeout` bounds the wait for the response
  // head; once it is there, these bound the rest.
  std::chrono::milliseconds stream_idle_timeout{60'000};   // most between two body chunks
  std::chrono::milliseconds stream_max_duration{600'000};  // a whole stream, from its head
  std::chrono::milliseconds sse_keepalive{0};  // gateway: ": keep-alive" on an idle SSE stream
  std::uint32_t stream_window = 256 * 1024;    // gateway: body bytes in flight per stream
  std::size_t stream_threshold = 1 << 20;      // worker: a Content-Length above this streams
  // The initialisers above serve code that builds a ServiceConfig by hand (tests); load_settings
  // takes every default from service_fields(), and a unit test holds the two equal.
  bool operator==(const ServiceConfig&) const = default;
};

// One per-service setting, the single description that load_settings, the unknown-key check and
// help text follow. Values are looked up as services.<name>.<key> (env <SVC>_<env_suffix>), then
// defaults.<key> (env `default_env`), then `fallback`.
struct ServiceField {
  std::string_view key;
  std::string_view env_suffix;
  std::string_view default_env;  // empty: per service only (no defaults.<key> either)
  std::string_view fallback;     // the built-in default as text; empty: none
  std::string_view meaning;
  // Parses `value` into `svc`, throwing ConfigError naming `setting`; null for the auth secret's
  // source, which is read once the mode is known.
  void (*apply)(ServiceConfig& svc, const std::string& setting, const std::string& value);
};
std::span<const ServiceField> service_fields();
const ServiceField* find_service_field(std::string_view key);

// "rule-engine" -> "RULE_ENGINE": the prefix of per-service env vars and error codes.
std::string service_env_prefix(const std::string& service);

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Where a setting's value came from, for --print-config.
enum class ConfigSource { kDefault, kFile, kEnv, kSet, kFlag };
struct SourcedValue {
  std::string value;
  ConfigSource source = ConfigSource::kDefault;
  std::string name;  // the env var (kEnv), the file (kFile) or the flag (kFlag)
  // "default", "file courier.yaml", "env COURIER_LISTEN", "--set" or "flag --listen".
  std::string describe() const;
};

// One resolved per-service setting, services.<name>.<key>, as load_settings found it.
struct TracedSetting {
  std::string key;
  SourcedValue value;
};

struct Settings {
  std::map<std::string, ServiceConfig> services;
  const ServiceConfig* find(const std::string& name) const;
};

// The layered sources. `overrides` are KEY=VALUE pairs from --set flags (e.g.
// "services.ai-gm.timeout=90"); they win over env, which wins over the file. A per-service value
// wins over a default at any layer. Throws ConfigError on any invalid value.
struct ConfigSources {
  std::string file_path;  // optional YAML file
  std::vector<std::string> overrides;
  EnvLookup env = process_env();
};
// With `trace`, every service setting it resolved is appended there with its source (the auth
// secret itself is not a setting: only where it comes from is).
Settings load_settings(const ConfigSources& sources, std::vector<TracedSetting>* trace = nullptr);

namespace detail {
class Layers;  // the sources read once, and the precedence rule; shared with load_settings
}

// Scalar lookup for a component's own options ("gateway.listen" etc.) with the same layering:
// --set > env var `env_name` > file > nothing.
class ConfigFile {
 public:
  explicit ConfigFile(const ConfigSources& sources);
  std::optional<std::string> get(const std::string& key, const std::string& env_name) const;
  // The same, with where the value came from.
  std::optional<SourcedValue> lookup(const std::string& key, const std::string& env_name) const;

 private:
  std::shared_ptr<const detail::Layers> layers_;
};

// Value parsers used by both: they throw ConfigError naming `setting`.
std::chrono::milliseconds parse_seconds(const std::string& setting, const std::string& value);
long long parse_int(const std::string& setting, const std::string& value, long long min,
                    long long max);
// A comma-separated list of ZeroMQ endpoints to connect to (tcp://host:port with a host, not the
// wildcard `*`; ipc:// with a path of at most 107 bytes; inproc://), none empty or repeated.
std::vector<std::string> parse_endpoints(const std::string& setting, const std::string& value);
// true/1/yes/on or false/0/no/off.
bool parse_bool(const std::string& setting, const std::string& value);

// The one reader of secrets, from an env var or a file (e.g. a Docker secret). Surrounding
// whitespace is dropped (a file's trailing newline is not part of a token, and an HTTP header
// could not carry it anyway); an empty secret stops start-up rather than turning auth off.
// Messages name where the secret was to come from, never its value.
std::string read_secret_env(const std::string& setting, const EnvLookup& env,
                            const std::string& var);
std::string read_secret_file(const std::string& setting, const std::string& path);
// A secret given as a value (a config key or an env var holding the secret itself).
std::string secret_value(const std::string& setting, const std::string& value);

}  // namespace courier
