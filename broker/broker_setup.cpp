#include "broker/broker_setup.hpp"

#include <spdlog/spdlog.h>

#include "broker/broker_metrics.hpp"
#include "common/frames.hpp"
#include "common/metrics_text.hpp"

namespace courier::broker {

namespace {

namespace opt = options::broker;

// All three files, or none (no CURVE).
std::optional<CurveServerOptions> load_curve(const OptionFlags& flags, const ConfigFile& file) {
  const auto secret = flags.text(opt::kCurveSecretKeyFile, file);
  const auto gateways = flags.text(opt::kCurveGatewayKeys, file);
  const auto workers = flags.text(opt::kCurveWorkerKeys, file);
  if (secret.empty() && gateways.empty() && workers.empty()) return std::nullopt;
  for (const auto& [value, o] : {std::pair{&secret, &opt::kCurveSecretKeyFile},
                                 std::pair{&gateways, &opt::kCurveGatewayKeys},
                                 std::pair{&workers, &opt::kCurveWorkerKeys}}) {
    if (value->empty()) {
      throw ConfigError("CURVE needs all of " + opt::kCurveSecretKeyFile.setting() + ", " +
                        opt::kCurveGatewayKeys.setting() + " and " +
                        opt::kCurveWorkerKeys.setting() + "; " + o->setting() + " is not set");
    }
  }
  if (!curve::available()) {
    throw ConfigError(opt::kCurveSecretKeyFile.setting() +
                      ": this libzmq was built without CURVE support");
  }
  CurveServerOptions out;
  out.own = curve::load_secret_key(opt::kCurveSecretKeyFile.setting(), secret);
  out.gateways = curve::load_authorized(opt::kCurveGatewayKeys.setting(), gateways);
  out.workers = curve::load_authorized(opt::kCurveWorkerKeys.setting(), workers);
  return out;
}

// Workers may register only for declared services: broker.services if set ("*": any, up to
// max_services), else the services the shared configuration names.
void load_services(const OptionFlags& flags, const ConfigFile& file, const Settings& settings,
                   DispatcherOptions& out) {
  const auto declared = flags.text(opt::kServices, file);
  if (declared.empty()) {
    for (const auto& [name, svc] : settings.services) out.services.insert(name);
    return;
  }
  if (declared == "*") return;
  std::string item;
  for (std::size_t i = 0; i <= declared.size(); ++i) {
    if (i < declared.size() && declared[i] != ',') {
      if (declared[i] != ' ') item += declared[i];
      continue;
    }
    if (item.empty()) continue;
    if (!protocol::valid_service_name(item)) {
      throw ConfigError(opt::kServices.setting() + ": invalid service name " + item);
    }
    out.services.insert(item);
    item.clear();
  }
  if (out.services.empty()) {
    throw ConfigError(opt::kServices.setting() + ": no service named (use * for any)");
  }
}

}  // namespace

BrokerOptions load_broker_options(const OptionFlags& flags, const ConfigFile& file,
                                  const Settings& settings) {
  BrokerOptions options;
  options.frontend = flags.text(opt::kFrontend, file);
  options.backend = flags.text(opt::kBackend, file);
  options.dispatcher.broker_id = flags.text(opt::kId, file);
  if (options.dispatcher.broker_id.empty()) options.dispatcher.broker_id = host_name("broker");
  const auto heartbeat = read_heartbeat(flags, opt::kHeartbeat, opt::kLiveness, file);
  options.dispatcher.heartbeat_interval = heartbeat.interval;
  options.dispatcher.liveness = heartbeat.liveness;
  options.dispatcher.no_worker_grace = flags.seconds(opt::kNoWorkerGrace, file);
  options.drain_timeout = flags.seconds(opt::kDrainTimeout, file);
  options.insecure = flags.boolean(opt::kInsecure, file);
  options.curve = load_curve(flags, file);
  for (const auto& [name, svc] : settings.services) {
    options.dispatcher.max_queue[name] = svc.max_queue;
  }
  load_services(flags, file, settings, options.dispatcher);
  options.dispatcher.max_services =
      static_cast<std::size_t>(flags.integer(opt::kMaxServices, file));
  options.dispatcher.max_workers_per_service =
      static_cast<std::size_t>(flags.integer(opt::kMaxWorkersPerService, file));
  options.dispatcher.max_gateways =
      static_cast<std::size_t>(flags.integer(opt::kMaxGateways, file));
  options.max_request_message = flags.integer(opt::kMaxRequestMessage, file);
  options.max_reply_message = flags.integer(opt::kMaxReplyMessage, file);
  return options;
}

void log_declared_services(const BrokerOptions& options) {
  if (options.dispatcher.services.empty()) {
    spdlog::warn("broker accepts workers for any service (broker.services=*), at most {}",
                 options.dispatcher.max_services);
  } else {
    spdlog::info("broker accepts workers for {} declared service(s)",
                 options.dispatcher.services.size());
  }
}

std::unique_ptr<AdminHttpServer> make_admin(const Broker& broker, const std::string& listen) {
  if (listen.empty()) return nullptr;
  auto admin = std::make_unique<AdminHttpServer>(
      opt::kAdminListen.setting(), listen,
      std::map<std::string, AdminHandler, std::less<>>{
          {"/healthz", [] { return json_status(200, "ok"); }},
          {"/readyz",
           [&broker] {
             return broker.serving() ? json_status(200, "ready")
                                     : json_status(503, "not ready", "broker not serving");
           }},
          {"/metrics", [&broker] {
             auto families = metrics::process_families("broker");
             if (const auto stats = broker.snapshot(std::chrono::seconds(1))) {
               add_broker_metrics(families, *stats);
             }
             return AdminResponse{200, std::string(metrics::kContentType),
                                  metrics::serialize(families)};
           }}});
  spdlog::info(
      "broker admin listening on {} (/metrics, /healthz, /readyz)",
      admin->endpoint().address().to_string() + ":" + std::to_string(admin->endpoint().port()));
  return admin;
}

}  // namespace courier::broker
