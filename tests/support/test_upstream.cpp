#include "tests/support/test_upstream.hpp"

#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <exception>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_set>

#include "common/asio.hpp"

namespace courier::testing {
namespace {

constexpr std::size_t kHeaderLimit = 64 * 1024;
constexpr int kMaxChunks = 3;

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

bool status_forbids_body(unsigned status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

bool is_http_error(const beast::error_code& ec) {
  return &ec.category() == &http::make_error_code(http::error::bad_version).category();
}

void log_escaped_exception(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::cerr << "TestUpstream: coroutine failed: " << e.what() << '\n';
  }
}

}  // namespace

// Designated fields only: the kStream ones keep their defaults for the other actions.
static Step make_step(StepAction action, unsigned status = 200, std::string body = {},
                      HeaderList headers = {}) {
  Step step;
  step.status = status;
  step.body = std::move(body);
  step.headers = std::move(headers);
  step.action = action;
  return step;
}

Step Step::respond(unsigned status, std::string body, HeaderList headers) {
  return make_step(StepAction::kRespond, status, std::move(body), std::move(headers));
}
Step Step::echo(unsigned status) { return make_step(StepAction::kEcho, status); }
Step Step::chunked(unsigned status, std::string body, HeaderList headers) {
  return make_step(StepAction::kChunked, status, std::move(body), std::move(headers));
}
Step Step::respond_and_close(unsigned status, std::string body) {
  return make_step(StepAction::kRespondAndClose, status, std::move(body));
}
Step Step::close() { return make_step(StepAction::kClose, 0); }
Step Step::stall() { return make_step(StepAction::kStall, 0); }
Step Step::stream(unsigned status, HeaderList headers, std::vector<StreamPart> parts,
                  StreamFraming framing, StreamEnd end) {
  Step step = make_step(StepAction::kStream, status, {}, std::move(headers));
  step.parts = std::move(parts);
  step.framing = framing;
  step.end = end;
  return step;
}
Step Step::flood(unsigned status, std::uint64_t bytes, HeaderList headers) {
  Step step = make_step(StepAction::kStream, status, {}, std::move(headers));
  step.flood_bytes = bytes;
  return step;
}

char flood_pattern(std::uint64_t offset) { return static_cast<char>('!' + offset % 251 % 94); }

struct TestUpstream::Impl {
  struct Script {
    std::vector<Step> steps;
    std::size_t next = 0;
  };

  // Owned by its connection coroutine; listed so stop() can close it.
  struct Connection {
    explicit Connection(tcp::socket socket)
        : stream(std::move(socket)), timer(stream.get_executor()) {}
    beast::tcp_stream stream;
    asio::steady_timer timer;  // delays and stalls wait here, so stop() can cancel them
  };

  using Request = http::request<http::string_body>;

