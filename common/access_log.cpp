#include "common/access_log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/config.hpp"

namespace courier::access {
namespace {

struct State {
  Options options;
  std::shared_ptr<spdlog::logger> logger;  // null until configure(): the default logger is used
};

State& state() {
  static State s;
  return s;
}

// The payload is the whole line already (a JSON object): nothing to add but the newline.
class RawFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    dest.append(msg.payload.data(), msg.payload.data() + msg.payload.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<RawFormatter>();
  }
};

double rounded(double ms) { return std::round(ms * 1000.0) / 1000.0; }

bool needs_quotes(std::string_view v) {
  return std::any_of(v.begin(), v.end(), [](unsigned char c) {
    return c <= 0x20 || c >= 0x7f || c == '"' || c == '=' || c == '\\';
  });
}

void append_text(std::string& out, std::string_view key, std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += ' ';
  out.append(key);
  out += '=';
  if (value.empty()) {
    out += '-';
    return;
  }
  if (!needs_quotes(value)) {
    out.append(value);
    return;
  }
  out += '"';
  for (unsigned char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
}

std::string number(double ms) { return fmt::format("{:.1f}", ms); }

}  // namespace

std::string iso8601(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  const auto secs = static_cast<std::time_t>(std::chrono::floor<std::chrono::seconds>(ms).count());
  const auto frac = static_cast<int>(ms.count() - static_cast<long long>(secs) * 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", std::string_view(buf, n), frac);
}

std::string render_json(const Record& r) {
  const bool gateway = r.component == "gateway";
  nlohmann::ordered_json j;
  j["time"] = iso8601(r.time);
  j["level"] = "info";
  j["component"] = r.component;
  j["event"] = "access";
  j["request_id"] = r.request_id;
  j["trace_id"] = r.trace_id;
  if (gateway) j["client"] = r.client;
  j["service"] = r.service;
  j["method"] = r.method;
  j["path"] = r.path;
  j["status"] = r.status;
  j["code"] = r.code;
  j["attempts"] = r.attempts;
  j["duration_ms"] = rounded(r.duration_ms);
  if (r.upstream_ms) j["upstream_ms"] = rounded(*r.upstream_ms);
  j["worker"] = r.worker;
  if (gateway) j["subject"] = r.subject;
  j["bytes_in"] = r.bytes_in;
  j["bytes_out"] = r.bytes_out;
  if (gateway) j["user_agent"] = r.user_agent;
  if (!r.stream.empty()) j["stream"] = r.stream;
  if (!r.reason.empty()) j["reason"] = r.reason;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string render_text(const Record& r) {
  const bool gateway = r.component == "gateway";
  std::string out = "access";
  out.reserve(256);
  append_text(out, "request_id", r.request_id);
  append_text(out, "trace_id", r.trace_id);
  if (gateway) append_text(out, "client", r.client);
  append_text(out, "service", r.service);
  append_text(out, "method", r.method);
  append_text(out, "path", r.path);
  append_text(out, "status", std::to_string(r.status));
  append_text(out, "code", r.code);
  append_text(out, "attempts", std::to_string(r.attempts));
  append_text(out, "duration_ms", number(r.duration_ms));
  if (r.upstream_ms) append_text(out, "upstream_ms", number(*r.upstream_ms));
  append_text(out, "worker", r.worker);
  if (gateway) append_text(out, "subject", r.subject);
  append_text(out, "bytes_in", std::to_string(r.bytes_in));
  append_text(out, "bytes_out", std::to_string(r.bytes_out));
  if (gateway) append_text(out, "user_agent", r.user_agent);
  if (!r.stream.empty()) append_text(out, "stream", r.stream);
  if (!r.reason.empty()) append_text(out, "reason", r.reason);
  return out;
}

std::string loggable_path(std::string_view target, bool log_query) {
  const auto q = target.find('?');
  if (log_query || q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q + 1));
  auto query = target.substr(q + 1);
  for (bool first = true;; first = false) {
    const auto amp = query.find('&');
    const auto param = query.substr(0, amp);
    if (!first) out += '&';
    const auto eq = param.find('=');
    if (eq == std::string_view::npos) {
      out.append(param);  // a bare key
    } else {
      out.append(param.substr(0, eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

std::vector<std::string> parse_skip_list(const std::string& setting, std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    auto item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      if (item.front() != '/') {
        throw ConfigError(setting + ": '" + std::string(item) +
                          "' is not a path (paths start with '/')");
      }
      out.emplace_back(item);
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

void configure(const Options& options, const std::string& component) {
  auto& s = state();
  s.options = options;
  auto logger = std::make_shared<spdlog::logger>(component,
                                                 std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (options.json) {
    logger->set_formatter(std::make_unique<RawFormatter>());
  } else {
    // The component is a fixed name (gateway, worker), safe in a pattern.
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [" + component + "] %v",
                        spdlog::pattern_time_type::utc);
  }
  // Its own switch, not logging.level: records are on or off as a whole.
  logger->set_level(spdlog::level::info);
  s.logger = std::move(logger);
}

const Options& options() { return state().options; }

bool wanted(std::string_view target) {
  const auto& o = state().options;
  if (!o.enabled) return false;
  const auto path = target.substr(0, target.find('?'));
  return std::find(o.skip.begin(), o.skip.end(), path) == o.skip.end();
}

void write(const Record& r) {
  const auto& s = state();
  if (!s.options.enabled) return;
  if (!s.logger) {
    spdlog::info("{}", render_text(r));
    return;
  }
  const auto line = s.options.json ? render_json(r) : render_text(r);
  s.logger->log(spdlog::level::info, spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace courier::access
