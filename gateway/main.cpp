// courier-gateway: the HTTP front door; forwards /{service}/... through the broker.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "broker/broker_setup.hpp"
#include "common/asio.hpp"
#include "common/cli.hpp"
#include "common/signals.hpp"
#include "gateway/broker_client.hpp"
#include "gateway/server.hpp"

namespace {

courier::gateway::ListenAddress parse_listen(const courier::ComponentOption& option,
                                             const std::string& value) {
  const auto setting = option.setting();
  const auto colon = value.rfind(':');
  if (colon == std::string::npos) {
    throw courier::ConfigError(setting + ": '" + value + "' must be HOST:PORT");
  }
  std::string host = value.substr(0, colon);
  if (host.size() > 1 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  if (ec) throw courier::ConfigError(setting + ": '" + host + "' is not an IP address");
  const auto port = courier::parse_int(setting + " port", value.substr(colon + 1), 0, 65535);
  return {host, static_cast<std::uint16_t>(port)};
}

// "rule-engine,ai-gm": each a configured service, none twice; empty: every configured one.
std::vector<std::string> parse_required(const courier::ComponentOption& option,
                                        const std::string& value,
                                        const courier::Settings& settings) {
  std::vector<std::string> out;
  std::string item;
  for (std::size_t i = 0; i <= value.size(); ++i) {
    if (i < value.size() && value[i] != ',') {
      if (value[i] != ' ') item += value[i];
      continue;
    }
    if (item.empty()) continue;
    if (!settings.find(item)) {
      std::string known;
      for (const auto& [name, s] : settings.services) known += (known.empty() ? "" : ", ") + name;
      throw courier::ConfigError(option.setting() + ": unknown service '" + item +
                                 "' (configured: " + known + ")");
    }
    if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
    item.clear();
  }
  return out;
}

// Off unless a JWT secret or API keys are configured. Secrets come from the environment, a file
// or the config file only: a command-line flag would show them in `ps`.
courier::gateway::AuthOptions load_auth(const courier::OptionFlags& flags,
                                        const courier::ConfigFile& file) {
  using courier::ConfigError;
  namespace opt = courier::options::gateway;
  courier::gateway::AuthOptions auth;
  const auto get = [&](const courier::ComponentOption& o) {
    return file.get(std::string(o.key), std::string(o.env));
  };
  if (auto v = get(opt::kJwtSecret)) {
    auth.jwt_secret = courier::secret_value(opt::kJwtSecret.setting(), *v);
  } else if (auto path = get(opt::kJwtSecretFile)) {
    auth.jwt_secret = courier::read_secret_file(opt::kJwtSecretFile.setting(), *path);
  }
  // RFC 7518 3.2: an HS256 key must be at least as long as the hash (256 bits).
  if (!auth.jwt_secret.empty() && auth.jwt_secret.size() < 32) {
    throw ConfigError(
        "gateway.auth.jwt_secret (COURIER_AUTH_JWT_SECRET, or gateway.auth.jwt_secret_file): "
        "must be at least 32 bytes");
  }
  if (auto v = get(opt::kApiKeys)) {
    auth.api_keys = courier::gateway::parse_api_keys(opt::kApiKeys.setting(), *v);
  }
  auth.leeway =
      std::chrono::duration_cast<std::chrono::seconds>(flags.seconds(opt::kAuthLeeway, file));
  auth.require_exp = flags.boolean(opt::kAuthRequireExp, file);
  auth.audience = flags.text(opt::kAuthAudience, file);
  auth.issuer = flags.text(opt::kAuthIssuer, file);
  return auth;
}

namespace asio = courier::asio;

// A broker run by the gateway, sharing its ZeroMQ context: on the HTTP thread when the broker
// links run there (one HTTP thread), so that a request and its reply cross no thread between the
// gateway and the broker, else on a thread of its own. Stopped (drained) on stop() or
// destruction; a broker that fails stops the gateway.
class EmbeddedBroker {
 public:
  EmbeddedBroker(courier::broker::BrokerOptions options, zmq::context_t& context,
                 const std::string& admin_listen) {
    courier::broker::log_declared_services(options);
    broker_ = std::make_unique<courier::broker::Broker>(std::move(options), &context);
    admin_ = courier::broker::make_admin(*broker_, admin_listen);
  }
  ~EmbeddedBroker() { stop(); }
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // After the termination handler is installed: a thread inherits its signal mask. With `io`
  // (run by one thread), the loop runs there: its epoll descriptor is one more source of `io`.
  void start(asio::io_context* io) {
    if (io) {
      broker_->begin(false);
      begun_ = true;
      asio::co_spawn(*io, drive(*io), [this](std::exception_ptr e) {
        if (e) failed(e);
      });
    } else {
      thread_ = std::thread([this] {
        try {
          broker_->run(false);
        } catch (...) {
          failed(std::current_exception());
        }
      });
    }
    if (admin_) admin_->start();
  }
  // Once `io` no longer runs (or from any thread without it): drains and stops the broker. True
  // if the broker had failed.
  bool stop() {
    broker_->stop();
    if (thread_.joinable()) thread_.join();
    if (begun_ && !failed_.load()) {
      // The io_context stopped mid-loop: the drain goes on here, with nothing else on its sockets.
      while (broker_->step(broker_->next_wait())) {
      }
    }
    if (begun_) broker_->end();
    begun_ = false;
    if (admin_) admin_->stop();
    return failed_.load();
  }

 private:
  asio::awaitable<void> drive(asio::io_context& io) {
    // A duplicate, so that the descriptor's owner here may close it.
    asio::posix::stream_descriptor ready(io, ::dup(broker_->loop_fd()));
    asio::steady_timer timer(io);
    while (broker_->step(std::chrono::milliseconds(0))) {
      const auto wait = broker_->next_wait();
      if (wait.count() == 0) {  // a socket may hold more: after what else is ready on `io`
        co_await asio::post(io, asio::use_awaitable);
        continue;
      }
      timer.expires_after(wait);
      timer.async_wait([&ready](const boost::system::error_code& ec) {
        if (!ec) ready.cancel();
      });
      boost::system::error_code ec;
      co_await ready.async_wait(asio::posix::descriptor_base::wait_read,
                                asio::redirect_error(asio::use_awaitable, ec));
      timer.cancel();
    }
    broker_->end();
    begun_ = false;
  }

  void failed(std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      spdlog::critical("embedded broker failed: {}; stopping the gateway", x.what());
    } catch (...) {
      spdlog::critical("embedded broker failed; stopping the gateway");
    }
    failed_.store(true);
    ::kill(::getpid(), SIGTERM);  // to the process: whichever thread waits for it
  }

  std::unique_ptr<courier::broker::Broker> broker_;
  std::unique_ptr<courier::AdminHttpServer> admin_;
  std::thread thread_;
  bool begun_ = false;  // begin() called on the io_context's thread, end() not yet
  std::atomic<bool> failed_{false};
};

}  // namespace

