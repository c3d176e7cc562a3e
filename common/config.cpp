#include "common/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>

#include "common/frames.hpp"
#include "common/options.hpp"

namespace courier {
namespace {

struct BuiltinService {
  const char* name;
  const char* url;
};
// The services the State Manager already calls, with the defaults it already uses.
constexpr BuiltinService kBuiltinServices[] = {
    {"rule-engine", "http://localhost:8031"},
    {"ai-gm", "http://localhost:8032"},
};

// Flattens a YAML mapping into "a.b.c" -> scalar text.
void flatten(const YAML::Node& node, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  if (node.IsMap()) {
    for (const auto& kv : node) {
      const auto key = kv.first.as<std::string>();
      flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out);
    }
  } else if (node.IsScalar()) {
    out[prefix] = node.Scalar();
  } else if (node.IsNull()) {
    out[prefix] = "";
  } else if (node.IsSequence()) {
    // A list of plain values reads as their comma-separated text (`broker: [tcp://a:1, ...]`).
    std::string joined;
    for (const auto& item : node) {
      if (!item.IsScalar()) {
        throw ConfigError("config: " + prefix + ": a list may hold only plain values");
      }
      joined += (joined.empty() ? "" : ",") + item.Scalar();
    }
    out[prefix] = joined;
  } else {
    throw ConfigError("config: " + prefix + ": expected a value, a list or a mapping");
  }
}

std::map<std::string, std::string> read_file(const std::string& path) {
  std::map<std::string, std::string> out;
  if (path.empty()) return out;
  std::ifstream in(path);
  if (!in) throw ConfigError("config file " + path + ": cannot be read");
  try {
    const YAML::Node root = YAML::Load(in);
    if (root.IsNull()) return out;
    if (!root.IsMap()) throw ConfigError("config file " + path + ": top level must be a mapping");
    flatten(root, "", out);
  } catch (const YAML::Exception& e) {
    throw ConfigError("config file " + path + ": " + e.what());
  }
  return out;
}

std::map<std::string, std::string> read_overrides(const std::vector<std::string>& overrides) {
  std::map<std::string, std::string> out;
  for (const auto& kv : overrides) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw ConfigError("--set " + kv + ": expected KEY=VALUE");
    }
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return out;
}

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// Unknown keys are mistakes (a typo silently ignored is a production incident).
void check_keys(const std::map<std::string, std::string>& m, const std::string& where) {
  static const std::set<std::string> kSections = {"defaults", "services", "gateway",
                                                  "broker",   "worker",   "logging"};
  for (const auto& [key, value] : m) {
    const auto dot = key.find('.');
    const auto top = key.substr(0, dot);
    bool known = false;
    if (dot == std::string::npos) {
      known = value.empty() && kSections.count(top);  // a bare section: `logging:` alone
    } else if (top == "services") {
      const auto name_end = key.find('.', dot + 1);
      known = name_end != std::string::npos &&
              find_service_field(std::string_view(key).substr(name_end + 1));
    } else if (top == "defaults") {
      const auto* f = find_service_field(std::string_view(key).substr(dot + 1));
      known = f && !f->default_env.empty();
    } else if (kSections.count(top)) {
      known = known_component_key(key);
    }
    if (!known) throw ConfigError(where + ": unknown setting " + key);
  }
}

}  // namespace

namespace detail {

// One setting's value and where it came from, for error messages.
struct Found {
  std::string value;
  std::string origin;
  ConfigSource source;
  std::string name;  // env var or file
  SourcedValue sourced() const { return {value, source, name}; }
};

class Layers {
 public:
  Layers(const ConfigSources& sources)
      : file_(read_file(sources.file_path)),
        overrides_(read_overrides(sources.overrides)),
        env_(sources.env),
        file_path_(sources.file_path) {
    check_keys(file_, file_path_.empty() ? "config" : file_path_);
    check_keys(overrides_, "--set");
  }

