#include "gateway/server.hpp"

#include <spdlog/spdlog.h>

#include <array>

#include "common/access_log.hpp"
#include "common/errors.hpp"
#include "common/frames.hpp"
#include "common/io_loop.hpp"
#include "gateway/broker_call.hpp"
#include "gateway/stream_relay.hpp"

namespace courier::gateway {

using Clock = std::chrono::steady_clock;

struct Server::Exchange {
  HttpRequest request;
  HttpResponse response;
  std::string client;
  std::string service;
  std::string request_id;
  std::string subject;                       // authenticated caller, when auth is on
  std::string trace_id;                      // the trace the upstream sees
  std::string code;                          // Courier's error code when Courier made the answer
  std::string worker;                        // the worker that answered
  std::optional<std::uint64_t> upstream_us;  // its time on the upstream, as its reply says
  std::uint64_t bytes_in = 0;                // request body bytes
  std::optional<Admission> admitted;         // decided on the head; a refusal is answered as it is
  std::uint32_t attempts = 0;
  Clock::time_point start;
  std::uint64_t start_us = 0;  // `start` as Unix epoch µs: the STAMPS slot kGatewayIn
  // The reply's STAMPS, when it brought them back: observed per hop once the response is out.
  std::optional<protocol::Stamps> stamps;
  beast::tcp_stream* stream = nullptr;  // the client's connection
  // The response went out already (a stream): the session writes nothing more.
  bool written = false;
  bool cancelled = false;     // the client left first: nothing to write, logged as 499
  bool own_endpoint = false;  // answered by the gateway itself: not in the request metrics
  bool close = false;         // the connection must close after this exchange
  // Close with a reset, not a FIN: a close-delimited body that is not complete, which a FIN
  // would present to the client as complete.
  bool reset = false;
  std::string stream_outcome;  // a stream's: complete, truncated or cancelled
  std::string stream_reason;   // why it was not complete, sanitized
  std::uint64_t stream_bytes = 0;
  bool admin = false;  // on the admin listener: admin endpoints only, no client auth

  unsigned status() const { return cancelled ? 499 : response.result_int(); }
  // The answer is Courier's own error.
  void fail(HttpResponse res, ErrorKind kind, std::string_view svc) {
    response = std::move(res);
    code = error_code(kind, svc);
  }
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

// One log line per interval at most, with the count of those left out: a flood of refused
// connections must not become a flood of log lines. Used from the accept loop only.
class LogThrottle {
 public:
  // True when this one is to be logged; `skipped` then says how many were not since the last.
  bool allow(std::uint64_t& skipped) {
    const auto now = Clock::now();
    if (now < next_) {
      ++skipped_;
      return false;
    }
    next_ = now + std::chrono::seconds(1);
    skipped = std::exchange(skipped_, 0);
    return true;
  }

