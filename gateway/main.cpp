// courier-gateway: the HTTP front door; forwards /{service}/... through the broker.
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "common/asio.hpp"
#include "common/cli.hpp"
#include "common/signals.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/server.hpp"

namespace {

std::pair<std::string, std::uint16_t> parse_listen(const std::string& value) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos) {
    throw courier::ConfigError("--listen (gateway.listen): '" + value + "' must be HOST:PORT");
  }
  std::string host = value.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (ec)
    throw courier::ConfigError("--listen (gateway.listen): '" + host + "' is not an IP address");
  const auto port =
      courier::parse_int("--listen (gateway.listen) port", value.substr(colon + 1), 0, 65535);
  return {host, static_cast<std::uint16_t>(port)};
}

std::string read_secret_file(const std::string& setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw courier::ConfigError(setting + ": cannot read '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  return secret;
}

bool parse_bool(const std::string& setting, const std::string& value) {
  if (value == "true" || value == "1" || value == "yes" || value == "on") return true;
  if (value == "false" || value == "0" || value == "no" || value == "off") return false;
  throw courier::ConfigError(setting + ": '" + value + "' must be true or false");
}

// Off unless a JWT secret or API keys are configured. Secrets come from the environment, a file
// or the config file only: a command-line flag would show them in `ps`.
courier::gateway::AuthOptions load_auth(const courier::ConfigFile& file, const std::string& leeway,
                                        const std::string& require_exp) {
  using courier::ConfigError;
  courier::gateway::AuthOptions auth;
  if (auto v = file.get("gateway.auth.jwt_secret", "COURIER_AUTH_JWT_SECRET")) {
    auth.jwt_secret = *v;
  } else if (auto path = file.get("gateway.auth.jwt_secret_file", "COURIER_AUTH_JWT_SECRET_FILE")) {
    auth.jwt_secret = read_secret_file("gateway.auth.jwt_secret_file", *path);
  }
  // RFC 7518 3.2: an HS256 key must be at least as long as the hash (256 bits).
  if (!auth.jwt_secret.empty() && auth.jwt_secret.size() < 32) {
    throw ConfigError(
        "gateway.auth.jwt_secret (COURIER_AUTH_JWT_SECRET, or gateway.auth.jwt_secret_file): "
        "must be at least 32 bytes");
  }
  if (auto v = file.get("gateway.auth.api_keys", "COURIER_AUTH_API_KEYS")) {
    auth.api_keys =
        courier::gateway::parse_api_keys("gateway.auth.api_keys (COURIER_AUTH_API_KEYS)", *v);
  }
  auth.leeway = std::chrono::duration_cast<std::chrono::seconds>(courier::parse_seconds(
      "--auth-leeway (gateway.auth.leeway)", resolve(leeway, file, "gateway.auth.leeway", "0")));
  auth.require_exp = parse_bool("--auth-require-exp (gateway.auth.require_exp)",
                                resolve(require_exp, file, "gateway.auth.require_exp", "true"));
  return auth;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace courier;
  CLI::App app{"courier-gateway: HTTP front door; ANY /{service}/{path} goes through the broker",
               "courier-gateway"};
  CommonOptions common;
  add_common_options(app, common);
  std::string listen, broker, threads, max_body, max_header, max_conn, header_to, body_to, idle_to,
      heartbeat, liveness, grace, auth_leeway, auth_require_exp;
  app.add_option("--listen", listen, "HTTP listen address [0.0.0.0:8080]")
      ->envname("COURIER_GATEWAY_LISTEN");
  app.add_option("--broker", broker,
                 "Broker frontend endpoint, or several separated by commas "
                 "[tcp://127.0.0.1:5555]")
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
  app.add_option("--auth-leeway", auth_leeway, "Clock skew allowed on JWT exp/nbf, seconds [0]")
      ->envname("COURIER_AUTH_LEEWAY");
  app.add_option("--auth-require-exp", auth_require_exp, "Reject JWTs without exp [true]")
      ->envname("COURIER_AUTH_REQUIRE_EXP");

  return run_main(app, argc, argv, [&] {
    setup_logging("gateway", common.log);
    const auto sources = common.sources();
    const ConfigFile file(sources);
    Settings settings = load_settings(sources);

    gateway::ServerOptions server;
    std::tie(server.listen_address, server.listen_port) =
        parse_listen(resolve(listen, file, "gateway.listen", "0.0.0.0:8080"));
    server.threads = static_cast<int>(parse_int(
        "--threads (gateway.threads)", resolve(threads, file, "gateway.threads", "0"), 0, 256));
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
    server.auth = load_auth(file, auth_leeway, auth_require_exp);
    if (server.auth.enabled()) {
      spdlog::info("gateway auth on: bearer JWT {}, {} API key(s)",
                   server.auth.jwt_secret.empty() ? "off" : "HS256", server.auth.api_keys.size());
    }
    const auto shutdown_grace = parse_seconds("--shutdown-grace (gateway.shutdown_grace)",
                                              resolve(grace, file, "gateway.shutdown_grace", "30"));

    gateway::BrokerClientOptions link;
    link.endpoints =
        parse_endpoints("--broker (gateway.broker)",
                        resolve(broker, file, "gateway.broker", "tcp://127.0.0.1:5555"));
    link.heartbeat_interval = parse_seconds("--heartbeat (gateway.heartbeat)",
                                            resolve(heartbeat, file, "gateway.heartbeat", "0.25"));
    if (link.heartbeat_interval.count() < 10) {
      throw ConfigError("--heartbeat (gateway.heartbeat): must be at least 0.01 seconds");
    }
    link.liveness = static_cast<int>(parse_int(
        "--liveness (gateway.liveness)", resolve(liveness, file, "gateway.liveness", "4"), 1, 100));

    zmq::context_t context(1);
    gateway::BrokerClient client(context, link);
    gateway::Server http(server, std::move(settings), client);

    TerminationSignals signals;  // installed before work starts: no signal is missed
    client.start();
    http.start();
    const int signo = signals.wait();
    spdlog::info("gateway received signal {}; finishing in-flight requests", signo);
    http.stop(shutdown_grace);
    client.stop();
    spdlog::info("gateway stopped");
    return 0;
  });
}
