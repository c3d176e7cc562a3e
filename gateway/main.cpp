// courier-gateway: the HTTP front door; forwards /{service}/... through the broker.
#include <spdlog/spdlog.h>

#include <future>

#include "common/asio.hpp"
#include "common/cli.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/server.hpp"

namespace {

std::pair<std::string, std::uint16_t> parse_listen(const std::string& value) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos) {
    throw courier::ConfigError("--listen (gateway.listen): '" + value + "' must be HOST:PORT");
  }
  std::string host = value.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (ec) throw courier::ConfigError("--listen (gateway.listen): '" + host + "' is not an IP address");
  const auto port = courier::parse_int("--listen (gateway.listen) port", value.substr(colon + 1), 0, 65535);
  return {host, static_cast<std::uint16_t>(port)};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace courier;
  CLI::App app{"courier-gateway: HTTP front door; ANY /{service}/{path} goes through the broker",
               "courier-gateway"};
  CommonOptions common;
  add_common_options(app, common);
  std::string listen, broker, threads, max_body, max_header, max_conn, header_to, body_to, idle_to,
      heartbeat, liveness, grace;
  app.add_option("--listen", listen, "HTTP listen address [0.0.0.0:8080]")
      ->envname("COURIER_GATEWAY_LISTEN");
  app.add_option("--broker", broker, "Broker frontend endpoint [tcp://127.0.0.1:5555]")
      ->envname("COURIER_BROKER_URL");
  app.add_option("--threads", threads, "HTTP threads [number of cores]")
      ->envname("COURIER_GATEWAY_THREADS");
  app.add_option("--max-body", max_body, "Largest request body in bytes [8388608]")
      ->envname("COURIER_MAX_BODY");
  app.add_option("--max-header", max_header, "Largest request head in bytes [16384]")
      ->envname("COURIER_MAX_HEADER");
  app.add_option("--max-connections", max_conn, "Open connections at most [10000]")
      ->envname("COURIER_MAX_CONNECTIONS_IN");
  app.add_option("--header-timeout", header_to, "Seconds to receive a request head [10]")
      ->envname("COURIER_HEADER_TIMEOUT");
  app.add_option("--body-timeout", body_to, "Seconds to receive a request body [30]")
      ->envname("COURIER_BODY_TIMEOUT");
  app.add_option("--idle-timeout", idle_to, "Seconds a keep-alive connection may idle [60]")
      ->envname("COURIER_IDLE_TIMEOUT");
  app.add_option("--heartbeat", heartbeat, "Broker heartbeat interval, seconds [0.25]")
      ->envname("COURIER_HEARTBEAT");
  app.add_option("--liveness", liveness, "Missed heartbeats before the broker is lost [4]")
      ->envname("COURIER_LIVENESS");
  app.add_option("--shutdown-grace", grace, "On SIGTERM, seconds to finish requests [30]")
      ->envname("COURIER_SHUTDOWN_GRACE");

  return run_main(app, argc, argv, [&] {
    setup_logging("gateway", common.log);
    const auto sources = common.sources();
    const ConfigFile file(sources);
    Settings settings = load_settings(sources);

    gateway::ServerOptions server;
    std::tie(server.listen_address, server.listen_port) =
        parse_listen(resolve(listen, file, "gateway.listen", "0.0.0.0:8080"));
    server.threads = static_cast<int>(parse_int("--threads (gateway.threads)",
                                                resolve(threads, file, "gateway.threads", "0"), 0, 256));
    server.max_body = static_cast<std::size_t>(parse_int(
        "--max-body (gateway.max_body)", resolve(max_body, file, "gateway.max_body", "8388608"), 0,
        std::int64_t{1} << 30));
    server.max_header = static_cast<std::size_t>(
        parse_int("--max-header (gateway.max_header)",
                  resolve(max_header, file, "gateway.max_header", "16384"), 1024, 1 << 20));
    server.max_connections = static_cast<std::size_t>(
        parse_int("--max-connections (gateway.max_connections)",
                  resolve(max_conn, file, "gateway.max_connections", "10000"), 1, 1'000'000));
    server.header_timeout = parse_seconds("--header-timeout (gateway.header_timeout)",
                                          resolve(header_to, file, "gateway.header_timeout", "10"));
    server.body_timeout = parse_seconds("--body-timeout (gateway.body_timeout)",
                                        resolve(body_to, file, "gateway.body_timeout", "30"));
    server.idle_timeout = parse_seconds("--idle-timeout (gateway.idle_timeout)",
                                        resolve(idle_to, file, "gateway.idle_timeout", "60"));
    const auto shutdown_grace = parse_seconds(
        "--shutdown-grace (gateway.shutdown_grace)", resolve(grace, file, "gateway.shutdown_grace", "30"));

    gateway::BrokerClientOptions link;
    link.endpoint = resolve(broker, file, "gateway.broker", "tcp://127.0.0.1:5555");
    link.heartbeat_interval = parse_seconds("--heartbeat (gateway.heartbeat)",
                                            resolve(heartbeat, file, "gateway.heartbeat", "0.25"));
    if (link.heartbeat_interval.count() < 10) {
      throw ConfigError("--heartbeat (gateway.heartbeat): must be at least 0.01 seconds");
    }
    link.liveness = static_cast<int>(parse_int("--liveness (gateway.liveness)",
                                               resolve(liveness, file, "gateway.liveness", "4"), 1, 100));

    zmq::context_t context(1);
    gateway::BrokerClient client(context, link);
    gateway::Server http(server, std::move(settings), client);

    // Signals are waited for on a dedicated io_context: whichever thread the kernel picks,
    // signal_set delivers the notification here.
    asio::io_context signals_io;
    asio::signal_set signals(signals_io, SIGTERM, SIGINT);
    std::promise<int> got_signal;
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
      got_signal.set_value(ec ? 0 : signo);
    });
    client.start();
    http.start();
    std::thread signal_thread([&] { signals_io.run(); });
    const int signo = got_signal.get_future().get();
    signal_thread.join();
    spdlog::info("gateway received signal {}; finishing in-flight requests", signo);
    http.stop(shutdown_grace);
    client.stop();
    spdlog::info("gateway stopped");
    return 0;
  });
}
