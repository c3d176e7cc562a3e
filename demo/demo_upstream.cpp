#include "demo/demo_upstream.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <exception>
#include <iomanip>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <sstream>

namespace courier::demo {
namespace {

using nlohmann::json;

constexpr std::chrono::seconds kWriteTimeout{30};
constexpr std::chrono::milliseconds kAcceptBackoff{50};
constexpr std::string_view kServerName = "courier-demo-upstream";
constexpr std::string_view kGmModel = "courier-demo-gm";

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::optional<double> parse_double(std::string_view text) {
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::string hex_id(std::string_view prefix, std::uint64_t bits) {
  std::ostringstream out;
  out << prefix << std::hex << std::setw(16) << std::setfill('0') << bits;
  return out.str();
}

std::string iso8601(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

// The posted JSON object, or an empty object when the body is empty, not JSON or not an object:
// the real services are lenient enough that demos should not fail on a sloppy body.
json posted_object(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  return parsed.is_object() ? parsed : json::object();
}

json field_or(const json& object, const char* key, json fallback) {
  auto it = object.find(key);
  return it != object.end() && !it->is_null() ? *it : fallback;
}

Response json_response(unsigned status, const json& body) {
  return Response{status,
                  {{"Content-Type", "application/json"}},
                  body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

// The Rule Engine's envelope: {"status": "success"|"error", "data": ..., "message": ...}.
Response wrapped(unsigned status, json data, std::string message) {
  return json_response(status, {{"status", status < 400 ? "success" : "error"},
                                {"data", std::move(data)},
                                {"message", std::move(message)}});
}

Response not_found(Role role, const Request& request) {
  std::string message =
      "No route for " + request.method + " " + std::string(path_of(request.target));
  if (role == Role::kRuleEngine) return wrapped(404, nullptr, std::move(message));
  return json_response(404, {{"error", "not_found"}, {"message", std::move(message)}});
}

Response method_not_allowed(Role role, const Request& request, std::string_view allowed) {
  std::string message = "Method " + request.method + " not allowed";
  Response response =
      role == Role::kRuleEngine
          ? wrapped(405, nullptr, std::move(message))
          : json_response(405, {{"error", "method_not_allowed"}, {"message", std::move(message)}});
  response.headers.emplace_back("Allow", std::string(allowed));
  return response;
}

Response health(Role role, const HandlerContext& context) {
  json body = {{"status", "ok"}, {"service", role_name(role)}, {"time", iso8601(context.now)}};
  if (role == Role::kAiGm) body["model"] = kGmModel;
  return json_response(200, body);
}

Response session_add(const Request& request, const HandlerContext& context) {
  json data = posted_object(request.body);
  data["session_id"] = hex_id("sess-", context.entropy);
  data["created_at"] = iso8601(context.now);
  data["active"] = true;
  return wrapped(200, std::move(data), "Session created");
}

Response play_scenario(const Request& request, const HandlerContext& context) {
  static constexpr std::string_view kRules[] = {"initiative-order", "line-of-sight", "morale-check",
                                                "resource-upkeep"};
  const json posted = posted_object(request.body);
  const std::size_t first = context.entropy % std::size(kRules);
  json data = {
      {"scenario_id", field_or(posted, "scenario_id", "scenario-1")},
      {"session_id", field_or(posted, "session_id", nullptr)},
      {"run_id", hex_id("run-", splitmix64(context.entropy))},
      {"state", "running"},
      {"step", 1},
      {"triggered_rules", {kRules[first], kRules[(first + 1) % std::size(kRules)]}},
      {"request", posted},
  };
  return wrapped(200, std::move(data), "Scenario started");
}

Response game_turn(const Request& request, const HandlerContext& context) {
  struct Scene {
    std::string_view name;
    std::string_view narration;
  };
  static constexpr Scene kScenes[] = {
      {"north-gate", "Rain hammers the north gate while a guard squints at your papers."},
      {"market", "The market falls quiet; a hooded figure slips a note into your hand."},
      {"crypt", "Cold air rises from the crypt, and something below answers your torch."},
      {"harbour", "Gulls scatter as a black-sailed ship noses into the harbour."},
  };
  const json posted = posted_object(request.body);
  const Scene& scene = kScenes[context.entropy % std::size(kScenes)];

  std::int64_t turn = static_cast<std::int64_t>(context.sequence);
  if (auto it = posted.find("turn"); it != posted.end() && it->is_number_integer()) {
    turn = it->get<std::int64_t>() + 1;
  }
  std::string narration(scene.narration);
  const json action = field_or(posted, "action", field_or(posted, "player_action", nullptr));
  if (action.is_string()) narration = "You " + action.get<std::string>() + ". " + narration;

  json body = {
      {"session_id", field_or(posted, "session_id", nullptr)},
      {"turn", turn},
      {"narration", std::move(narration)},
      {"actions",
       {{{"type", "move"}, {"target", scene.name}},
        {{"type", "roll"}, {"dice", "1d20"}, {"result", 1 + (context.entropy >> 8) % 20}}}},
      {"state", {{"scene", scene.name}, {"tension", ((context.entropy >> 16) % 11) / 10.0}}},
      {"model", kGmModel},
  };
  return json_response(200, body);
}

struct Route {
  std::string_view method;
  std::string_view path;
  Response (*run)(Role, const Request&, const HandlerContext&);
};

constexpr Route kRuleEngineRoutes[] = {
    {"GET", "/health",
     [](Role r, const Request&, const HandlerContext& c) { return health(r, c); }},
    {"POST", "/session/add",
     [](Role, const Request& q, const HandlerContext& c) { return session_add(q, c); }},
    {"POST", "/play/scenario",
     [](Role, const Request& q, const HandlerContext& c) { return play_scenario(q, c); }},
};

constexpr Route kAiGmRoutes[] = {
    {"GET", "/health",
     [](Role r, const Request&, const HandlerContext& c) { return health(r, c); }},
    {"POST", "/api/v1/game/turn",
     [](Role, const Request& q, const HandlerContext& c) { return game_turn(q, c); }},
};

bool is_http_error(const beast::error_code& ec) {
  return &ec.category() == &http::make_error_code(http::error::bad_version).category();
}

void log_exception(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::error("connection coroutine failed: {}", e.what());
  }
}

}  // namespace

std::optional<Role> parse_role(std::string_view text) {
  if (text == "rule-engine") return Role::kRuleEngine;
  if (text == "ai-gm") return Role::kAiGm;
  return std::nullopt;
}

std::string_view role_name(Role role) {
  return role == Role::kRuleEngine ? "rule-engine" : "ai-gm";
}

std::optional<LatencyDistribution> parse_latency_distribution(std::string_view spec) {
  if (spec.empty() || spec == "none") return LatencyDistribution{};
  const auto first_colon = spec.find(':');
  const auto second_colon = spec.find(':', first_colon + 1);
  if (first_colon == std::string_view::npos || second_colon == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view kind = spec.substr(0, first_colon);
  const auto a = parse_double(spec.substr(first_colon + 1, second_colon - first_colon - 1));
  const auto b = parse_double(spec.substr(second_colon + 1));
  if (!a || !b || *a < 0 || *b < 0) return std::nullopt;
  if (kind == "uniform" && *a <= *b) {
    return LatencyDistribution{LatencyDistribution::Kind::kUniform, *a, *b};
  }
  if (kind == "normal") return LatencyDistribution{LatencyDistribution::Kind::kNormal, *a, *b};
  return std::nullopt;
}

std::chrono::milliseconds sample_latency(std::chrono::milliseconds fixed,
                                         const LatencyDistribution& distribution,
                                         std::mt19937_64& rng) {
  double extra = 0;
  switch (distribution.kind) {
    case LatencyDistribution::Kind::kNone:
      break;
    case LatencyDistribution::Kind::kUniform:
      extra = distribution.first == distribution.second
                  ? distribution.first
                  : std::uniform_real_distribution<double>(distribution.first,
                                                           distribution.second)(rng);
      break;
    case LatencyDistribution::Kind::kNormal:
      extra = distribution.second == 0
                  ? distribution.first
                  : std::normal_distribution<double>(distribution.first, distribution.second)(rng);
      break;
  }
  const auto total = static_cast<double>(fixed.count()) + std::max(extra, 0.0);
  return std::chrono::milliseconds(std::llround(std::max(total, 0.0)));
}

std::optional<ListenAddress> parse_listen(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // a bare IPv6 address is ambiguous without brackets
  }
  std::uint16_t port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size()) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  asio::ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  return ListenAddress{std::string(host), port};
}

Fate decide_fate(const Faults& faults, std::mt19937_64& rng) {
  // One draw partitions [0, 1): drops first, then errors, so the two rates add up predictably.
  const double draw = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (draw < faults.drop_rate) return Fate::kDrop;
  if (draw < faults.drop_rate + faults.error_rate) return Fate::kError;
  return Fate::kRespond;
}

bool is_health_check(const Request& request) {
  return (request.method == "GET" || request.method == "HEAD") &&
         path_of(request.target) == "/health";
}

Response handle(Role role, const Request& request, const HandlerContext& context) {
  const std::span<const Route> routes = role == Role::kRuleEngine
                                            ? std::span<const Route>(kRuleEngineRoutes)
                                            : std::span<const Route>(kAiGmRoutes);
  const std::string_view path = path_of(request.target);
  // Both arms must be views: a std::string arm would make the result a dangling temporary.
  const std::string_view method =
      request.method == "HEAD" ? std::string_view("GET") : std::string_view(request.method);
  const Route* same_path = nullptr;
  for (const Route& route : routes) {
    if (route.path != path) continue;
    if (route.method == method) return route.run(role, request, context);
    same_path = &route;
  }
  if (same_path != nullptr) {
    return method_not_allowed(role, request,
                              same_path->method == "GET" ? "GET, HEAD" : same_path->method);
  }
  return not_found(role, request);
}

Response injected_error(Role role, unsigned status) {
  std::string message = "injected failure (demo --error-rate)";
  if (role == Role::kRuleEngine) return wrapped(status, nullptr, std::move(message));
  return json_response(status, {{"error", "injected_failure"}, {"message", std::move(message)}});
}

struct DemoServer::Connection {
  explicit Connection(tcp::socket socket)
      : stream(std::move(socket)), timer(stream.get_executor()) {}
  beast::tcp_stream stream;
  asio::steady_timer timer;
  bool idle = true;  // waiting for a request; touched only on the connection's strand
};

struct DemoServer::Registry {
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> in_flight{0};
  std::mutex mutex;
  std::set<std::shared_ptr<Connection>> connections;
  bool accepting = false;
  std::function<void()> on_drained;

  // Called with `lock` held; releases it before running the callback.
  void notify_if_drained(std::unique_lock<std::mutex>& lock) {
    if (!stopping || accepting || !connections.empty() || !on_drained) return;
    auto callback = std::exchange(on_drained, {});
    lock.unlock();
    callback();
  }

  void connection_finished(const std::shared_ptr<Connection>& connection) {
    std::unique_lock lock(mutex);
    connections.erase(connection);
    notify_if_drained(lock);
  }
};

DemoServer::DemoServer(asio::io_context& io, Config config)
    : io_(io),
      config_(std::move(config)),
      acceptor_(asio::make_strand(io)),
      registry_(std::make_shared<Registry>()) {
  const tcp::endpoint endpoint(asio::ip::make_address(config_.listen.host), config_.listen.port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  endpoint_ = acceptor_.local_endpoint();
}

DemoServer::~DemoServer() {
  // Frames destroyed later by the io_context must not call back into the owner's (gone) state.
  std::lock_guard lock(registry_->mutex);
  registry_->on_drained = nullptr;
}

std::size_t DemoServer::active_connections() const {
  std::lock_guard lock(registry_->mutex);
  return registry_->connections.size();
}

std::size_t DemoServer::requests_in_flight() const { return registry_->in_flight.load(); }

void DemoServer::start() {
  {
    std::lock_guard lock(registry_->mutex);
    if (registry_->stopping || registry_->accepting) return;
    registry_->accepting = true;
  }
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), log_exception);
}

void DemoServer::stop(std::function<void()> on_drained) {
  std::vector<std::shared_ptr<Connection>> snapshot;
  {
    std::unique_lock lock(registry_->mutex);
    if (registry_->stopping.exchange(true)) return;
    registry_->on_drained = std::move(on_drained);
    snapshot.assign(registry_->connections.begin(), registry_->connections.end());
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    registry_->notify_if_drained(lock);
  }
  // Busy connections see `stopping` after their response; idle ones are woken here.
  for (auto& connection : snapshot) {
    asio::post(connection->stream.get_executor(), [connection] {
      if (connection->idle) connection->stream.cancel();
    });
  }
}

asio::awaitable<void> DemoServer::accept_loop() {
  auto registry = registry_;
  asio::steady_timer backoff(acceptor_.get_executor());
  while (!registry->stopping) {
    tcp::socket socket(asio::make_strand(io_));
    beast::error_code ec;
    co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (registry->stopping || ec == asio::error::operation_aborted) break;
    if (ec) {
      // Usually out of descriptors under load: wait for connections to go rather than spin.
      spdlog::warn("accept failed: {}", ec.message());
      backoff.expires_after(kAcceptBackoff);
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto connection = std::make_shared<Connection>(std::move(socket));
    {
      std::lock_guard lock(registry->mutex);
      if (registry->stopping) break;  // stop() has taken its snapshot: nobody would wake this one
      registry->connections.insert(connection);
    }
    asio::co_spawn(connection->stream.get_executor(), serve(connection, accepted_++),
                   log_exception);
  }
  std::unique_lock lock(registry->mutex);
  registry->accepting = false;
  registry->notify_if_drained(lock);
}

asio::awaitable<void> DemoServer::serve(std::shared_ptr<Connection> connection,
                                        std::uint64_t index) {
  // Unregisters however the coroutine ends, including when its frame is destroyed unrun.
  struct Unregister {
    std::shared_ptr<Registry> registry;
    std::shared_ptr<Connection> connection;
    ~Unregister() { registry->connection_finished(connection); }
  } unregister{registry_, connection};
  const auto& registry = unregister.registry;

  beast::tcp_stream& stream = connection->stream;
  std::mt19937_64 rng(splitmix64(config_.seed ^ splitmix64(index)));
  beast::flat_buffer buffer;
  for (;;) {
    connection->idle = true;
    if (registry->stopping) break;
    http::request_parser<http::string_body> parser;
    parser.body_limit(config_.body_limit);
    stream.expires_after(config_.idle_timeout);
    beast::error_code ec;
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    connection->idle = false;
    if (ec) {
      if (is_http_error(ec) && ec != http::error::end_of_stream &&
          ec != http::error::partial_message) {
        // Untrusted input: answer malformed requests, then hang up.
        const bool too_large = ec == http::error::body_limit;
        http::response<http::string_body> res{
            too_large ? http::status::payload_too_large : http::status::bad_request, 11};
        res.set(http::field::server, kServerName);
        res.set(http::field::content_type, "application/json");
        res.body() = json{{"error", too_large ? "payload_too_large" : "bad_request"},
                          {"message", ec.message()}}
                         .dump();
        res.keep_alive(false);
        res.prepare_payload();
        stream.expires_after(kWriteTimeout);
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      }
      break;
    }

    const auto started = std::chrono::steady_clock::now();
    struct InFlight {
      std::atomic<std::size_t>& count;
      explicit InFlight(std::atomic<std::size_t>& c) : count(c) { ++count; }
      ~InFlight() { --count; }
    } in_flight(registry->in_flight);
    http::request<http::string_body>& raw = parser.get();
    Request request{std::string(raw.method_string()), std::string(raw.target()),
                    std::move(raw.body())};
    Fate fate = Fate::kRespond;
    if (!is_health_check(request)) {
      const auto delay = sample_latency(config_.latency, config_.latency_distribution, rng);
      if (delay.count() > 0) {
        stream.expires_never();
        connection->timer.expires_after(delay);
        co_await connection->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      fate = decide_fate(config_.faults, rng);
    }
    if (fate == Fate::kDrop) {
      spdlog::debug("{} {} -> dropped connection", request.method, request.target);
      break;
    }

    const HandlerContext context{++sequence_, rng(), std::chrono::system_clock::now()};
    const Response response = fate == Fate::kError
                                  ? injected_error(config_.role, config_.faults.error_status)
                                  : handle(config_.role, request, context);
    http::response<http::string_body> res{static_cast<http::status>(response.status),
                                          raw.version()};
    res.set(http::field::server, kServerName);
    for (const auto& [name, value] : response.headers) res.set(name, value);
    res.body() = response.body;
    const bool keep_alive = raw.keep_alive() && !registry->stopping;
    res.keep_alive(keep_alive);
    res.prepare_payload();

    stream.expires_after(kWriteTimeout);
    if (raw.method() == http::verb::head) {
      http::response_serializer<http::string_body> serializer(res);
      co_await http::async_write_header(stream, serializer,
                                        asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    }
    spdlog::debug("{} {} -> {} in {} ms", request.method, request.target, response.status,
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count());
    if (ec || !keep_alive) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
}

}  // namespace courier::demo