  std::optional<Found> get(const std::string& key, const std::string& env_name) const {
    if (auto it = overrides_.find(key); it != overrides_.end()) {
      return Found{it->second, "--set " + key, ConfigSource::kSet, ""};
    }
    if (!env_name.empty() && env_) {
      if (auto v = env_(env_name); v && !v->empty()) {
        return Found{*v, env_name, ConfigSource::kEnv, env_name};
      }
    }
    if (auto it = file_.find(key); it != file_.end()) {
      return Found{it->second, key + " (" + file_path_ + ")", ConfigSource::kFile, file_path_};
    }
    return std::nullopt;
  }

  std::set<std::string> service_names() const {
    std::set<std::string> names;
    for (const auto& b : kBuiltinServices) names.insert(b.name);
    const auto collect = [&](const std::map<std::string, std::string>& m) {
      for (const auto& [key, value] : m) {
        if (key.rfind("services.", 0) != 0) continue;
        const auto rest = key.substr(9);
        names.insert(rest.substr(0, rest.find('.')));
      }
    };
    collect(file_);
    collect(overrides_);
    if (env_) {
      if (auto list = env_("COURIER_SERVICES")) {
        std::string item;
        for (std::size_t i = 0; i <= list->size(); ++i) {
          if (i == list->size() || (*list)[i] == ',') {
            if (auto t = trim(item); !t.empty()) names.insert(t);
            item.clear();
          } else {
            item += (*list)[i];
          }
        }
      }
    }
    return names;
  }

  const std::map<std::string, std::string>& file() const { return file_; }
  const std::map<std::string, std::string>& overrides() const { return overrides_; }

 private:
  std::map<std::string, std::string> file_;
  std::map<std::string, std::string> overrides_;
  EnvLookup env_;
  std::string file_path_;
};

}  // namespace detail

namespace {

double parse_double(const std::string& setting, const std::string& value) {
  const auto t = trim(value);
  double d = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
  if (t.empty() || ec != std::errc{} || ptr != t.data() + t.size() || !std::isfinite(d)) {
    throw ConfigError(setting + ": '" + value + "' is not a number");
  }
  return d;
}

// "none", or a comma-separated list of 5xx statuses ("502,503,504").
std::vector<unsigned> parse_statuses(const std::string& setting, const std::string& value) {
  std::vector<unsigned> out;
  if (trim(value) == "none") return out;
  std::string_view rest = value;
  while (true) {
    const auto comma = rest.find(',');
    const auto item = std::string(rest.substr(0, comma));
    const auto status = static_cast<unsigned>(parse_int(setting, item, 500, 599));
    if (std::find(out.begin(), out.end(), status) == out.end()) out.push_back(status);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

// Called once the mode needs a secret; the source is per service only.
std::string service_secret(const std::string& setting, const detail::Layers& layers,
                           const std::string& service, const EnvLookup& env) {
  const auto prefix = service_env_prefix(service);
  if (auto v =
          layers.get("services." + service + ".auth.secret_env", prefix + "_AUTH_SECRET_ENV")) {
    return read_secret_env(setting, env, v->value);
  }
  if (auto v =
          layers.get("services." + service + ".auth.secret_file", prefix + "_AUTH_SECRET_FILE")) {
    return read_secret_file(setting, v->value);
  }
  throw ConfigError(setting + ": needs auth.secret_env or auth.secret_file");
}

}  // namespace

std::string service_env_prefix(const std::string& service) {
  std::string out;
  out.reserve(service.size());
  for (char c : service) {
    out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name.c_str())) return std::string(v);
    return std::nullopt;
  };
}

