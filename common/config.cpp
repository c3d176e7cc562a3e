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

}  // namespace

namespace detail {

// One setting's value and where it came from, for error messages.
struct Found {
  std::string value;
  std::string origin;
};

class Layers {
 public:
  Layers(const ConfigSources& sources)
      : file_(read_file(sources.file_path)),
        overrides_(read_overrides(sources.overrides)),
        env_(sources.env),
        file_path_(sources.file_path) {}

  std::optional<Found> get(const std::string& key, const std::string& env_name) const {
    if (auto it = overrides_.find(key); it != overrides_.end()) {
      return Found{it->second, "--set " + key};
    }
    if (!env_name.empty() && env_) {
      if (auto v = env_(env_name); v && !v->empty()) return Found{*v, env_name};
    }
    if (auto it = file_.find(key); it != file_.end()) {
      return Found{it->second, key + " (" + file_path_ + ")"};
    }
    return std::nullopt;
  }

  // Per-service value first, then the default, each through all layers.
  std::optional<Found> service_value(const std::string& service, const std::string& field,
                                     const std::string& default_env) const {
    const auto prefix = service_env_prefix(service);
    std::string upper = field;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (auto v = get("services." + service + "." + field, prefix + "_" + upper)) return v;
    return get("defaults." + field, default_env);
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

std::string read_secret(const std::string& setting, const detail::Layers& layers,
                        const std::string& service, const EnvLookup& env) {
  // The secret itself never appears in messages: only where it was to come from.
  if (auto v = layers.get("services." + service + ".auth.secret_env",
                          service_env_prefix(service) + "_AUTH_SECRET_ENV")) {
    auto secret = env ? env(v->value) : std::nullopt;
    if (!secret || secret->empty()) {
      throw ConfigError(setting + ": environment variable " + v->value + " is unset or empty");
    }
    return *secret;
  }
  if (auto v = layers.get("services." + service + ".auth.secret_file",
                          service_env_prefix(service) + "_AUTH_SECRET_FILE")) {
    std::ifstream in(v->value);
    if (!in) throw ConfigError(setting + ": secret file " + v->value + " cannot be read");
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    s = trim(s);
    if (s.empty()) throw ConfigError(setting + ": secret file " + v->value + " is empty");
    return s;
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

Settings load_settings(const ConfigSources& sources) {
  const detail::Layers layers(sources);
  static const std::set<std::string> kServiceFields = {"upstream",
                                                       "timeout",
                                                       "max_retries",
                                                       "retry_min_wait",
                                                       "retry_max_wait",
                                                       "max_queue",
                                                       "concurrency",
                                                       "max_connections",
                                                       "circuit_failures",
                                                       "circuit_cooldown",
                                                       "retry_budget_ratio",
                                                       "retry_budget_min",
                                                       "auth.mode",
                                                       "auth.header",
                                                       "auth.secret_env",
                                                       "auth.secret_file",
                                                       "circuit_min_requests",
                                                       "circuit_failure_rate",
                                                       "circuit_window",
                                                       "circuit_probes",
                                                       "circuit_failure_statuses"};
  static const std::set<std::string> kTopLevel = {"defaults", "services", "gateway",
                                                  "broker",   "worker",   "logging"};
  // Unknown keys are mistakes (a typo silently ignored is a production incident).
  const auto check_keys = [&](const std::map<std::string, std::string>& m, const char* where) {
    for (const auto& [key, value] : m) {
      const auto top = key.substr(0, key.find('.'));
      if (!kTopLevel.count(top)) throw ConfigError(std::string(where) + ": unknown setting " + key);
      if (top == "services") {
        const auto rest = key.substr(9);
        const auto dot = rest.find('.');
        const auto field = dot == std::string::npos ? "" : rest.substr(dot + 1);
        if (!kServiceFields.count(field)) {
          throw ConfigError(std::string(where) + ": unknown setting " + key);
        }
      } else if (top == "defaults") {
        const auto field = key.substr(9);
        if (!kServiceFields.count(field) || field == "upstream" || field.rfind("auth.", 0) == 0) {
          throw ConfigError(std::string(where) + ": unknown setting " + key);
        }
      }
    }
  };
  check_keys(layers.file(), sources.file_path.empty() ? "config" : sources.file_path.c_str());
  check_keys(layers.overrides(), "--set");

  Settings settings;
  for (const auto& name : layers.service_names()) {
    if (!protocol::valid_service_name(name)) {
      throw ConfigError("services." + name +
                        ": invalid service name (lower-case letters, digits and '-', at most 64)");
    }
    ServiceConfig svc;
    svc.name = name;
    const auto prefix = service_env_prefix(name);
    std::string default_url;
    for (const auto& b : kBuiltinServices) {
      if (name == b.name) default_url = b.url;
    }
    if (auto v = layers.get("services." + name + ".upstream", prefix + "_URL")) {
      svc.upstream = parse_upstream_url(v->origin, v->value);
    } else if (!default_url.empty()) {
      svc.upstream = parse_upstream_url("default for " + name, default_url);
    } else {
      throw ConfigError("services." + name + ".upstream (or " + prefix + "_URL) is required");
    }
    if (auto v = layers.service_value(name, "timeout", "PROXY_TIMEOUT")) {
      svc.timeout = parse_seconds(v->origin, v->value);
      if (svc.timeout.count() == 0) throw ConfigError(v->origin + ": must be greater than 0");
    }
    if (auto v = layers.service_value(name, "max_retries", "PROXY_MAX_RETRIES")) {
      svc.max_attempts = static_cast<int>(parse_int(v->origin, v->value, 1, 100));
    }
    if (auto v = layers.service_value(name, "retry_min_wait", "PROXY_RETRY_MIN_WAIT")) {
      svc.retry_min_wait = parse_seconds(v->origin, v->value);
    }
    if (auto v = layers.service_value(name, "retry_max_wait", "PROXY_RETRY_MAX_WAIT")) {
      svc.retry_max_wait = parse_seconds(v->origin, v->value);
    }
    if (svc.retry_max_wait < svc.retry_min_wait) {
      throw ConfigError("services." + name + ": retry_max_wait (PROXY_RETRY_MAX_WAIT) is below " +
                        "retry_min_wait (PROXY_RETRY_MIN_WAIT)");
    }
    if (auto v = layers.service_value(name, "max_queue", "COURIER_MAX_QUEUE")) {
      svc.max_queue = static_cast<std::size_t>(parse_int(v->origin, v->value, 0, 10'000'000));
    }
    if (auto v = layers.service_value(name, "concurrency", "COURIER_WORKER_CONCURRENCY")) {
      svc.worker_concurrency =
          static_cast<std::uint32_t>(parse_int(v->origin, v->value, 1, 100000));
    }
    if (auto v = layers.service_value(name, "max_connections", "COURIER_MAX_CONNECTIONS")) {
      svc.max_connections = static_cast<std::size_t>(parse_int(v->origin, v->value, 1, 100000));
    }
    if (auto v = layers.service_value(name, "circuit_failures", "COURIER_CIRCUIT_FAILURES")) {
      svc.circuit_failures = static_cast<int>(parse_int(v->origin, v->value, 0, 1'000'000));
    }
    if (auto v =
            layers.service_value(name, "circuit_min_requests", "COURIER_CIRCUIT_MIN_REQUESTS")) {
      svc.circuit_min_requests = static_cast<int>(parse_int(v->origin, v->value, 1, 1'000'000));
    }
    if (auto v =
            layers.service_value(name, "circuit_failure_rate", "COURIER_CIRCUIT_FAILURE_RATE")) {
      svc.circuit_failure_rate = parse_double(v->origin, v->value);
      if (!(svc.circuit_failure_rate > 0) || svc.circuit_failure_rate > 1) {
        throw ConfigError(v->origin + ": must be above 0 and at most 1 (a share of attempts)");
      }
    }
    if (auto v = layers.service_value(name, "circuit_window", "COURIER_CIRCUIT_WINDOW")) {
      svc.circuit_window = parse_seconds(v->origin, v->value);
      if (svc.circuit_window < std::chrono::milliseconds{100}) {
        throw ConfigError(v->origin + ": must be at least 0.1 seconds");
      }
    }
    if (auto v = layers.service_value(name, "circuit_cooldown", "COURIER_CIRCUIT_COOLDOWN")) {
      svc.circuit_cooldown = parse_seconds(v->origin, v->value);
    }
    if (auto v = layers.service_value(name, "circuit_probes", "COURIER_CIRCUIT_PROBES")) {
      svc.circuit_probes = static_cast<int>(parse_int(v->origin, v->value, 1, 10'000));
    }
    if (auto v = layers.service_value(name, "circuit_failure_statuses",
                                      "COURIER_CIRCUIT_FAILURE_STATUSES")) {
      svc.circuit_failure_statuses = parse_statuses(v->origin, v->value);
    }
    if (auto v = layers.service_value(name, "retry_budget_ratio", "COURIER_RETRY_BUDGET_RATIO")) {
      svc.retry_budget_ratio = parse_double(v->origin, v->value);
      if (svc.retry_budget_ratio < 0 || svc.retry_budget_ratio > 1) {
        throw ConfigError(v->origin + ": must be between 0 and 1");
      }
    }
    if (auto v = layers.service_value(name, "retry_budget_min", "COURIER_RETRY_BUDGET_MIN")) {
      svc.retry_budget_min = static_cast<int>(parse_int(v->origin, v->value, 0, 100000));
    }
    if (auto v = layers.get("services." + name + ".auth.mode", prefix + "_AUTH_MODE")) {
      if (v->value == "forward") {
        svc.auth_mode = AuthMode::kForward;
      } else if (v->value == "bearer") {
        svc.auth_mode = AuthMode::kBearer;
      } else if (v->value == "api-key") {
        svc.auth_mode = AuthMode::kApiKey;
      } else {
        throw ConfigError(v->origin + ": '" + v->value + "' must be forward, bearer or api-key");
      }
      if (svc.auth_mode != AuthMode::kForward) {
        svc.auth_secret = read_secret(v->origin, layers, name, sources.env);
      }
    }
    if (auto v = layers.get("services." + name + ".auth.header", prefix + "_AUTH_HEADER")) {
      if (v->value.empty() || v->value.find_first_of(" :\r\n\t") != std::string::npos) {
        throw ConfigError(v->origin + ": '" + v->value + "' is not a header name");
      }
      svc.auth_header = v->value;
    }
    settings.services.emplace(name, std::move(svc));
  }
  return settings;
}

ConfigFile::ConfigFile(const ConfigSources& sources)
    : layers_(std::make_shared<const detail::Layers>(sources)) {}

std::optional<std::string> ConfigFile::get(const std::string& key,
                                           const std::string& env_name) const {
  if (auto found = layers_->get(key, env_name)) return std::move(found->value);
  return std::nullopt;
}

}  // namespace courier