 private:
  Clock::time_point next_{};
  std::uint64_t skipped_ = 0;
};

// At most this much of a stream's batch per client write: each write has stream_idle_timeout,
// so a slow but steady reader is cut only when one piece stalls, never for a large batch.
constexpr std::size_t kWritePiece = 16 * 1024;

// Writes `buffers` in pieces of kWritePiece, each within `timeout`.
asio::awaitable<void> write_in_pieces(beast::tcp_stream& stream,
                                      const std::vector<asio::const_buffer>& buffers,
                                      std::chrono::milliseconds timeout, beast::error_code& ec) {
  beast::buffers_suffix<std::vector<asio::const_buffer>> rest(buffers);
  while (beast::buffer_bytes(rest) > 0) {
    stream.expires_after(timeout);
    const auto n = co_await asio::async_write(stream, beast::buffers_prefix(kWritePiece, rest),
                                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    rest.consume(n);
  }
}

// Operators and scrapers, not clients: a few connections, all possibly from one address.
constexpr std::size_t kAdminMaxConnections = 64;

const char* refusal_reason(ConnectionTable::Refused why) {
  return why == ConnectionTable::Refused::kClientLimit
             ? "gateway.max_connections_per_client reached for this address"
             : "gateway.max_connections reached and no connection idle";
}

}  // namespace

Server::Server(ServerOptions options, Settings settings, BrokerClient& broker)
    : options_(std::move(options)),
      settings_(std::move(settings)),
      broker_(broker),
      auth_(options_.auth),
      metrics_(gateway_latency_buckets(settings_, options_.deadline_slack)),
      service_stats_([this] {
        std::vector<std::string> names;
        for (const auto& [name, svc] : settings_.services) names.push_back(name);
        return names;
      }()),
      connections_({.max_total = options_.max_connections,
                    .max_per_client = options_.max_connections_per_client}),
      admin_connections_({.max_total = kAdminMaxConnections, .max_per_client = 0}),
      acceptor_(io_),
      admin_acceptor_(io_) {
  if (options_.broker_links_on_http_thread && options_.threads == 1) {
    broker_.run_on(io_);
    runs_broker_links_ = true;
  }
}

Server::~Server() {
  if (!threads_.empty()) stop(std::chrono::milliseconds(0));
  // The links were opened on io_, which goes with this object.
  if (runs_broker_links_) broker_.stop();
}

namespace {

std::uint16_t listen_on(tcp::acceptor& acceptor, const std::string& address, std::uint16_t port) {
  const tcp::endpoint endpoint(asio::ip::make_address(address), port);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor.local_endpoint().port();
}

}  // namespace

std::uint16_t Server::start() {
  const int n = options_.threads > 0
                    ? options_.threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  one_http_thread_ = n == 1;
  const auto port = listen_on(acceptor_, options_.listen_address, options_.listen_port);
  if (const auto& admin = options_.admin_listen) {
    admin_port_ = listen_on(admin_acceptor_, admin->address, admin->port);
    spdlog::info("gateway admin listening on {}:{} (/metrics, /services, /dashboard, probes)",
                 admin->address, admin_port_);
    asio::co_spawn(io_, accept_loop(admin_acceptor_, admin_connections_, true),
                   [](std::exception_ptr e) { log_exception(e, "admin accept"); });
  } else {
    spdlog::info("gateway admin listener off: /metrics, /services and /dashboard are not served");
  }
  asio::co_spawn(io_, accept_loop(acceptor_, connections_, false),
                 [](std::exception_ptr e) { log_exception(e, "accept"); });
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run_io(io_, "HTTP"); });
  spdlog::info("gateway listening on {}:{} with {} thread{}{}", options_.listen_address, port, n,
               n == 1 ? "" : "s", runs_broker_links_ ? " (broker links on it too)" : "");
  return port;
}

