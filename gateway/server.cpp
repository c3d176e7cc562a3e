#include "gateway/server.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <nlohmann/json.hpp>

#include "common/errors.hpp"
#include "common/frames.hpp"
#include "common/http_headers.hpp"
#include "common/io_loop.hpp"
#include "gateway/broker_view.hpp"
#include "gateway/dashboard_html.hpp"
#include "gateway/request_mapper.hpp"

namespace courier::gateway {

using Clock = std::chrono::steady_clock;

struct Server::Exchange {
  HttpRequest request;
  HttpResponse response;
  std::string client;
  std::string service;
  std::string request_id;
  std::string subject;         // authenticated caller, when auth is on
  bool authenticated = false;  // credentials already verified (on the head, for Expect)
  std::uint32_t attempts = 0;
  Clock::time_point start;
};

namespace {

void log_exception(std::exception_ptr e, const char* what) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("{}: unexpected exception: {}", what, ex.what());
  }
}

HttpResponse json_response(unsigned status, std::string body, const HttpRequest& req) {
  HttpResponse res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// Maps a read error to the error reply it deserves, or nullopt when the connection just ends.
std::optional<std::pair<ErrorKind, std::string>> read_error_reply(const beast::error_code& ec) {
  if (ec == http::error::header_limit) return std::pair{ErrorKind::kHeadersTooLarge, ec.message()};
  if (ec == http::error::body_limit) return std::pair{ErrorKind::kPayloadTooLarge, ec.message()};
  if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return std::pair{ErrorKind::kBadRequest, ec.message()};
  }
  return std::nullopt;
}

// The gateway's own endpoints, answered without the broker and without credentials.
bool is_local_endpoint(http::verb method, std::string_view target) {
  if (method != http::verb::get && method != http::verb::head) return false;
  return target == "/healthz" || target == "/readyz" || target == "/services" ||
         target == "/metrics" || target == "/dashboard";
}

}  // namespace

Server::Server(ServerOptions options, Settings settings, BrokerClient& broker)
    : options_(std::move(options)),
      settings_(std::move(settings)),
      broker_(broker),
      auth_(options_.auth),
      service_stats_([this] {
        std::vector<std::string> names;
        for (const auto& [name, svc] : settings_.services) names.push_back(name);
        return names;
      }()),
      ids_(IdGenerator::random_prefix()),
      acceptor_(io_) {}

Server::~Server() {
  if (!threads_.empty()) stop(std::chrono::milliseconds(0));
}

std::uint16_t Server::start() {
  const tcp::endpoint endpoint(asio::ip::make_address(options_.listen_address),
                               options_.listen_port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  const auto port = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, accept_loop(), [](std::exception_ptr e) { log_exception(e, "accept"); });
  int n = options_.threads > 0
              ? options_.threads
              : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run_io(io_, "HTTP"); });
  spdlog::info("gateway listening on {}:{} with {} threads", options_.listen_address, port, n);
  return port;
}

