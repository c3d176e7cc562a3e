// The access record: one per request, the same shape from the gateway and the worker, rendered
// as a JSON object (fields at top level) or as key=value text that no request byte can forge.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace courier::access {

struct Record {
  std::chrono::system_clock::time_point time{};  // when the request finished
  std::string component;                         // gateway or worker
  std::string request_id;
  std::string trace_id;
  std::string client;  // gateway only: the TCP peer
  std::string service;
  std::string method;
  std::string path;     // already passed through loggable_path()
  unsigned status = 0;  // 499: the client left before its response was complete
  std::string code;     // Courier's error code when Courier produced the answer, else ""
  std::uint32_t attempts = 0;
  double duration_ms = 0;
  std::optional<double> upstream_ms;  // time on the upstream, when known
  std::string worker;                 // the worker's id
  std::string subject;                // gateway: the authenticated caller, when auth is on
  std::uint64_t bytes_in = 0;         // request body bytes
  std::uint64_t bytes_out = 0;        // response body bytes written (worker: sent back)
  std::string user_agent;             // gateway only
  std::string stream;                 // a stream's outcome: complete, truncated or cancelled
  std::string reason;                 // why a stream was not complete, or a request refused
};

// "2026-12-02T14:41:36.123Z".
std::string iso8601(std::chrono::system_clock::time_point t);

// One JSON object (no newline): time, level, component, event "access", then the fields.
// Invalid UTF-8 is replaced (U+FFFD), so any bytes give valid JSON.
std::string render_json(const Record& r);
// "access request_id=... status=... ...": time, level and component come from the line's prefix.
// A value with a space, '"', '=', '\', a control or a non-ASCII byte is quoted, with '"' and '\'
// escaped and the other bytes written \xHH; an empty value is "-".
std::string render_text(const Record& r);

// `target` for the log: without log_query, every query value is dropped and the keys stay
// ("/p?user_id=7&page=2" -> "/p?user_id=&page="), since clients put tokens in values.
std::string loggable_path(std::string_view target, bool log_query);

struct Options {
  bool enabled = true;                                                  // logging.access_log
  std::vector<std::string> skip = {"/healthz", "/readyz", "/metrics"};  // exact paths, no query
  bool log_query = false;                                               // logging.log_query
  bool json = false;                                                    // logging.format=json
};

// Parses logging.access_log_skip: comma-separated paths, blanks ignored; each must start with '/'
// (throws ConfigError naming `setting` otherwise).
std::vector<std::string> parse_skip_list(const std::string& setting, std::string_view text);

// Set once by setup_logging, before any thread logs; read by every thread afterwards.
void configure(const Options& options, const std::string& component);
const Options& options();
// False when access records are off, or the path (query ignored) is in the skip list.
bool wanted(std::string_view target);
// Writes the record as one line (stderr), in the configured format, whatever logging.level is.
void write(const Record& r);

}  // namespace courier::access