void Server::stop(std::chrono::milliseconds grace) {
  stopping_.store(true);
  asio::post(io_, [this] {
    beast::error_code ec;
    acceptor_.close(ec);
    admin_acceptor_.close(ec);
  });
  const auto until = Clock::now() + grace;
  while (counters_.in_flight.load() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  io_.stop();
  wait();
  // Nothing runs the links any more: close them (the pending requests are answered here).
  if (runs_broker_links_) broker_.stop();
}

void Server::wait() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

asio::awaitable<void> Server::accept_loop(tcp::acceptor& acceptor, ConnectionTable& connections,
                                          bool admin) {
  LogThrottle refused_log;
  LogThrottle evicted_log;
  for (;;) {
    beast::error_code ec;
    const auto executor = one_http_thread_ ? asio::any_io_executor(io_.get_executor())
                                           : asio::any_io_executor(asio::make_strand(io_));
    auto socket =
        co_await acceptor.async_accept(executor, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping_.load()) co_return;
      // EMFILE and friends: keep serving the connections we have.
      spdlog::warn("accept failed: {}", ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    std::string client;
    if (auto ep = socket.remote_endpoint(ec); !ec) client = ep.address().to_string();
    if (ec) {
      socket.close(ec);  // gone already
      continue;
    }
    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
    // Called when an idle connection is closed to make room: it runs on the accepting thread,
    // so it only schedules the close on the connection's executor (if it still exists).
    auto evict = [weak = std::weak_ptr<beast::tcp_stream>(stream), executor] {
      asio::post(executor, [weak] {
        if (auto s = weak.lock()) s->cancel();
      });
    };
    auto admission = connections.open(client, std::move(evict));
    if (!admission.lease) {
      counters_.rejected_connections.fetch_add(1);
      if (admission.refused == ConnectionTable::Refused::kClientLimit) {
        counters_.rejected_per_client.fetch_add(1);
      }
      if (std::uint64_t skipped = 0; refused_log.allow(skipped)) {
        spdlog::warn("connection from {} closed at accept: {} ({} more since the last report)",
                     client, refusal_reason(admission.refused), skipped);
      }
      stream->socket().close(ec);
      continue;
    }
    if (admission.evicted_other) {
      counters_.evicted_idle.fetch_add(1);
      if (std::uint64_t skipped = 0; evicted_log.allow(skipped)) {
        spdlog::info(
            "gateway.max_connections reached: closed the connection idle longest to admit {} "
            "({} more since the last report)",
            client, skipped);
      }
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
    asio::co_spawn(executor, session(std::move(stream), std::move(*admission.lease), client, admin),
                   [](std::exception_ptr e) { log_exception(e, "session"); });
  }
}

struct Server::ReadResult {
  enum class Outcome { kRequest, kClosed, kRejected } outcome = Outcome::kRequest;
  Refusal refusal;  // when rejected

  static ReadResult request() { return {}; }
  static ReadResult closed() { return {Outcome::kClosed, {}}; }
  static ReadResult rejected(Refusal refusal) { return {Outcome::kRejected, std::move(refusal)}; }
};

asio::awaitable<void> Server::session(std::shared_ptr<beast::tcp_stream> owned,
                                      ConnectionTable::Lease lease, std::string client,
                                      bool admin) {
  // Client connections only: scrapes and probes on the admin listener are not traffic.
  struct Release {
    std::atomic<std::int64_t>* n;
    ~Release() {
      if (n) n->fetch_sub(1);
    }
  } release{admin ? nullptr : &counters_.connections};
  if (release.n) release.n->fetch_add(1);

  beast::error_code ec;
  bool reset = false;
  // Shared only so that an eviction scheduled from another thread can find it gone.
  auto& stream = *owned;
  beast::flat_buffer buffer(read_buffer_limit(options_.max_header));
  for (bool first = true;; first = false) {
    // A head must be complete within header_timeout of the connection's start, or of the first
    // byte of a later request; between requests the client may idle for idle_timeout.
    auto head_deadline = Clock::now() + options_.header_timeout;
    if (buffer.size() == 0) {
      // Waiting for a request and holding none: at the connection cap, this one may be closed
      // to make room for a new client.
      lease.idle();
      if (first) {
        stream.expires_at(head_deadline);
      } else {
        stream.expires_after(options_.idle_timeout);
      }
      // 1 KiB holds a typical request head; a longer one grows the buffer as it is read.
      const auto n = co_await stream.async_read_some(buffer.prepare(1024),
                                                     asio::redirect_error(asio::use_awaitable, ec));
      if (!lease.busy() || ec) break;  // evicted, closed or timed out
      buffer.commit(n);
      if (!first) head_deadline = Clock::now() + options_.header_timeout;
    }
    Exchange ex;
    auto read = co_await read_request(stream, buffer, head_deadline, admin, ex);
    if (read.outcome == ReadResult::Outcome::kClosed) break;
    if (read.outcome == ReadResult::Outcome::kRejected) {
      co_await reject(stream, read.refusal, client);
      co_return;
    }

    ex.admin = admin;
    ex.client = client;
    ex.start = Clock::now();
    ex.start_us = protocol::unix_us_now();
    ex.bytes_in = ex.request.body().size();
    // While the request is away (up to a minute for a slow service) its connection holds no read
    // buffer; bytes of a pipelined next request keep it.
    if (buffer.size() == 0) buffer.shrink_to_fit();
    // Counted until the response is written, so a graceful stop waits for the bytes too.
    counters_.in_flight.fetch_add(1);
    ex.stream = &stream;
    co_await handle(ex);
    bool keep_alive = false;
    if (ex.written) {
      keep_alive = !ex.close && !stopping_.load() && ex.response.keep_alive();
    } else if (!ex.cancelled) {
      // Whoever built the response, a HEAD answer carries the headers only.
      if (ex.request.method() == http::verb::head) ex.response.body().clear();
      if (stopping_.load()) ex.response.keep_alive(false);
      keep_alive = ex.response.keep_alive();
      stream.expires_after(options_.body_timeout);
      co_await http::async_write(stream, ex.response,
                                 asio::redirect_error(asio::use_awaitable, ec));
      // The client hung up before it had the whole response: 499, as in NGINX. A client that
      // stopped reading (write timeout) keeps the status it was sent.
      if (ec && ec != beast::error::timeout) ex.cancelled = true;
    }
    counters_.in_flight.fetch_sub(1);
    record(ex);
    reset = ex.reset;
    if (ec || !keep_alive) break;
  }
  if (reset) {
    stream.socket().set_option(asio::socket_base::linger(true, 0), ec);
    stream.socket().close(ec);
    co_return;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<Server::ReadResult> Server::read_request(beast::tcp_stream& stream,
                                                         beast::flat_buffer& buffer,
                                                         Clock::time_point head_deadline,
                                                         bool admin, Exchange& ex) {
  beast::error_code ec;
  RequestParser parser;
  apply_limits(parser, options_.max_header, options_.max_body);
  std::optional<HeadSnapshot> head_only;
  stream.expires_at(head_deadline);
  co_await http::async_read_header(stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
  if (!ec) {
    const auto& head = parser.get();
    // Framing first: with it wrong, what follows the head cannot be told from a next request.
    if (auto refusal = check_framing(head)) co_return ReadResult::rejected(std::move(*refusal));
    if (auto refusal = check_expect(head)) co_return ReadResult::rejected(std::move(*refusal));
    const bool expect = expects_continue(head);
    // Decided on the head, before any body is read: with auth on, always, so that a stranger's
    // body is never buffered; and when the client waits for 100 Continue, so that a body is never
    // invited only to be refused. Only a small body is drained to keep the connection.
    if ((expect || auth_.enabled()) && !admin && !is_probe_endpoint(head.method(), head.target())) {
      auto admission = admit(head, auth_, settings_, std::chrono::system_clock::now());
      if (admission.refusal && (expect || !cheap_to_drain(parser))) {
        co_return ReadResult::rejected(std::move(*admission.refusal));
      }
      // A refusal here goes with a small body, read to keep the connection.
      ex.admitted = std::move(admission);
    }
    if (expect && !parser.is_done()) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      stream.expires_after(options_.body_timeout);
      co_await http::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
    }
    head_only.emplace(parser);
  }
  if (!ec) {
    stream.expires_after(options_.body_timeout);
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!ec) {
    head_only->restore(parser);  // trailers never count as headers
    ex.request = parser.release();
    co_return ReadResult::request();
  }
  if (auto refusal = read_refusal(ec)) co_return ReadResult::rejected(std::move(*refusal));
  co_return ReadResult::closed();  // closed, timed out, or reset: nobody to answer
}

asio::awaitable<void> Server::reject(beast::tcp_stream& stream, const Refusal& refusal,
                                     const std::string& client) {
  counters_.bad_requests.fetch_add(1);
  auto res = refusal_response(refusal, nullptr, auth_);
  metrics_.observe("none", res.result_int(), courier_error_code(res, settings_),
                   std::chrono::duration<double>(0));
  // Refused before a request was complete: no path, id or service to tell.
  access::Record r;
  r.time = std::chrono::system_clock::now();
  r.component = "gateway";
  r.client = client;
  r.status = res.result_int();
  r.code = error_code(refusal.kind, "");
  r.reason = sanitize_reason(refusal.detail);
  access::write(r);
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
  const auto status = ex.status();
  if (ex.stamps && !ex.cancelled) {
    auto stamps = *ex.stamps;
    stamps[protocol::Stamp::kGatewayOut] = protocol::unix_us_now();
    metrics_.observe_hops(ex.service, stamps);
  }
  if (!ex.own_endpoint) {
    metrics_.observe(ex.service.empty() ? "none" : ex.service, status,
                     ex.cancelled ? std::string() : courier_error_code(ex.response, settings_),
                     elapsed);
  }
  if (ex.cancelled) {
    counters_.cancelled.fetch_add(1);
    metrics_.cancelled(ex.service.empty() ? "none" : ex.service);
  }
  if (!ex.service.empty()) {
    service_stats_.record(ex.service, status,
                          std::chrono::duration<double, std::milli>(elapsed).count());
  }
  const auto target = ex.request.target();
  if (!access::wanted(target)) return;
  access::Record r;
  r.time = std::chrono::system_clock::now();
  r.component = "gateway";
  r.request_id = ex.request_id;
  r.trace_id = ex.trace_id;
  r.client = ex.client;
  r.service = ex.service;
  r.method = std::string(ex.request.method_string());
  r.path = access::loggable_path(target, access::options().log_query);
  r.status = status;
  r.code = ex.cancelled ? error_code(ErrorKind::kCancelled, "") : ex.code;
  r.attempts = ex.attempts;
  r.duration_ms = std::chrono::duration<double, std::milli>(elapsed).count();
  if (ex.upstream_us) r.upstream_ms = static_cast<double>(*ex.upstream_us) / 1000.0;
  r.worker = ex.worker;
  r.subject = ex.subject;
  r.bytes_in = ex.bytes_in;
  r.bytes_out = ex.written ? ex.stream_bytes : ex.cancelled ? 0 : ex.response.body().size();
  r.user_agent = std::string(ex.request[http::field::user_agent]);
  r.stream = ex.stream_outcome;
  r.reason = ex.stream_reason;
  access::write(r);
}

asio::awaitable<void> Server::handle(Exchange& ex) {
  counters_.requests.fetch_add(1);
  // The public port answers the probes (load balancers ask there) and sends everything else,
  // /metrics too, to a service; the admin listener answers nothing but its own endpoints.
  if (ex.admin || is_probe_endpoint(ex.request.method(), ex.request.target())) {
    ex.own_endpoint = true;
    ex.response = admin_response(ex.request, admin_state());
    co_return;
  }
  co_await forward(ex);
}

AdminState Server::admin_state() const {
  AdminState state{settings_, metrics_, service_stats_, {}, 0, {}};
  state.gateway.in_flight = counters_.in_flight.load();
  state.gateway.connections = counters_.connections.load();
  state.gateway.bad_requests = counters_.bad_requests.load();
  state.gateway.timeouts = counters_.timeouts.load();
  state.gateway.streams_open = counters_.streams_open.load();
  state.gateway.rejected_connections = counters_.rejected_connections.load();
  state.gateway.late_replies = broker_.late_replies();
  state.gateway.failovers = broker_.failovers();
  state.gateway.broker_connected = broker_.connected();
  state.requests = counters_.requests.load();
  state.brokers = broker_.brokers();
  state.required = options_.required_services;
  return state;
}

// A request waiting on its broker holds this coroutine's frame, and g++ gives every local and
// temporary of a coroutine a slot in it: so only what lives across the wait is here, and the
// steps before and after it are the plain functions prepare() and settle().
asio::awaitable<void> Server::forward(Exchange& ex) {
  auto out = prepare(ex);
  if (!out.service) co_return;  // refused: `ex` holds the answer
  BrokerCall call(broker_, ex.stream->get_executor(), &ex.stream->socket());
  const auto wake = co_await call_broker(call, out.header, std::move(out.frame),
                                         out.budget + options_.deadline_slack);
  if (wake == BrokerCall::Wake::kPart && call.next_is_head()) {
    co_await relay(ex, call, *out.service);
    co_return;
  }
  settle(ex, call, *out.service, out.budget, wake);
}

Server::Outbound Server::prepare(Exchange& ex) {
  auto admission = ex.admitted
                       ? std::move(*ex.admitted)
                       : admit(ex.request, auth_, settings_, std::chrono::system_clock::now());
  ex.subject = std::move(admission.subject);
  if (admission.refusal) {
    ex.fail(refusal_response(*admission.refusal, &ex.request, auth_), admission.refusal->kind, "");
    return {};
  }
  const auto& svc = *admission.service;
  ex.service = svc.name;
  auto mapped = to_envelope(ex.request, {.service = &svc,
                                         .target = std::move(admission.target),
                                         .client_address = ex.client,
                                         .subject = ex.subject,
                                         .strip_api_key = auth_.accepts_api_keys(),
                                         .id = ids_.next(),
                                         .now_ms = protocol::unix_ms_now(),
                                         .trusted_proxies = &options_.trusted_proxies,
                                         .generated_request_id = ids_.next_request_id()});
  ex.request_id = mapped.request_id;
  ex.trace_id = mapped.trace_id;
  if (mapped.error) {
    ex.fail(std::move(*mapped.error), ErrorKind::kBadRequest, svc.name);
    return {};
  }
  Outbound out{&svc, mapped.header, encode(mapped.envelope), mapped.budget};
  if (options_.hop_stamps) {
    auto& stamps = out.header.stamps.emplace();
    stamps[protocol::Stamp::kGatewayIn] = ex.start_us;
    stamps[protocol::Stamp::kGatewaySent] = protocol::unix_us_now();
  }
  return out;
}

void Server::settle(Exchange& ex, BrokerCall& call, const ServiceConfig& svc,
                    std::chrono::milliseconds budget, BrokerCall::Wake wake) {
  if (wake == BrokerCall::Wake::kClientGone) {
    ex.cancelled = true;
    return;
  }
  if (wake == BrokerCall::Wake::kTimeout) {
    call.stop_watch();
    counters_.timeouts.fetch_add(1);
    ex.fail(error_response(static_cast<int>(ErrorKind::kTimeout), svc.name,
                           "no reply within " + std::to_string(budget.count()) + " ms", &ex.request,
                           ex.request_id),
            ErrorKind::kTimeout, svc.name);
    return;
  }
  auto result = call.pop();
  call.stop_watch();  // nothing is pending on the socket: the response is not written yet
  if (result.kind != BrokerResult::Kind::kReply) {
    // An ABORT before any HEAD (BrokerClient turns out-of-order parts into one): nothing went
    // to the client, so it gets the usual error.
    bad_reply(
        ex, svc.name,
        "stream aborted before its head: " + sanitize_reason(protocol::view(result.envelope)));
    return;
  }
  if (result.stamps.size() == protocol::kStampsFrameSize) {
    ex.stamps = protocol::read_stamps(result.stamps);
  }
  auto answer = response_for(std::move(result), ex.request, svc.name, ex.request_id);
  if (!answer.problem.empty()) {
    metrics_.bad_response(svc.name);
    spdlog::warn("bad reply service={} request_id={}: {}", svc.name, ex.request_id, answer.problem);
  }
  ex.attempts = answer.attempts;
  ex.code = std::move(answer.code);
  ex.worker = std::move(answer.worker);
  ex.upstream_us = answer.upstream_us;
  ex.response = std::move(answer.response);
}

void Server::bad_reply(Exchange& ex, std::string_view service, std::string problem) {
  metrics_.bad_response(service);
  spdlog::warn("bad reply service={} request_id={}: {}", service, ex.request_id, problem);
  ex.fail(error_response(static_cast<int>(ErrorKind::kBadResponse), service, problem, &ex.request,
                         ex.request_id),
          ErrorKind::kBadResponse, service);
}

asio::awaitable<void> Server::relay(Exchange& ex, BrokerCall& call, const ServiceConfig& svc) {
  using Kind = BrokerResult::Kind;
  const auto head_part = call.pop();
  ReplyEnvelope envelope;
  if (const auto e = decode(protocol::view(head_part.envelope), envelope)) {
    call.cancel();
    call.stop_watch();
    bad_reply(ex, svc.name, "invalid stream head envelope: " + e.message());
    co_return;
  }
  auto head = stream_head(std::move(envelope), ex.request, svc.name, ex.request_id);
  ex.attempts = head.attempts;
  ex.worker = head.worker;
  ex.upstream_us = head.upstream_us;
  if (!head.problem.empty()) {
    call.cancel();
    call.stop_watch();
    metrics_.bad_response(svc.name);
    spdlog::warn("bad reply service={} request_id={}: invalid stream head: {}", svc.name,
                 ex.request_id, head.problem);
    ex.fail(std::move(head.response), ErrorKind::kBadResponse, svc.name);
    co_return;
  }

  // Raise the worker's window to the service's at once, so the first round trip is not spent
  // waiting for credit.
  StreamWindow window(protocol::kInitialStreamWindow);
  const auto wanted = std::min<std::uint64_t>(svc.stream_window, protocol::kMaxCredit);
  if (wanted > protocol::kInitialStreamWindow) {
    const auto extra = static_cast<std::uint32_t>(wanted - protocol::kInitialStreamWindow);
    call.credit(extra);
    window.grant(extra);
  }

  counters_.streams_open.fetch_add(1);
  struct Open {
    std::atomic<std::int64_t>& n;
    ~Open() { n.fetch_sub(1); }
  } open{counters_.streams_open};

  ex.written = true;
  ex.response = std::move(head.response);
  if (stopping_.load()) ex.response.keep_alive(false);
  auto& stream = *ex.stream;
  const bool chunked = head.framing == StreamFraming::kChunked;
  const auto idle = svc.stream_idle_timeout;
  // Backstops a little past the worker's own limits: its ABORT normally comes first.
  const auto backstop = std::chrono::seconds(2);
  const auto started = Clock::now();
  const auto max_deadline = started + svc.stream_max_duration + backstop;
  const bool keepalive_on = head.event_stream && !(head.framing == StreamFraming::kLength) &&
                            svc.sse_keepalive.count() > 0;
  auto last_part = started;
  auto last_write = started;
  EventBoundary boundary;
  std::uint64_t uncredited = 0;
  std::string outcome;
  std::string reason;
  beast::error_code ec;

  // A failed client write: a client that stopped reading is cut; one that left is cancelled.
  const auto client_failed = [&](const beast::error_code& error) {
    if (error == beast::error::timeout) {
      outcome = "truncated";
      reason = "gateway: client write over stream_idle_timeout";
    } else {
      outcome = "cancelled";
      reason = "client gone";
    }
  };

  {
    http::response_serializer<http::string_body> serializer(ex.response);
    stream.expires_after(idle);
    co_await http::async_write_header(stream, serializer,
                                      asio::redirect_error(asio::use_awaitable, ec));
  }
  if (ec) client_failed(ec);

  std::vector<zmq::message_t> batch;
  std::vector<asio::const_buffer> buffers;
  std::string chunk_line;
  while (outcome.empty()) {
    if (!call.has_part()) {
      auto deadline = std::min(last_part + idle + backstop, max_deadline);
      if (keepalive_on) deadline = std::min(deadline, last_write + svc.sse_keepalive);
      const auto wake = co_await call.wait(deadline);
      if (wake == BrokerCall::Wake::kTimeout) {
        const auto now = Clock::now();
        if (now >= max_deadline) {
          outcome = "truncated";
          reason = "gateway: stream over stream_max_duration";
          break;
        }
        if (now >= last_part + idle + backstop) {
          outcome = "truncated";
          reason = "gateway: no stream data within stream_idle_timeout";
          break;
        }
        if (keepalive_due(head, svc.sse_keepalive, now - last_write, boundary.at_boundary())) {
          buffers.clear();
          if (chunked) {
            chunk_line = chunk_header(kKeepAliveComment.size());
            buffers.push_back(asio::buffer(chunk_line));
          }
          buffers.push_back(asio::buffer(kKeepAliveComment));
          if (chunked) buffers.push_back(asio::buffer(kChunkEnd));
          stream.expires_after(idle);
          co_await asio::async_write(stream, buffers,
                                     asio::redirect_error(asio::use_awaitable, ec));
          if (ec) {
            client_failed(ec);
            break;
          }
        }
        // Not at a boundary: look again one interval later rather than spin.
        last_write = now;
        continue;
      }
    }
    if (call.client_gone()) {
      outcome = "cancelled";
      reason = "client gone";
      break;
    }

    // Everything already queued goes out as one batch (written in pieces, see kWritePiece).
    batch.clear();
    std::size_t size = 0;
    bool end = false;
    std::optional<std::string> abort;
    while (call.has_part() && !end && !abort) {
      auto part = call.pop();
      last_part = Clock::now();
      if (part.kind == Kind::kData || part.kind == Kind::kEnd) {
        const auto n = part.envelope.size();
        if (!window.receive(n)) {
          abort = "gateway: more body bytes than the window granted";
        } else if (head.framing == StreamFraming::kLength &&
                   ex.stream_bytes + size + n > head.length) {
          abort = "gateway: more body bytes than the Content-Length";
        } else {
          size += n;
          if (n > 0) batch.push_back(std::move(part.envelope));
          end = part.kind == Kind::kEnd;
        }
      } else if (part.kind == Kind::kAbort) {
        abort = std::string(protocol::view(part.envelope));
      } else {
        abort = "gateway: unexpected part in a stream";
      }
    }
    buffers.clear();
    if (size > 0 && chunked) {
      chunk_line = chunk_header(size);
      buffers.push_back(asio::buffer(chunk_line));
    }
    for (const auto& m : batch) buffers.push_back(asio::buffer(m.data(), m.size()));
    if (size > 0 && chunked) buffers.push_back(asio::buffer(kChunkEnd));
    const bool complete =
        end && (head.framing != StreamFraming::kLength || ex.stream_bytes + size == head.length);
    if (complete && chunked) buffers.push_back(asio::buffer(kLastChunk));
    if (!buffers.empty()) {
      co_await write_in_pieces(stream, buffers, idle, ec);
      if (ec) {
        client_failed(ec);
        break;
      }
      ex.stream_bytes += size;
      for (const auto& m : batch) boundary.wrote(protocol::view(m));
      last_write = Clock::now();
      // The idle backstop waits for the worker, not for our own writes to a slow client.
      last_part = last_write;
    }
    if (abort) {
      outcome = "truncated";
      reason = std::move(*abort);
      break;
    }
    if (end) {
      outcome = complete ? "complete" : "truncated";
      if (!complete) reason = "gateway: body shorter than its Content-Length";
      break;
    }
    uncredited += size;
    if (const auto n = credit_due(uncredited, kCreditBatch, !call.has_part())) {
      call.credit(n);
      window.grant(n);
      uncredited -= n;
    }
  }

  if (outcome == "complete") {
    call.stop_watch();  // no write pending: the session may read the next request
    if (head.framing == StreamFraming::kClose) ex.close = true;
  } else {
    // No terminating chunk (or short of the length): the client sees a truncated body. A
    // close-delimited body has no such mark, so it ends with a reset; the others keep the FIN,
    // which lets the client read what was written.
    call.cancel();
    ex.close = true;
    ex.reset = head.framing == StreamFraming::kClose;
    ex.cancelled = outcome == "cancelled";
  }
  metrics_.stream_finished(svc.name, outcome);
  ex.stream_outcome = std::move(outcome);
  ex.stream_reason = sanitize_reason(reason);
}

}  // namespace courier::gateway