UpstreamUrl parse_upstream_url(const std::string& setting, const std::string& value) {
  const auto fail = [&](const std::string& why) {
    return ConfigError(setting + ": '" + value + "' is not a valid upstream URL (" + why + ")");
  };
  constexpr std::string_view kScheme = "http://";
  if (value.rfind(kScheme, 0) != 0) {
    throw fail(value.rfind("https://", 0) == 0 ? "https is not supported; use http"
                                               : "must start with http://");
  }
  UpstreamUrl url;
  url.text = value;
  const std::string rest = value.substr(kScheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  if (path.find_first_of("?# ") != std::string::npos) throw fail("no query or fragment allowed");
  while (!path.empty() && path.back() == '/') path.pop_back();
  url.base_path = path;
  if (authority.empty()) throw fail("missing host");
  if (authority.find('@') != std::string::npos) throw fail("credentials in URLs are not allowed");
  std::string host = authority;
  std::string port;
  if (authority.front() == '[') {  // [v6]:port
    const auto close = authority.find(']');
    if (close == std::string::npos) throw fail("unterminated IPv6 literal");
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') throw fail("junk after IPv6 literal");
      port = authority.substr(close + 2);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) throw fail("missing host");
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == ':' ||
          c == '_')) {
      throw fail("bad character in host");
    }
  }
  url.host = host;
  if (!port.empty()) {
    url.port = static_cast<std::uint16_t>(parse_int(setting + " port", port, 1, 65535));
  }
  return url;
}

std::chrono::milliseconds parse_seconds(const std::string& setting, const std::string& value) {
  const double s = parse_double(setting, value);
  if (s < 0 || s > 86400) {
    throw ConfigError(setting + ": '" + value + "' must be between 0 and 86400 seconds");
  }
  return std::chrono::milliseconds(static_cast<long long>(std::llround(s * 1000)));
}

long long parse_int(const std::string& setting, const std::string& value, long long min,
                    long long max) {
  const auto t = trim(value);
  long long v = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc{} || ptr != t.data() + t.size()) {
    throw ConfigError(setting + ": '" + value + "' is not an integer");
  }
  if (v < min || v > max) {
    throw ConfigError(setting + ": " + value + " is out of range [" + std::to_string(min) + ", " +
                      std::to_string(max) + "]");
  }
  return v;
}

namespace {

// tcp://HOST:PORT (port 1-65535), ipc://PATH or inproc://NAME: what a DEALER can connect to.
bool valid_endpoint(const std::string& e) {
  // A Unix socket path holds at most 107 bytes.
  if (e.starts_with("ipc://")) return e.size() > 6 && e.size() - 6 <= 107;
  if (e.starts_with("inproc://")) return e.size() > 9;
  if (!e.starts_with("tcp://")) return false;
  const std::string_view rest = std::string_view(e).substr(6);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  if (rest.substr(0, colon) == "*") return false;  // a wildcard binds; it cannot be connected to
  const auto port = rest.substr(colon + 1);
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  return !port.empty() && ec == std::errc{} && ptr == port.data() + port.size() && value >= 1 &&
         value <= 65535;
}

}  // namespace

