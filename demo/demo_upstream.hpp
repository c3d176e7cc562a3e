// The demo upstream: stand-ins for the Rule Engine and the AI GM with injectable latency, errors
// and dropped connections, for the compose demo, integration tests and benchmarks.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/asio.hpp"

namespace courier::demo {

enum class Role { kRuleEngine, kAiGm };
std::optional<Role> parse_role(std::string_view text);  // "rule-engine" | "ai-gm"
std::string_view role_name(Role role);

// Random latency added to every non-health request, on top of the fixed --latency-ms.
struct LatencyDistribution {
  enum class Kind { kNone, kUniform, kNormal };
  Kind kind = Kind::kNone;
  double first = 0;   // uniform: min ms; normal: mean ms
  double second = 0;  // uniform: max ms; normal: standard deviation ms
};
// "uniform:MIN:MAX" (0 <= MIN <= MAX) or "normal:MEAN:STDDEV" (both >= 0); "" or "none" -> kNone.
std::optional<LatencyDistribution> parse_latency_distribution(std::string_view spec);
// fixed + a draw from `distribution`, never negative.
std::chrono::milliseconds sample_latency(std::chrono::milliseconds fixed,
                                         const LatencyDistribution& distribution,
                                         std::mt19937_64& rng);

struct ListenAddress {
  std::string host;  // an IP literal; IPv6 without the brackets
  std::uint16_t port = 0;
};
// "HOST:PORT" or "[V6]:PORT"; HOST must be an IP address.
std::optional<ListenAddress> parse_listen(std::string_view text);

struct Faults {
  double error_rate = 0;  // share of requests answered with error_status
  unsigned error_status = 503;
  double drop_rate = 0;  // share of requests whose connection is closed without a response
};
enum class Fate { kRespond, kError, kDrop };
Fate decide_fate(const Faults& faults, std::mt19937_64& rng);

struct Request {
  std::string method;
  std::string target;
  std::string body;
};

struct Response {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // Content-Type is always set
  std::string body;
  // Work the route emulates before answering (a whole LLM completion), on top of --latency-ms.
  std::chrono::milliseconds delay{0};
};

// Per-request knobs of the streaming routes, from the query string, so tests and benchmarks can
// shorten or stretch a stream. Every value is capped: a hostile query gets a 400, never a stream
// that runs for days or a buffer of gigabytes.
struct StreamParams {
  std::chrono::milliseconds think{1500};   // before the head, like the LLM call
  std::chrono::milliseconds interval{50};  // between pieces
  std::uint64_t count = 0;                 // characters, tokens or bytes; 0: the route's default
  std::uint64_t chunk = 64 * 1024;         // /bytes only
};
inline constexpr std::chrono::milliseconds kMaxThink{60'000};
inline constexpr std::chrono::milliseconds kMaxInterval{10'000};
inline constexpr std::uint64_t kMaxPieces = 100'000;  // characters or tokens
inline constexpr std::uint64_t kMaxBytes = 16ULL << 30;
inline constexpr std::uint64_t kMaxChunk = 1 << 20;
// think + pieces x interval: longer than the default stream_max_duration (600 s), so that cap can
// be exercised, but finite.
inline constexpr std::chrono::milliseconds kMaxStreamDuration{15 * 60 * 1000};

// Parses `think_ms`, `interval_ms`, `chunk` and `count_key` ("chars", "tokens"; "" for none,
// 1..max_count) from a query string ("a=1&b=2", no leading '?'); other keys are ignored, the last
// of repeated keys wins. nullopt with `error` naming the offending parameter and its range.
std::optional<StreamParams> parse_stream_params(std::string_view query, StreamParams defaults,
                                                std::string_view count_key, std::uint64_t max_count,
                                                std::string& error);

// A streamed answer: the head after `think`, then `pieces()` chunks `interval` apart, each written
// and flushed on its own (chunked transfer encoding), then the terminating chunk.
struct StreamPlan {
  enum class Kind {
    kCharacters,  // riddle/quiz: one UTF-8 character per chunk, no SSE framing (as the Rule Engine)
    kChatChunks,  // OpenAI-style SSE: one "data: {chunk}" event per token, then "data: [DONE]"
    kBytes,       // throughput: `total` bytes in chunks of `chunk`
  };
  Kind kind = Kind::kCharacters;
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // Content-Type is always set
  std::chrono::milliseconds think{0};
  std::chrono::milliseconds interval{0};
  // kCharacters, kChatChunks: `count` units cycled from `text` (static storage), unit k being
  // text[cuts[k], cuts[k + 1]); so a long stream costs no more memory than a short one.
  std::string_view text;
  std::vector<std::uint32_t> cuts;
  std::uint64_t count = 0;
  std::string id;            // kChatChunks: completion id
  std::string model;         // kChatChunks
  std::int64_t created = 0;  // kChatChunks: unix seconds
  std::uint64_t total = 0;   // kBytes
  std::uint64_t chunk = 0;   // kBytes

  std::uint64_t pieces() const;
  // Piece `index` (< pieces()) into `out`, reusing its capacity.
  void piece(std::uint64_t index, std::string& out) const;
};

using Answer = std::variant<Response, StreamPlan>;

// What a handler may vary on, passed in so tests get the same answer every time.
struct HandlerContext {
  std::uint64_t sequence = 1;  // 1-based request number within the server
  std::uint64_t entropy = 0;   // random bits for ids and choices
  std::chrono::system_clock::time_point now{};
};

// The emulated service itself: pure, no I/O. HEAD is routed like GET. Streaming routes answer
// with a plan the server plays out; everything else (and every error) with a Response.
Answer handle(Role role, const Request& request, const HandlerContext& context);
// The answer to a request picked for an injected error.
Response injected_error(Role role, unsigned status);
// Health checks skip latency and faults, so orchestrators do not flap the container.
bool is_health_check(const Request& request);

struct Config {
  Role role = Role::kRuleEngine;
  ListenAddress listen{"127.0.0.1", 8031};
  std::chrono::milliseconds latency{0};
  LatencyDistribution latency_distribution{};
  Faults faults{};
  std::uint64_t seed = 0;
  std::chrono::milliseconds idle_timeout{60'000};  // keep-alive connections idle longer are closed
  std::size_t body_limit = 8 * 1024 * 1024;
};

// Keep-alive HTTP/1.1 server running `handle` on a caller-owned io_context (any number of threads:
// each connection runs on its own strand).
class DemoServer {
 public:
  DemoServer(asio::io_context& io, Config config);  // binds; throws std::system_error on failure
  ~DemoServer();
  DemoServer(const DemoServer&) = delete;
  DemoServer& operator=(const DemoServer&) = delete;

  tcp::endpoint local_endpoint() const { return endpoint_; }  // the real port when bound to 0
  std::uint16_t port() const { return endpoint_.port(); }

  void start();
  // Stops accepting, closes idle connections and lets in-flight requests finish (their responses
  // say "Connection: close"). `on_drained` runs once, on a server thread, when no connection is
  // left. Thread-safe; later calls are ignored.
  void stop(std::function<void()> on_drained = {});

  std::size_t active_connections() const;
  std::size_t requests_in_flight() const;  // read but not yet answered (or dropped)
  std::uint64_t requests_served() const { return sequence_.load(); }
  // Streams whose client hung up (or stopped reading past the write timeout) before the end.
  std::uint64_t streams_abandoned() const { return streams_abandoned_.load(); }

 private:
  struct Connection;
  // Connection bookkeeping, shared with the coroutines: after a hard stop the io_context may
  // destroy their frames after the server is gone, and those frames must not reach into it.
  struct Registry;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<Connection> connection, std::uint64_t index);
  // Think, head, pieces, last chunk; an error when the connection must not be reused.
  asio::awaitable<beast::error_code> play_stream(std::shared_ptr<Connection> connection,
                                                 const StreamPlan& plan, unsigned version,
                                                 bool keep_alive, bool head_only);

  asio::io_context& io_;
  const Config config_;
  tcp::acceptor acceptor_;
  tcp::endpoint endpoint_;
  std::shared_ptr<Registry> registry_;
  std::atomic<std::uint64_t> sequence_{0};
  std::atomic<std::uint64_t> streams_abandoned_{0};
  std::uint64_t accepted_ = 0;  // accept loop only
};

}  // namespace courier::demo
