// The gateway's HTTP/1.1 server: one coroutine per connection that owns its stream and does the
// I/O (limits, timeouts, keep-alive); what to answer is decided by the pure functions it calls.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/asio.hpp"
#include "common/config.hpp"
#include "common/ids.hpp"
#include "common/options.hpp"
#include "gateway/admin.hpp"
#include "gateway/auth.hpp"
#include "gateway/broker_call.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/connection_table.hpp"
#include "gateway/metrics.hpp"
#include "gateway/request_checks.hpp"
#include "gateway/request_mapper.hpp"
#include "gateway/service_stats.hpp"

namespace courier::gateway {

// An address to listen on: an IP address and a port (0: any free one).
struct ListenAddress {
  std::string address;
  std::uint16_t port = 0;
};

struct ServerOptions {
  std::string listen_address = host_of(options::gateway::kListen.fallback);
  std::uint16_t listen_port = port_of(options::gateway::kListen.fallback);
  int threads = static_cast<int>(options::gateway::kThreads.default_integer());  // 0: one per core
  std::size_t max_body = options::gateway::kMaxBody.default_integer();
  std::size_t max_header = options::gateway::kMaxHeader.default_integer();
  // At the cap, the connection idle longest is closed to make room; none idle: the new one is.
  std::size_t max_connections = options::gateway::kMaxConnections.default_integer();
  std::size_t max_connections_per_client =  // 0: no limit per client address
      options::gateway::kMaxConnectionsPerClient.default_integer();
  // To receive a complete request head; to receive the body; keep-alive with no request.
  std::chrono::milliseconds header_timeout = options::gateway::kHeaderTimeout.default_seconds();
  std::chrono::milliseconds body_timeout = options::gateway::kBodyTimeout.default_seconds();
  std::chrono::milliseconds idle_timeout = options::gateway::kIdleTimeout.default_seconds();
  // Extra wait past a request's deadline for the worker's own 504, which says more than ours.
  std::chrono::milliseconds deadline_slack{250};
  // After answering a request we refuse mid-read (413/431/400), keep reading and discarding the
  // rest for up to this long, so closing does not reset the connection before the client has
  // read our answer.
  std::chrono::milliseconds linger{2'000};
  AuthOptions auth;                // off unless a secret or API keys are configured
  TrustedProxies trusted_proxies;  // whose Forwarded/X-Forwarded-* headers are kept; none
  // The admin listener (/metrics, /services, /dashboard and the probes, no client auth). None
  // here, so that tests bind no fixed port; main reads gateway.admin_listen.
  std::optional<ListenAddress> admin_listen;
  std::vector<std::string> required_services;  // for /readyz; empty: every configured service
  // With one HTTP thread, run the broker links on it too (BrokerClient::run_on), so a request
  // and its reply cross no thread of the gateway's; the server then stops the BrokerClient when
  // it stops. Set it before the BrokerClient is started.
  bool broker_links_on_http_thread = false;
  // Requests carry STAMPS (common/stamps.hpp); replies that bring them back are broken down per
  // hop in courier_gateway_hop_seconds.
  bool hop_stamps = options::gateway::kHopStamps.default_bool();
};

struct ServerCounters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> bad_requests{0};
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> cancelled{0};  // the client left before its response was complete
  std::atomic<std::int64_t> streams_open{0};
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::uint64_t> rejected_connections{0};  // closed at accept, either limit
  std::atomic<std::uint64_t> rejected_per_client{0};   // ... of which the per-client one
  std::atomic<std::uint64_t> evicted_idle{0};          // idle ones closed to make room
};

class Server {
 public:
  Server(ServerOptions options, Settings settings, BrokerClient& broker);
  ~Server();

  // Binds and starts the worker threads; returns the bound port.
  std::uint16_t start();
  // The io_context of the one HTTP thread when the broker links run on it too
  // (broker_links_on_http_thread with one thread); null otherwise. Work spawned on it before
  // start() runs on that thread, and stops with it.
  asio::io_context* links_io() { return runs_broker_links_ ? &io_ : nullptr; }
  // The admin listener's bound port once started; 0 when there is none.
  std::uint16_t admin_port() const { return admin_port_; }
  // Stops accepting, lets in-flight requests finish (up to `grace`), then stops the threads.
  void stop(std::chrono::milliseconds grace);
  void wait();

  const ServerCounters& counters() const { return counters_; }

 private:
  // One per listener; `admin` connections reach the admin endpoints only.
  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, ConnectionTable& connections,
                                    bool admin);
  asio::awaitable<void> session(std::shared_ptr<beast::tcp_stream> stream,
                                ConnectionTable::Lease lease, std::string client, bool admin);
  struct ReadResult;
  struct Exchange;
  // Reads the next request into `ex` (its request and what was decided on its head). The parser
  // lives in this coroutine's frame, not in the session's, which a connection holds while its
  // request waits for the broker.
  asio::awaitable<ReadResult> read_request(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                           std::chrono::steady_clock::time_point head_deadline,
                                           bool admin, Exchange& ex);
  asio::awaitable<void> reject(beast::tcp_stream& stream, const Refusal& refusal,
                               const std::string& client);
  asio::awaitable<void> handle(Exchange& ex);
  asio::awaitable<void> forward(Exchange& ex);
  // What forward() sends the broker; no `service` when the request was refused (`ex` failed).
  struct Outbound {
    const ServiceConfig* service = nullptr;
    protocol::RequestHeader header;
    zmq::message_t frame;
    std::chrono::milliseconds budget{0};
  };
  Outbound prepare(Exchange& ex);
  // The broker's first answer that is not a stream's HEAD (a reply, a timeout, the client gone).
  void settle(Exchange& ex, BrokerCall& call, const ServiceConfig& svc,
              std::chrono::milliseconds budget, BrokerCall::Wake wake);
  // Writes a streamed reply from its HEAD on, until END, ABORT, a timeout or the client leaving.
  // The HEAD is the call's next part.
  asio::awaitable<void> relay(Exchange& ex, BrokerCall& call, const ServiceConfig& svc);
  // The stream's head refused, or the reply before a HEAD unusable: 502 <SVC>_BAD_RESPONSE.
  void bad_reply(Exchange& ex, std::string_view service, std::string problem);
  AdminState admin_state() const;
  void record(const Exchange& ex);

  ServerOptions options_;
  Settings settings_;
  BrokerClient& broker_;
  Authenticator auth_;
  GatewayMetrics metrics_;
  ServiceStats service_stats_;
  IdGenerator ids_;
  ConnectionTable connections_;
  ConnectionTable admin_connections_;  // apart, so a flood of clients cannot lock operators out
  std::uint16_t admin_port_ = 0;
  std::vector<std::thread> threads_;
  ServerCounters counters_;
  std::atomic<bool> stopping_{false};
  bool runs_broker_links_ = false;  // the BrokerClient's links run on io_
  // One thread runs io_: a connection needs no strand of its own (and the executor fits inside
  // asio::any_io_executor, which copies a strand to the heap on every operation).
  bool one_http_thread_ = false;
  // Last, so destroyed first: sessions still open at the end (a stream cut at the end of the
  // grace) are destroyed with it, and their leases and counters must still exist then.
  asio::io_context io_;
  tcp::acceptor acceptor_;
  tcp::acceptor admin_acceptor_;
};

}  // namespace courier::gateway