void Server::stop(std::chrono::milliseconds grace) {
  stopping_.store(true);
  asio::post(io_, [this] {
    beast::error_code ec;
    acceptor_.close(ec);
  });
  const auto until = Clock::now() + grace;
  while (counters_.in_flight.load() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  io_.stop();
  wait();
}

void Server::wait() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

asio::awaitable<void> Server::accept_loop() {
  for (;;) {
    beast::error_code ec;
    auto socket = co_await acceptor_.async_accept(asio::make_strand(io_),
                                                  asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping_.load()) co_return;
      // EMFILE and friends: keep serving the connections we have.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (static_cast<std::size_t>(counters_.connections.load()) >= options_.max_connections) {
      counters_.rejected_connections.fetch_add(1);
      socket.close(ec);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto executor = socket.get_executor();
    asio::co_spawn(executor, session(std::move(socket)),
                   [](std::exception_ptr e) { log_exception(e, "session"); });
  }
}

struct Server::ReadResult {
  enum class Outcome { kRequest, kClosed, kRejected } outcome = Outcome::kRequest;
  ErrorKind kind = ErrorKind::kBadRequest;  // when rejected
  std::string detail;
  // Set when the head's credentials were verified before the body was invited (Expect).
  std::optional<std::string> subject;

  static ReadResult request() { return {}; }
  static ReadResult closed() { return {Outcome::kClosed, ErrorKind::kBadRequest, {}, {}}; }
  static ReadResult rejected(ErrorKind kind, std::string detail) {
    return {Outcome::kRejected, kind, std::move(detail), {}};
  }
};

asio::awaitable<void> Server::session(tcp::socket socket) {
  counters_.connections.fetch_add(1);
  struct Release {
    std::atomic<std::int64_t>& n;
    ~Release() { n.fetch_sub(1); }
  } release{counters_.connections};

  beast::error_code ec;
  std::string client;
  if (auto ep = socket.remote_endpoint(ec); !ec) client = ep.address().to_string();
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (bool first = true;; first = false) {
    // Between requests the client may idle; once a request starts it must arrive promptly.
    if (!first && buffer.size() == 0) {
      stream.expires_after(options_.idle_timeout);
      // 1 KiB holds a typical request head; a longer one grows the buffer as it is read.
      const auto n = co_await stream.async_read_some(buffer.prepare(1024),
                                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      buffer.commit(n);
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options_.max_header));
    parser.body_limit(options_.max_body);
    auto read = co_await read_request(stream, buffer, parser);
    if (read.outcome == ReadResult::Outcome::kClosed) break;
    if (read.outcome == ReadResult::Outcome::kRejected) {
      co_await reject(stream, std::move(read), client);
      co_return;
    }

    Exchange ex;
    ex.client = client;
    ex.start = Clock::now();
    ex.request = parser.release();
    if (read.subject) {
      ex.subject = std::move(*read.subject);
      ex.authenticated = true;
    }
    // While the request is away (up to a minute for a slow service) its connection holds no read
    // buffer; bytes of a pipelined next request keep it.
    if (buffer.size() == 0) buffer.shrink_to_fit();
    // Counted until the response is written, so a graceful stop waits for the bytes too.
    counters_.in_flight.fetch_add(1);
    co_await handle(ex);
    // Whoever built the response, a HEAD answer carries the headers only.
    if (ex.request.method() == http::verb::head) ex.response.body().clear();
    if (stopping_.load()) ex.response.keep_alive(false);
    const bool keep_alive = ex.response.keep_alive();
    stream.expires_after(options_.body_timeout);
    co_await http::async_write(stream, ex.response, asio::redirect_error(asio::use_awaitable, ec));
    counters_.in_flight.fetch_sub(1);
    record(ex);
    if (ec || !keep_alive) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<Server::ReadResult> Server::read_request(
    beast::tcp_stream& stream, beast::flat_buffer& buffer,
    http::request_parser<http::string_body>& parser) {
  beast::error_code ec;
  std::optional<std::string> subject;
  stream.expires_after(options_.header_timeout);
  co_await http::async_read_header(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    if (const auto expect = parser.get()[http::field::expect]; !expect.empty()) {
      if (!iequals(expect, "100-continue")) {
        co_return ReadResult::rejected(ErrorKind::kBadRequest, "unsupported Expect header");
      }
      // The client waits for our word before sending the body: refuse now what the head
      // alone condemns (unknown service, bad credentials) rather than invite a body to reject.
      if (auto refusal = check_head(parser.get(), subject)) co_return std::move(*refusal);
      if (!parser.is_done()) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        stream.expires_after(options_.body_timeout);
        co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
      }
    }
  }
  if (!ec) {
    stream.expires_after(options_.body_timeout);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec) {
    auto result = ReadResult::request();
    result.subject = std::move(subject);
    co_return result;
  }
  if (const auto reply = read_error_reply(ec)) {
    co_return ReadResult::rejected(reply->first, reply->second);
  }
  co_return ReadResult::closed();  // closed, timed out, or reset: nobody to answer
}

std::optional<Server::ReadResult> Server::check_head(const HttpRequest& head,
                                                     std::optional<std::string>& subject) const {
  const auto target = head.target();
  if (is_local_endpoint(head.method(), target)) return std::nullopt;
  // Credentials first, as for a request without Expect: strangers learn nothing of the routes.
  if (auth_.enabled()) {
    auto result = check_credentials(head);
    if (!result.ok) return ReadResult::rejected(ErrorKind::kUnauthorized, result.reason);
    subject = std::move(result.subject);  // verified once: the full request is not checked again
  }
  const auto route_result = route(target);
  if (!route_result || !settings_.find(route_result->service)) {
    return ReadResult::rejected(ErrorKind::kUnknownService,
                                "no service at " + std::string(target.substr(0, 200)));
  }
  return std::nullopt;
}

asio::awaitable<void> Server::reject(beast::tcp_stream& stream, ReadResult failure,
                                     const std::string& client) {
  counters_.bad_requests.fetch_add(1);
  auto res = error_response(static_cast<int>(failure.kind), "", failure.detail, nullptr, "");
  if (failure.kind == ErrorKind::kUnauthorized) add_challenge(res);
  res.keep_alive(false);
  metrics_.observe("none", res.result_int(), std::chrono::duration<double>(0));
  spdlog::info("access client={} status={} error=\"{}\"", client, res.result_int(), failure.detail);
  beast::error_code ec;
  stream.expires_after(options_.body_timeout);
  co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  // Lingering close: the client may still be sending the body we refused; reading it (bounded)
  // lets the client finish writing and read our answer instead of getting a reset.
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(options_.linger);
  std::array<char, 16384> sink;
  std::size_t drained = 0;
  while (!ec && drained < (64u << 20)) {
    drained += co_await stream.async_read_some(asio::buffer(sink),
                                               asio::redirect_error(asio::use_awaitable, ec));
  }
}

void Server::record(const Exchange& ex) {
  const auto elapsed = Clock::now() - ex.start;
  metrics_.observe(ex.service.empty() ? "none" : ex.service, ex.response.result_int(), elapsed);
  if (!ex.service.empty()) {
    service_stats_.record(ex.service, ex.response.result_int(),
                          std::chrono::duration<double, std::milli>(elapsed).count());
  }
  spdlog::info(
      "access client={} method={} target=\"{}\" service={} status={} attempts={} ms={:.1f} "
      "request_id={} subject={} bytes={}",
      ex.client, std::string(ex.request.method_string()), std::string(ex.request.target()),
      ex.service.empty() ? "-" : ex.service, ex.response.result_int(), ex.attempts,
      std::chrono::duration<double, std::milli>(elapsed).count(),
      ex.request_id.empty() ? "-" : ex.request_id, ex.subject.empty() ? "-" : ex.subject,
      ex.response.body().size());
}

asio::awaitable<void> Server::handle(Exchange& ex) {
  counters_.requests.fetch_add(1);
  const auto target = ex.request.target();
  if (is_local_endpoint(ex.request.method(), target)) {
    local_endpoint(ex);
    co_return;
  }
  if (!authenticate(ex)) co_return;
  co_await forward(ex);
}

AuthResult Server::check_credentials(const HttpRequest& req) const {
  return auth_.check(req[http::field::authorization], req["X-API-Key"],
                     std::chrono::system_clock::now());
}

void Server::add_challenge(HttpResponse& res) const {
  if (auth_.accepts_bearer()) res.set(http::field::www_authenticate, "Bearer");
}

bool Server::authenticate(Exchange& ex) {
  if (!auth_.enabled() || ex.authenticated) return true;
  auto result = check_credentials(ex.request);
  if (result.ok) {
    ex.subject = std::move(result.subject);
    return true;
  }
  ex.response = error_response(static_cast<int>(ErrorKind::kUnauthorized), "", result.reason,
                               &ex.request, "");
  add_challenge(ex.response);
  return false;
}

void Server::local_endpoint(Exchange& ex) {
  const auto target = ex.request.target();
  if (target == "/healthz") {
    ex.response = json_response(200, R"({"status":"ok"})", ex.request);
    return;
  }
  if (target == "/dashboard") {
    ex.response = HttpResponse{http::status::ok, ex.request.version()};
    ex.response.set(http::field::content_type, "text/html; charset=utf-8");
    ex.response.set(http::field::cache_control, "no-cache");
    ex.response.keep_alive(ex.request.keep_alive());
    ex.response.body() = std::string(kDashboardHtml);
    ex.response.prepare_payload();
    return;
  }
  const auto brokers = broker_.brokers();
  if (target == "/metrics") {
    GatewaySnapshot snapshot;
    snapshot.in_flight = counters_.in_flight.load();
    snapshot.connections = counters_.connections.load();
    snapshot.bad_requests = counters_.bad_requests.load();
    snapshot.timeouts = counters_.timeouts.load();
    snapshot.rejected_connections = counters_.rejected_connections.load();
    snapshot.late_replies = broker_.late_replies();
    snapshot.failovers = broker_.failovers();
    snapshot.broker_connected = broker_.connected();
    ex.response = HttpResponse{http::status::ok, ex.request.version()};
    ex.response.set(http::field::content_type, kMetricsContentType);
    ex.response.keep_alive(ex.request.keep_alive());
    ex.response.body() = metrics_.render(snapshot, brokers);
    ex.response.prepare_payload();
    return;
  }
  const auto stats = merge_broker_stats(brokers);
  const auto& services = stats["services"];
  if (target == "/readyz") {
    // Ready when some broker answers and, across the connected brokers, every service has a
    // live worker.
    std::vector<std::string> missing;
    for (const auto& [name, svc] : settings_.services) {
      const auto it = services.find(name);
      if (it == services.end() || it->value("workers", 0) == 0) missing.push_back(name);
    }
    nlohmann::json body;
    if (!broker_.connected()) {
      body = {{"status", "not ready"}, {"reason", "broker not connected"}};
    } else if (!missing.empty()) {
      body = {{"status", "not ready"}, {"reason", "no workers"}, {"services", missing}};
    } else {
      body = {{"status", "ready"}};
    }
    ex.response = json_response(body["status"] == "ready" ? 200 : 503, body.dump(), ex.request);
    return;
  }
  // /services: configured services joined with what the brokers report.
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, svc] : settings_.services) {
    nlohmann::json entry = {{"upstream", svc.upstream.text},
                            {"timeout_s", svc.timeout.count() / 1000.0},
                            {"max_attempts", svc.max_attempts}};
    if (const auto it = services.find(name); it != services.end()) {
      entry.update(*it);
    } else {
      entry.update({{"workers", 0}, {"capacity", 0}, {"in_flight", 0}, {"queue_depth", 0}});
    }
    entry["gateway"] = service_stats_.snapshot(name);
    out[name] = std::move(entry);
  }
  std::string ids;
  for (const auto& b : stats["brokers"]) {
    if (!b.contains("id")) continue;
    ids += (ids.empty() ? "" : ",") + b["id"].get<std::string>();
  }
  nlohmann::json body = {{"broker_connected", broker_.connected()},
                         {"services", std::move(out)},
                         {"broker", {{"id", ids}, {"counters", stats["counters"]}}},
                         {"brokers", stats["brokers"]}};
  body["gateway"] = {{"requests", counters_.requests.load()},
                     {"in_flight", counters_.in_flight.load()},
                     {"connections", counters_.connections.load()},
                     {"bad_requests", counters_.bad_requests.load()},
                     {"timeouts", counters_.timeouts.load()},
                     {"late_replies", broker_.late_replies()},
                     {"failovers", broker_.failovers()}};
  ex.response = json_response(200, body.dump(2), ex.request);
}