std::vector<std::string> parse_endpoints(const std::string& setting, const std::string& value) {
  std::vector<std::string> out;
  std::string_view rest = value;
  while (true) {
    const auto comma = rest.find(',');
    const auto item = trim(std::string(rest.substr(0, comma)));
    if (!valid_endpoint(item)) {
      throw ConfigError(setting + ": '" + item +
                        "' is not a ZeroMQ endpoint to connect to (tcp://host:port or ipc://path)");
    }
    if (std::find(out.begin(), out.end(), item) != out.end()) {
      throw ConfigError(setting + ": '" + item + "' is listed twice");
    }
    out.push_back(item);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

const ServiceConfig* Settings::find(const std::string& name) const {
  const auto it = services.find(name);
  return it == services.end() ? nullptr : &it->second;
}

bool parse_bool(const std::string& setting, const std::string& value) {
  const auto t = trim(value);
  if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "0" || t == "no" || t == "off") return false;
  throw ConfigError(setting + ": '" + value + "' must be true or false");
}

std::string secret_value(const std::string& setting, const std::string& value) {
  auto secret = trim(value);
  if (secret.empty()) throw ConfigError(setting + ": the secret is empty");
  return secret;
}

std::string read_secret_env(const std::string& setting, const EnvLookup& env,
                            const std::string& var) {
  auto value = env ? env(var) : std::nullopt;
  if (value) *value = trim(*value);
  if (!value || value->empty()) {
    throw ConfigError(setting + ": environment variable " + var + " is unset or empty");
  }
  return *value;
}

std::string read_secret_file(const std::string& setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(setting + ": secret file " + path + " cannot be read");
  auto secret = trim(std::string(std::istreambuf_iterator<char>(in), {}));
  if (secret.empty()) throw ConfigError(setting + ": secret file " + path + " is empty");
  return secret;
}

namespace {

template <auto Member, long long Min, long long Max>
void set_int(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  using T = std::remove_reference_t<decltype(svc.*Member)>;
  svc.*Member = static_cast<T>(parse_int(setting, value, Min, Max));
}

template <auto Member>
void set_seconds(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  svc.*Member = parse_seconds(setting, value);
}

template <auto Member>
void set_positive_seconds(ServiceConfig& svc, const std::string& setting,
                          const std::string& value) {
  svc.*Member = parse_seconds(setting, value);
  if ((svc.*Member).count() == 0) throw ConfigError(setting + ": must be greater than 0");
}

void set_upstream(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  svc.upstream = parse_upstream_url(setting, value);
}

void set_timeout(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  svc.timeout = parse_seconds(setting, value);
  if (svc.timeout.count() == 0) throw ConfigError(setting + ": must be greater than 0");
}

void set_failure_rate(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  svc.circuit_failure_rate = parse_double(setting, value);
  if (!(svc.circuit_failure_rate > 0) || svc.circuit_failure_rate > 1) {
    throw ConfigError(setting + ": must be above 0 and at most 1 (a share of attempts)");
  }
}

void set_window(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  svc.circuit_window = parse_seconds(setting, value);
  if (svc.circuit_window < std::chrono::milliseconds{100}) {
    throw ConfigError(setting + ": must be at least 0.1 seconds");
  }
}

void set_statuses(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  svc.circuit_failure_statuses = parse_statuses(setting, value);
}

void set_budget_ratio(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  svc.retry_budget_ratio = parse_double(setting, value);
  if (svc.retry_budget_ratio < 0 || svc.retry_budget_ratio > 1) {
    throw ConfigError(setting + ": must be between 0 and 1");
  }
}

void set_auth_mode(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  if (value == "forward") {
    svc.auth_mode = AuthMode::kForward;
  } else if (value == "bearer") {
    svc.auth_mode = AuthMode::kBearer;
  } else if (value == "api-key") {
    svc.auth_mode = AuthMode::kApiKey;
  } else {
    throw ConfigError(setting + ": '" + value + "' must be forward, bearer or api-key");
  }
}

void set_auth_header(ServiceConfig& svc, const std::string& setting, const std::string& value) {
  if (value.empty() || value.find_first_of(" :\r\n\t") != std::string::npos) {
    throw ConfigError(setting + ": '" + value + "' is not a header name");
  }
  svc.auth_header = value;
}

using S = ServiceConfig;
// docs/configuration.md lists these in this order; keep the two alike.
constexpr ServiceField kServiceFields[] = {
    {"upstream", "URL", "", "", "http://host[:port][/base]", set_upstream},
    {"timeout", "TIMEOUT", "PROXY_TIMEOUT", "10", "deadline and each attempt's bound, seconds",
     set_timeout},
    {"max_retries", "MAX_RETRIES", "PROXY_MAX_RETRIES", "3", "upstream attempts in all",
     set_int<&S::max_attempts, 1, 100>},
    {"retry_min_wait", "RETRY_MIN_WAIT", "PROXY_RETRY_MIN_WAIT", "1.0", "backoff lower bound",
     set_seconds<&S::retry_min_wait>},
    {"retry_max_wait", "RETRY_MAX_WAIT", "PROXY_RETRY_MAX_WAIT", "10.0", "backoff upper bound",
     set_seconds<&S::retry_max_wait>},
    {"max_queue", "MAX_QUEUE", "COURIER_MAX_QUEUE", "1024", "broker: waiting requests at most",
     set_int<&S::max_queue, 0, 10'000'000>},
    {"concurrency", "CONCURRENCY", "COURIER_WORKER_CONCURRENCY", "256",
     "worker: requests run at once", set_int<&S::worker_concurrency, 1, 100000>},
    {"max_connections", "MAX_CONNECTIONS", "COURIER_MAX_CONNECTIONS", "256",
     "worker: keep-alive connections per upstream", set_int<&S::max_connections, 1, 100000>},
    {"circuit_failures", "CIRCUIT_FAILURES", "COURIER_CIRCUIT_FAILURES", "5",
     "failures before the breaker may open; 0: off", set_int<&S::circuit_failures, 0, 1'000'000>},
    {"circuit_min_requests", "CIRCUIT_MIN_REQUESTS", "COURIER_CIRCUIT_MIN_REQUESTS", "10",
     "attempts before the rate counts", set_int<&S::circuit_min_requests, 1, 1'000'000>},
    {"circuit_failure_rate", "CIRCUIT_FAILURE_RATE", "COURIER_CIRCUIT_FAILURE_RATE", "0.5",
     "failed share at which it opens", set_failure_rate},
    {"circuit_window", "CIRCUIT_WINDOW", "COURIER_CIRCUIT_WINDOW", "10", "sliding window, seconds",
     set_window},
    {"circuit_cooldown", "CIRCUIT_COOLDOWN", "COURIER_CIRCUIT_COOLDOWN", "5",
     "seconds open before half-open", set_seconds<&S::circuit_cooldown>},
    {"circuit_probes", "CIRCUIT_PROBES", "COURIER_CIRCUIT_PROBES", "3",
     "attempts let through half-open", set_int<&S::circuit_probes, 1, 10'000>},
    {"circuit_failure_statuses", "CIRCUIT_FAILURE_STATUSES", "COURIER_CIRCUIT_FAILURE_STATUSES",
     "none", "statuses that also count as failures", set_statuses},
    {"retry_budget_ratio", "RETRY_BUDGET_RATIO", "COURIER_RETRY_BUDGET_RATIO", "0.2",
     "retries at most this share of requests", set_budget_ratio},
    {"retry_budget_min", "RETRY_BUDGET_MIN", "COURIER_RETRY_BUDGET_MIN", "3",
     "... but always this many", set_int<&S::retry_budget_min, 0, 100000>},
    {"stream_idle_timeout", "STREAM_IDLE_TIMEOUT", "PROXY_STREAM_IDLE_TIMEOUT", "60",
     "streams: most seconds between two body chunks",
     set_positive_seconds<&S::stream_idle_timeout>},
    {"stream_max_duration", "STREAM_MAX_DURATION", "PROXY_STREAM_MAX_DURATION", "600",
     "streams: most seconds for a whole body", set_positive_seconds<&S::stream_max_duration>},
    {"sse_keepalive", "SSE_KEEPALIVE", "PROXY_SSE_KEEPALIVE", "0",
     "SSE comment after this idle time; 0: off", set_seconds<&S::sse_keepalive>},
    {"stream_window", "STREAM_WINDOW", "COURIER_STREAM_WINDOW", "262144",
     "gateway: stream bytes in flight", set_int<&S::stream_window, 65536, 67108864>},
    {"stream_threshold", "STREAM_THRESHOLD", "COURIER_STREAM_THRESHOLD", "1048576",
     "worker: longer bodies are streamed", set_int<&S::stream_threshold, 0, 268435456>},
    {"auth.mode", "AUTH_MODE", "", "forward", "forward, bearer or api-key", set_auth_mode},
    {"auth.header", "AUTH_HEADER", "", "X-API-Key", "header for api-key mode", set_auth_header},
    {"auth.secret_env", "AUTH_SECRET_ENV", "", "", "env var holding the secret", nullptr},
    {"auth.secret_file", "AUTH_SECRET_FILE", "", "", "file holding the secret", nullptr},
};

std::string builtin_url(const std::string& service) {
  for (const auto& b : kBuiltinServices) {
    if (service == b.name) return b.url;
  }
  return "";
}

}  // namespace

std::span<const ServiceField> service_fields() { return kServiceFields; }

const ServiceField* find_service_field(std::string_view key) {
  for (const auto& f : kServiceFields) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

std::string SourcedValue::describe() const {
  switch (source) {
    case ConfigSource::kFile:
      return "file " + name;
    case ConfigSource::kEnv:
      return "env " + name;
    case ConfigSource::kSet:
      return "--set";
    case ConfigSource::kFlag:
      return "flag " + name;
    case ConfigSource::kDefault:
      break;
  }
  return "default";
}

Settings load_settings(const ConfigSources& sources, std::vector<TracedSetting>* trace) {
  const detail::Layers layers(sources);
  Settings settings;
  for (const auto& name : layers.service_names()) {
    if (!protocol::valid_service_name(name)) {
      throw ConfigError("services." + name +
                        ": invalid service name (lower-case letters, digits and '-', at most 64)");
    }
    ServiceConfig svc;
    svc.name = name;
    const auto prefix = service_env_prefix(name);
    std::optional<detail::Found> auth_mode;
    for (const auto& field : kServiceFields) {
      const std::string key(field.key);
      const auto own_key = "services." + name + "." + key;
      const auto own_env = prefix + "_" + std::string(field.env_suffix);
      auto v = layers.get(own_key, own_env);
      if (!v && !field.default_env.empty()) {
        v = layers.get("defaults." + key, std::string(field.default_env));
      }
      if (!field.apply) {  // where the auth secret comes from: read below, traced when set
        if (v && trace) trace->push_back({own_key, v->sourced()});
        continue;
      }
      if (v) {
        field.apply(svc, v->origin, v->value);
        if (key == "auth.mode") auth_mode = v;
        if (trace) trace->push_back({own_key, v->sourced()});
        continue;
      }
      // Only the built-in services have an upstream by default.
      const auto fallback = key == "upstream" ? builtin_url(name) : std::string(field.fallback);
      if (fallback.empty()) throw ConfigError(own_key + " (or " + own_env + ") is required");
      field.apply(svc, "default for " + name, fallback);
      if (trace) trace->push_back({own_key, {fallback, ConfigSource::kDefault, ""}});
    }
    if (svc.retry_max_wait < svc.retry_min_wait) {
      throw ConfigError("services." + name + ": retry_max_wait (PROXY_RETRY_MAX_WAIT) is below " +
                        "retry_min_wait (PROXY_RETRY_MIN_WAIT)");
    }
    if (svc.auth_mode != AuthMode::kForward) {
      svc.auth_secret = service_secret(auth_mode->origin, layers, name, sources.env);
    }
    settings.services.emplace(name, std::move(svc));
  }
  return settings;
}

ConfigFile::ConfigFile(const ConfigSources& sources)
    : layers_(std::make_shared<const detail::Layers>(sources)) {}

std::optional<SourcedValue> ConfigFile::lookup(const std::string& key,
                                               const std::string& env_name) const {
  if (auto found = layers_->get(key, env_name)) return found->sourced();
  return std::nullopt;
}

std::optional<std::string> ConfigFile::get(const std::string& key,
                                           const std::string& env_name) const {
  if (auto found = layers_->get(key, env_name)) return std::move(found->value);
  return std::nullopt;
}

}  // namespace courier