  explicit Impl(UpstreamOptions opts)
      : options(opts),
        idle_close_ms(opts.idle_close.count()),
        close_after_response(opts.close_after_response) {
    const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), opts.port);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
    port = acceptor.local_endpoint().port();
    asio::co_spawn(io, accept_loop(), log_escaped_exception);
    thread = std::thread([this] { io.run(); });
  }

  UpstreamOptions options;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::uint16_t port = 0;
  std::thread thread;
  std::once_flag stop_once;

  std::atomic<long long> idle_close_ms;
  std::atomic<bool> close_after_response;
  std::atomic<std::size_t> accepted{0};
  std::atomic<std::size_t> open{0};

  // Touched only on the server thread.
  std::unordered_set<Connection*> connections;
  bool stopping = false;

  mutable std::mutex mutex;
  mutable std::condition_variable changed;
  std::map<std::string, Script, std::less<>> scripts;
  std::optional<Step> default_step;
  std::vector<RecordedRequest> records;
  std::map<std::string, std::size_t, std::less<>> hit_counts;
  std::vector<StreamRecord> stream_records;
  struct CutShort {
    std::size_t body_bytes = 0;
    std::size_t times = 0;
  };
  std::map<std::string, CutShort, std::less<>> cut_short;

  // Takes one of the close_during_body() requests for `path`, if any is left.
  std::optional<std::size_t> take_cut_short(std::string_view path) {
    std::lock_guard lock(mutex);
    auto it = cut_short.find(path);
    if (it == cut_short.end() || it->second.times == 0) return std::nullopt;
    --it->second.times;
    return it->second.body_bytes;
  }

  void record_partial(const Request& request, std::uint64_t connection_index,
                      std::uint64_t index_on_connection) {
    RecordedRequest record;
    record.method = std::string(request.method_string());
    record.target = std::string(request.target());
    for (const auto& field : request) {
      record.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    record.body = request.body();
    record.connection_index = connection_index;
    record.index_on_connection = index_on_connection;
    {
      std::lock_guard lock(mutex);
      ++hit_counts[std::string(path_of(record.target))];
      records.push_back(std::move(record));
    }
    changed.notify_all();
  }

  void stop() {
    std::call_once(stop_once, [this] {
      asio::post(io, [this] {
        stopping = true;
        beast::error_code ignored;
        acceptor.close(ignored);
        for (Connection* connection : connections) {
          connection->timer.cancel();
          connection->stream.socket().close(ignored);
        }
      });
      // Every coroutine is now finishing on an aborted operation, so run() returns.
      if (thread.joinable()) thread.join();
    });
  }

  asio::awaitable<void> accept_loop() {
    asio::steady_timer backoff(io);
    while (!stopping) {
      beast::error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // Out of descriptors and the like: retry shortly rather than spinning.
        backoff.expires_after(std::chrono::milliseconds(10));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      const std::uint64_t index = accepted.fetch_add(1);
      asio::co_spawn(io, serve(std::move(socket), index), log_escaped_exception);
    }
  }

  // Records the request and picks the step that answers it, atomically with respect to script().
  std::optional<Step> record(const Request& request, std::uint64_t connection_index,
                             std::uint64_t index_on_connection) {
    RecordedRequest record;
    record.method = std::string(request.method_string());
    record.target = std::string(request.target());
    for (const auto& field : request) {
      record.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    record.body = request.body();
    record.connection_index = connection_index;
    record.index_on_connection = index_on_connection;
    const std::string path(path_of(record.target));

    std::optional<Step> step;
    {
      std::lock_guard lock(mutex);
      records.push_back(std::move(record));
      ++hit_counts[path];
      if (auto it = scripts.find(path); it != scripts.end() && !it->second.steps.empty()) {
        Script& script = it->second;
        step = script.steps[std::min(script.next, script.steps.size() - 1)];
        if (script.next < script.steps.size()) ++script.next;
      } else {
        step = default_step;
      }
    }
    changed.notify_all();
    return step;
  }

  static std::string echo_body(const Request& request, std::uint64_t connection_index,
                               std::uint64_t index_on_connection) {
    nlohmann::json headers = nlohmann::json::array();
    for (const auto& field : request) {
      headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    const nlohmann::json echo = {
        {"method", std::string(request.method_string())},
        {"target", std::string(request.target())},
        {"headers", std::move(headers)},
        {"body", request.body()},
        {"body_size", request.body().size()},
        {"connection_index", connection_index},
        {"index_on_connection", index_on_connection},
    };
    return echo.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  // Sends a complete response; false when the connection failed.
  static asio::awaitable<bool> write(Connection& connection, http::response<http::string_body>& res,
                                     bool head) {
    if (status_forbids_body(res.result_int())) res.body().clear();
    res.prepare_payload();
    beast::error_code ec;
    if (head) {
      http::response_serializer<http::string_body> serializer(res);
      co_await http::async_write_header(connection.stream, serializer,
                                        asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await http::async_write(connection.stream, res,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return !ec;
  }

  static asio::awaitable<bool> write_chunked(Connection& connection, const Step& step,
                                             const Request& request) {
    http::response<http::empty_body> res{static_cast<http::status>(step.status), request.version()};
    for (const auto& [name, value] : step.headers) res.insert(name, value);
    res.keep_alive(request.keep_alive());
    res.chunked(true);
    http::response_serializer<http::empty_body> serializer(res);
    beast::error_code ec;
    co_await http::async_write_header(connection.stream, serializer,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (ec || request.method() == http::verb::head) co_return !ec;
    const std::string& body = step.body;
    const std::size_t piece = std::max<std::size_t>(1, (body.size() + kMaxChunks - 1) / kMaxChunks);
    for (std::size_t offset = 0; offset < body.size() && !ec; offset += piece) {
      const std::size_t size = std::min(piece, body.size() - offset);
      co_await asio::async_write(connection.stream,
                                 http::make_chunk(asio::buffer(body.data() + offset, size)),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec) {
      co_await asio::async_write(connection.stream, http::make_chunk_last(),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return !ec;
  }

  // Updates stream record `index` under the lock.
  template <class Change>
  void update_stream(std::size_t index, Change&& change) {
    {
      std::lock_guard lock(mutex);
      change(stream_records.at(index));
    }
    changed.notify_all();
  }

  void note_client_closed(std::size_t index) {
    const auto now = std::chrono::steady_clock::now();
    update_stream(index, [&](StreamRecord& r) {
      if (!r.client_closed_at) r.client_closed_at = now;
    });
  }

  // Reads while a stream step runs, so that a client hanging up is seen (and timed) even while
  // the step only waits. Bytes that arrive stay in `buffer` for the next request's parser.
  struct Watch {
    explicit Watch(asio::any_io_executor executor) : finished(executor) {}
    bool running = true;
    bool peer_closed = false;
    asio::steady_timer finished;  // cancelled when the watcher returns
  };

  asio::awaitable<void> watch_peer(Connection& connection, beast::flat_buffer& buffer, Watch& watch,
                                   std::size_t index) {
    for (;;) {
      beast::error_code ec;
      const std::size_t n = co_await connection.stream.socket().async_read_some(
          buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
      buffer.commit(n);
      if (!ec) continue;
      if (ec != asio::error::operation_aborted && !stopping) {
        watch.peer_closed = true;
        note_client_closed(index);
        connection.timer.cancel();  // a part's delay ends at once
      }
      break;
    }
    watch.running = false;
    watch.finished.cancel();
  }

  static std::string stream_head(const Step& step, const Request& request, std::uint64_t length) {
    const auto status = static_cast<http::status>(step.status);
    std::string head = "HTTP/1.1 " + std::to_string(step.status) + " " +
                       std::string(http::obsolete_reason(status)) + "\r\n";
    for (const auto& [name, value] : step.headers) head += name + ": " + value + "\r\n";
    switch (step.framing) {
      case StreamFraming::kChunked:
        head += "Transfer-Encoding: chunked\r\n";
        break;
      case StreamFraming::kContentLength:
        head += "Content-Length: " + std::to_string(length) + "\r\n";
        break;
      case StreamFraming::kClose:
        break;
    }
    if (step.framing == StreamFraming::kClose || !request.keep_alive()) {
      head += "Connection: close\r\n";
    }
    return head + "\r\n";
  }

  // Writes one part; false when the connection failed (recorded as the client's close).
  asio::awaitable<bool> write_part(Connection& connection, const Step& step, std::string_view bytes,
                                   std::size_t index) {
    if (bytes.empty()) co_return true;  // an empty chunk would read as the end of the body
    beast::error_code ec;
    if (step.framing == StreamFraming::kChunked) {
      co_await asio::async_write(connection.stream,
                                 http::make_chunk(asio::buffer(bytes.data(), bytes.size())),
                                 asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_write(connection.stream, asio::buffer(bytes.data(), bytes.size()),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      if (!stopping) note_client_closed(index);
      co_return false;
    }
    update_stream(index, [&](StreamRecord& r) { r.body_bytes_written += bytes.size(); });
    co_return true;
  }

  // The whole kStream step. Returns whether the connection may serve another request.
  asio::awaitable<bool> write_stream(Connection& connection, const Step& step,
                                     const Request& request, std::size_t index, Watch& watch) {
    const bool head_only = request.method() == http::verb::head;
    std::uint64_t length = step.flood_bytes;
    for (const auto& part : step.parts) length += part.bytes.size();
    // Cut short: the length announced is more than will come.
    if (step.end != StreamEnd::kClean) ++length;
    if (step.send_buffer > 0) {
      beast::error_code ignored;
      connection.stream.socket().set_option(asio::socket_base::send_buffer_size(step.send_buffer),
                                            ignored);
    }
    const std::string head = stream_head(step, request, length);
    update_stream(index, [](StreamRecord& r) { r.head_at = std::chrono::steady_clock::now(); });
    beast::error_code ec;
    co_await asio::async_write(connection.stream, asio::buffer(head),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!stopping) note_client_closed(index);
      co_return false;
    }
    if (head_only) co_return request.keep_alive() && step.framing != StreamFraming::kClose;

    if (step.flood_bytes > 0) {
      std::string chunk(16 * 1024, '\0');
      for (std::uint64_t offset = 0; offset < step.flood_bytes;) {
        const std::size_t size = static_cast<std::size_t>(
            std::min<std::uint64_t>(chunk.size(), step.flood_bytes - offset));
        for (std::size_t i = 0; i < size; ++i) chunk[i] = flood_pattern(offset + i);
        if (stopping || watch.peer_closed) co_return false;
        if (!co_await write_part(connection, step, std::string_view(chunk.data(), size), index)) {
          co_return false;
        }
        offset += size;
      }
    }
    for (const auto& part : step.parts) {
      if (part.delay.count() > 0) {
        if (stopping || watch.peer_closed) co_return false;
        connection.timer.expires_after(part.delay);
        co_await connection.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      if (stopping || watch.peer_closed) co_return false;
      update_stream(
          index, [](StreamRecord& r) { r.parts_at.push_back(std::chrono::steady_clock::now()); });
      if (!co_await write_part(connection, step, part.bytes, index)) co_return false;
    }

    beast::error_code ignored;
    switch (step.end) {
      case StreamEnd::kReset:
        connection.stream.socket().set_option(asio::socket_base::linger(true, 0), ignored);
        connection.stream.socket().close(ignored);
        update_stream(index, [](StreamRecord& r) { r.finished = true; });
        co_return false;
      case StreamEnd::kClose:
        connection.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        update_stream(index, [](StreamRecord& r) { r.finished = true; });
        co_return false;
      case StreamEnd::kClean:
        break;
    }
    if (step.framing == StreamFraming::kChunked) {
      co_await asio::async_write(connection.stream, http::make_chunk_last(),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!stopping) note_client_closed(index);
        co_return false;
      }
    }
    update_stream(index, [](StreamRecord& r) { r.finished = true; });
    if (step.framing == StreamFraming::kClose) {
      connection.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      co_return false;
    }
    co_return request.keep_alive();
  }

  // Runs a kStream step (its delay included) with the peer watched throughout.
  asio::awaitable<bool> serve_stream(Connection& connection, beast::flat_buffer& buffer,
                                     const Step& step, const Request& request,
                                     std::uint64_t connection_index) {
    std::size_t index = 0;
    {
      std::lock_guard lock(mutex);
      index = stream_records.size();
      StreamRecord record;
      record.target = std::string(request.target());
      record.connection_index = connection_index;
      record.request_at = std::chrono::steady_clock::now();
      stream_records.push_back(std::move(record));
    }
    changed.notify_all();

    Watch watch(connection.stream.get_executor());
    watch.finished.expires_at(asio::steady_timer::time_point::max());
    asio::co_spawn(io, watch_peer(connection, buffer, watch, index), log_escaped_exception);

    bool reuse = false;
    beast::error_code ec;
    if (step.delay.count() > 0 && !stopping) {
      connection.timer.expires_after(step.delay);
      co_await connection.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!stopping && !watch.peer_closed) {
      reuse = co_await write_stream(connection, step, request, index, watch);
    }
    // The watcher refers to this frame: stop it and wait until it has returned.
    beast::error_code ignored;
    if (connection.stream.socket().is_open()) connection.stream.socket().cancel(ignored);
    while (watch.running) {
      co_await watch.finished.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    update_stream(index, [](StreamRecord& r) { r.over = true; });
    co_return reuse && !watch.peer_closed && !stopping;
  }

  static asio::awaitable<void> reject(Connection& connection, http::status status) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::content_type, "text/plain");
    res.keep_alive(false);
    res.body() = std::string(http::obsolete_reason(status)) + "\n";
    co_await write(connection, res, false);
    beast::error_code ignored;
    connection.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<void> serve(tcp::socket socket, std::uint64_t connection_index) {
    Connection connection(std::move(socket));
    connections.insert(&connection);
    ++open;
    struct Unlist {
      Impl& impl;
      Connection* connection;
      ~Unlist() {
        impl.connections.erase(connection);
        --impl.open;
      }
    } unlist{*this, &connection};

    beast::flat_buffer buffer;
    for (std::uint64_t index_on_connection = 0; !stopping; ++index_on_connection) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(options.body_limit);

      const auto idle = std::chrono::milliseconds(idle_close_ms.load());
      if (idle.count() > 0) {
        connection.stream.expires_after(idle);
      } else {
        connection.stream.expires_never();
      }
      beast::error_code ec;
      co_await http::async_read_header(connection.stream, buffer, parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
      connection.stream.expires_never();
      if (!ec && parser.get()[http::field::expect] == "100-continue" && !parser.is_done()) {
        http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
        co_await http::async_write(connection.stream, go_on,
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec && !parser.is_done()) {
        if (const auto cut = take_cut_short(path_of(parser.get().target()))) {
          while (!ec && !parser.is_done() && parser.get().body().size() < *cut) {
            co_await http::async_read_some(connection.stream, buffer, parser,
                                           asio::redirect_error(asio::use_awaitable, ec));
          }
          if (stopping) co_return;
          record_partial(parser.get(), connection_index, index_on_connection);
          co_return;  // unread bytes left: closing sends a reset
        }
      }
      if (!ec) {
        co_await http::async_read(connection.stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        if (stopping || ec == http::error::end_of_stream || ec == http::error::partial_message) {
          co_return;
        }
        if (ec == http::error::body_limit) {
          co_await reject(connection, http::status::payload_too_large);
        } else if (is_http_error(ec)) {
          co_await reject(connection, http::status::bad_request);
        }
        co_return;
      }

      Request request = parser.release();
      const std::optional<Step> chosen = record(request, connection_index, index_on_connection);
      const Step step = chosen.value_or(Step::echo());

      if (step.action == StepAction::kStream) {
        if (!co_await serve_stream(connection, buffer, step, request, connection_index)) co_return;
        if (close_after_response.load()) co_return;
        continue;
      }

      if (step.delay.count() > 0) {
        if (stopping) co_return;
        connection.timer.expires_after(step.delay);
        co_await connection.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (stopping) co_return;
      }

      const bool head = request.method() == http::verb::head;
      bool keep_alive = request.keep_alive();
      bool sent = true;
      switch (step.action) {
        case StepAction::kStall:
          if (stopping) co_return;
          connection.timer.expires_at(asio::steady_timer::time_point::max());
          co_await connection.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          co_return;
        case StepAction::kClose:
          co_return;  // the stream's destructor closes the socket
        case StepAction::kStream:
          break;  // served above
        case StepAction::kChunked:
          sent = co_await write_chunked(connection, step, request);
          break;
        case StepAction::kRespond:
        case StepAction::kRespondAndClose:
        case StepAction::kEcho: {
          http::response<http::string_body> res{static_cast<http::status>(step.status),
                                                request.version()};
          if (step.action == StepAction::kEcho) {
            res.set(http::field::content_type, "application/json");
            res.set("X-Echo-Method", request.method_string());
            res.set("X-Echo-Target", request.target());
            res.set("X-Echo-Connection", std::to_string(connection_index));
            res.set("X-Echo-Body-Size", std::to_string(request.body().size()));
            res.body() = echo_body(request, connection_index, index_on_connection);
          } else {
            res.body() = step.body;
          }
          for (const auto& [name, value] : step.headers) res.insert(name, value);
          if (step.action == StepAction::kRespondAndClose) keep_alive = false;
          res.keep_alive(keep_alive);
          sent = co_await write(connection, res, head);
          break;
        }
      }
      if (!sent) co_return;
      if (!keep_alive) {
        beast::error_code ignored;
        connection.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        co_return;
      }
      if (close_after_response.load()) co_return;  // silently: the client believes it may reuse
    }
  }
};

TestUpstream::TestUpstream(UpstreamOptions options) : impl_(std::make_unique<Impl>(options)) {}

TestUpstream::~TestUpstream() { stop(); }

void TestUpstream::stop() { impl_->stop(); }

std::uint16_t TestUpstream::port() const { return impl_->port; }

std::string TestUpstream::host_port() const { return "127.0.0.1:" + std::to_string(impl_->port); }

std::string TestUpstream::url() const { return "http://" + host_port(); }

void TestUpstream::script(std::string path, std::vector<Step> steps) {
  std::lock_guard lock(impl_->mutex);
  impl_->scripts[std::move(path)] = Impl::Script{std::move(steps), 0};
}

void TestUpstream::set_default(std::optional<Step> step) {
  std::lock_guard lock(impl_->mutex);
  impl_->default_step = std::move(step);
}

void TestUpstream::clear_scripts() {
  std::lock_guard lock(impl_->mutex);
  impl_->scripts.clear();
  impl_->default_step.reset();
}

void TestUpstream::close_during_body(std::string path, std::size_t body_bytes, std::size_t times) {
  std::lock_guard lock(impl_->mutex);
  impl_->cut_short[std::move(path)] = Impl::CutShort{body_bytes, times};
}

void TestUpstream::set_idle_close(std::chrono::milliseconds idle) {
  impl_->idle_close_ms = idle.count();
}

void TestUpstream::set_close_after_response(bool close) { impl_->close_after_response = close; }

std::size_t TestUpstream::hits(std::string_view path) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->hit_counts.find(path);
  return it == impl_->hit_counts.end() ? 0 : it->second;
}

std::size_t TestUpstream::request_count() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->records.size();
}

std::vector<RecordedRequest> TestUpstream::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->records;
}

std::optional<RecordedRequest> TestUpstream::last_request() const {
  std::lock_guard lock(impl_->mutex);
  if (impl_->records.empty()) return std::nullopt;
  return impl_->records.back();
}

std::vector<StreamRecord> TestUpstream::streams(std::string_view path) const {
  std::lock_guard lock(impl_->mutex);
  std::vector<StreamRecord> out;
  for (const auto& record : impl_->stream_records) {
    if (path_of(record.target) == path) out.push_back(record);
  }
  return out;
}

std::size_t TestUpstream::connections_accepted() const { return impl_->accepted.load(); }

std::size_t TestUpstream::open_connections() const { return impl_->open.load(); }

bool TestUpstream::wait_for_requests(std::size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mutex);
  return impl_->changed.wait_for(lock, timeout, [&] { return impl_->records.size() >= count; });
}

bool TestUpstream::wait_for_hits(std::string_view path, std::size_t count,
                                 std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mutex);
  return impl_->changed.wait_for(lock, timeout, [&] {
    auto it = impl_->hit_counts.find(path);
    return it != impl_->hit_counts.end() && it->second >= count;
  });
}

}  // namespace courier::testing