asio::awaitable<void> Server::forward(Exchange& ex) {
  const auto* req = &ex.request;
  auto route_result = route(req->target());
  const ServiceConfig* svc = route_result ? settings_.find(route_result->service) : nullptr;
  if (!svc) {
    ex.response =
        error_response(static_cast<int>(ErrorKind::kUnknownService), "",
                       "no service at " + std::string(req->target().substr(0, 200)), req, "");
    co_return;
  }
  ex.service = svc->name;
  const auto given_id = (*req)["X-Request-ID"];
  const auto id = ids_.next();
  ex.request_id = valid_request_id(given_id) ? std::string(given_id) : to_hex(id);
  const auto budget = request_budget(*svc, (*req)["X-Request-Timeout"]);
  if (!budget) {
    ex.response = error_response(static_cast<int>(ErrorKind::kBadRequest), svc->name,
                                 "X-Request-Timeout must be a positive number of seconds", req,
                                 ex.request_id);
    co_return;
  }

  RequestEnvelope envelope;
  envelope.id = id;
  envelope.service = svc->name;
  envelope.method = std::string(req->method_string());
  envelope.target = std::move(route_result->target);
  envelope.headers = forwarded_headers(*req, ex.client);
  // A gateway API key is the gateway's credential, not the upstream's: it goes no further.
  if (auth_.accepts_api_keys()) {
    std::erase_if(envelope.headers, [](const Header& h) { return iequals(h.name, "x-api-key"); });
  }
  if (!ex.subject.empty()) envelope.headers.push_back({std::string(kSubjectHeader), ex.subject});
  // The upstream sees the id we settled on, whatever the client sent.
  std::erase_if(envelope.headers, [](const Header& h) { return iequals(h.name, "x-request-id"); });
  envelope.body = std::move(ex.request.body());
  envelope.deadline_ms = protocol::unix_ms_now() + static_cast<std::uint64_t>(budget->count());
  envelope.request_id = ex.request_id;

  protocol::RequestHeader header;
  header.service = svc->name;
  header.id = id;
  header.deadline_ms = envelope.deadline_ms;
  header.flags = is_retry_safe(envelope.method, envelope.headers) ? protocol::kFlagRetrySafe : 0;

  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    std::optional<BrokerResult> result;
  };
  const auto executor = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<Waiter>(executor);
  waiter->timer.expires_after(*budget + options_.deadline_slack);
  broker_.submit(header, encode(envelope), [waiter, executor](BrokerResult r) {
    asio::post(executor, [waiter, r = std::move(r)]() mutable {
      waiter->result = std::move(r);
      waiter->timer.cancel();
    });
  });
  envelope = {};  // the body now lives in the encoded frame

  beast::error_code ec;
  while (!waiter->result) {
    co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (waiter->result) break;
    if (ec == asio::error::operation_aborted) continue;
    if (broker_.cancel(id)) {
      counters_.timeouts.fetch_add(1);
      ex.response = error_response(static_cast<int>(ErrorKind::kTimeout), svc->name,
                                   "no reply within " + std::to_string(budget->count()) + " ms",
                                   req, ex.request_id);
      co_return;
    }
    // The reply is already on its way to this strand: wait for it.
    waiter->timer.expires_after(std::chrono::seconds(5));
  }

  ReplyEnvelope reply;
  if (waiter->result->local) {
    reply = std::move(*waiter->result->local);
  } else if (const auto dec = decode(protocol::view(waiter->result->envelope), reply)) {
    ex.response = error_response(static_cast<int>(ErrorKind::kBadResponse), svc->name,
                                 "invalid reply envelope: " + dec.message(), req, ex.request_id);
    co_return;
  }
  ex.attempts = reply.attempts;
  ex.response = to_http(std::move(reply), *req, ex.request_id);
}

}  // namespace courier::gateway