int main(int argc, char** argv) {
  using namespace courier;
  namespace opt = options::gateway;
  CLI::App app{"courier-gateway: HTTP front door; ANY /{service}/{path} goes through the broker",
               "courier-gateway"};
  CommonOptions common;
  add_common_options(app, common);
  auto& flags = common.flags;
  for (const auto* o : options::kAll) {
    // The secrets have no flag on purpose.
    if (o->key.starts_with("gateway.") && !o->flag.empty()) flags.add(app, *o);
  }

  return run_main(app, argc, argv, [&] {
    const auto sources = common.sources();
    const ConfigFile file(sources);
    setup_logging("gateway", common.log(file));
    std::vector<TracedSetting> trace;
    Settings settings = load_settings(sources, &trace);

    gateway::ServerOptions server;
    const auto listen = parse_listen(opt::kListen, flags.text(opt::kListen, file));
    server.listen_address = listen.address;
    server.listen_port = listen.port;
    if (const auto admin = flags.text(opt::kAdminListen, file); admin != "off" && !admin.empty()) {
      server.admin_listen = parse_listen(opt::kAdminListen, admin);
      if (server.admin_listen->port != 0 && server.admin_listen->port == listen.port &&
          server.admin_listen->address == listen.address) {
        throw ConfigError(opt::kAdminListen.setting() + ": must differ from " +
                          opt::kListen.setting());
      }
    }
    server.required_services =
        parse_required(opt::kRequiredServices, flags.text(opt::kRequiredServices, file), settings);
    server.threads = static_cast<int>(flags.integer(opt::kThreads, file));
    server.broker_links_on_http_thread = true;  // with one HTTP thread
    server.max_body = static_cast<std::size_t>(flags.integer(opt::kMaxBody, file));
    server.max_header = static_cast<std::size_t>(flags.integer(opt::kMaxHeader, file));
    server.max_connections = static_cast<std::size_t>(flags.integer(opt::kMaxConnections, file));
    server.max_connections_per_client =
        static_cast<std::size_t>(flags.integer(opt::kMaxConnectionsPerClient, file));
    server.header_timeout = flags.seconds(opt::kHeaderTimeout, file);
    server.body_timeout = flags.seconds(opt::kBodyTimeout, file);
    server.idle_timeout = flags.seconds(opt::kIdleTimeout, file);
    server.auth = load_auth(flags, file);
    server.hop_stamps = flags.boolean(opt::kHopStamps, file);
    server.trusted_proxies = gateway::TrustedProxies::parse(opt::kTrustedProxies.setting(),
                                                            flags.text(opt::kTrustedProxies, file));
    if (server.auth.enabled()) {
      spdlog::info("gateway auth on: bearer JWT {}, {} API key(s)",
                   server.auth.jwt_secret.empty() ? "off" : "HS256", server.auth.api_keys.size());
    }
    const auto shutdown_grace = flags.seconds(opt::kShutdownGrace, file);

    // With an embedded broker the gateway links to it over inproc://, and to other brokers only
    // if gateway.broker names them; the broker serves other gateways only if broker.frontend is
    // set (both defaults name the same loopback port, which would be the broker itself).
    std::optional<broker::BrokerOptions> embedded;
    if (flags.boolean(opt::kEmbeddedBroker, file)) {
      embedded = broker::load_broker_options(flags, file, settings);
      embedded->local_frontend = std::string(gateway::kEmbeddedBrokerEndpoint);
      if (flags.sourced(options::broker::kFrontend, file).source == ConfigSource::kDefault) {
        embedded->frontend.clear();
      }
      broker::check_plain_endpoints(*embedded);
    }
    gateway::BrokerClientOptions link;
    link.endpoints = flags.endpoints(opt::kBroker, file);
    if (embedded) {
      if (flags.sourced(opt::kBroker, file).source == ConfigSource::kDefault)
        link.endpoints.clear();
      link.endpoints.insert(link.endpoints.begin(), std::string(gateway::kEmbeddedBrokerEndpoint));
    }
    const auto heartbeat = read_heartbeat(flags, opt::kHeartbeat, opt::kLiveness, file);
    link.heartbeat_interval = heartbeat.interval;
    link.liveness = heartbeat.liveness;
    link.curve = curve::load_client_keys(
        opt::kCurveSecretKeyFile.setting(), flags.text(opt::kCurveSecretKeyFile, file),
        opt::kCurveBrokerKeyFile.setting(), flags.text(opt::kCurveBrokerKeyFile, file));
    if (config_only(app, common, [&] {
          auto rows = option_rows(flags, file, "gateway.");
          if (embedded) {
            for (auto& row : option_rows(flags, file, "broker.")) {
              if (row.key.starts_with("broker.")) rows.push_back(std::move(row));
            }
          }
          for (auto& row : service_rows(trace)) rows.push_back(std::move(row));
          return rows;
        })) {
      return 0;
    }
    if (link.curve) {
      spdlog::info("broker links: CURVE on, public key {}", link.curve->own.public_key);
    } else if (embedded && link.endpoints.size() == 1) {
      spdlog::info("broker link: in-process ({}), no CURVE needed", link.endpoints.front());
    } else {
      spdlog::warn(
          "broker links: CURVE off (no {}): traffic to the broker is neither "
          "authenticated nor encrypted",
          opt::kCurveSecretKeyFile.setting());
    }
    zmq::context_t context(1);
    std::optional<EmbeddedBroker> local_broker;  // bound before the links connect to it
    if (embedded) {
      local_broker.emplace(std::move(*embedded), context,
                           flags.text(options::broker::kAdminListen, file));
    }
    gateway::BrokerClient client(context, link);
    gateway::Server http(server, std::move(settings), client);

    TerminationSignals signals;  // installed before work starts: no signal is missed
    if (local_broker) local_broker->start(http.links_io());
    client.start();
    http.start();
    const int signo = signals.wait();
    spdlog::info("gateway received signal {}; finishing in-flight requests", signo);
    http.stop(shutdown_grace);
    client.stop();
    // After the gateway's own requests are answered; other gateways' get the broker's drain.
    const bool broker_failed = local_broker && local_broker->stop();
    spdlog::info("gateway stopped");
    return broker_failed ? 1 : 0;
  });
}
