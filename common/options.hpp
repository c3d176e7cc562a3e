// The component options (gateway.*, broker.*, worker.*, logging.*), each described once: config
// key, flag, env var, default and help. Mains, options-struct defaults and the key check read it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace courier {

// What an option's value is, for --help (CLI11's type name) and for the checks in tests.
enum class ValueKind {
  kText,
  kSeconds,    // a duration in seconds, may be fractional
  kInteger,    // within [min, max]
  kBoolean,    // true/false, 1/0, yes/no, on/off
  kEndpoints,  // ZeroMQ endpoints to connect to, comma-separated
  kHostPort,   // an IP address and a port, HOST:PORT
};

struct ComponentOption {
  std::string_view key;       // config-file and --set key
  std::string_view flag;      // empty: no flag, so that secrets never show in `ps`
  std::string_view env;       // empty: none
  std::string_view fallback;  // the default as text; empty when none or computed at run time
  std::string_view help;      // a computed default is spelled out here, e.g. "[host name]"
  long long min = 0;          // integers only: the accepted range
  long long max = 0;
  ValueKind kind = ValueKind::kText;
  bool secret = false;  // its value is never printed (--print-config shows "<redacted>")

  // How errors name the option: "--flag (key)", or "key (ENV)" when it has no flag.
  std::string setting() const;
  // The default, typed, for the options structs: they and the mains share one value.
  std::chrono::milliseconds default_seconds() const;
  long long default_integer() const;
  bool default_bool() const;
  std::string default_text() const { return std::string(fallback); }
  // The value's type as --help shows it: TEXT, SECONDS, "INT in [0, 256]", BOOL, ENDPOINTS,
  // HOST:PORT.
  std::string type_name() const;
};

// "0.0.0.0:8080" -> "0.0.0.0" and 8080 ("[::1]:80" -> "::1"); no validation, for defaults.
std::string host_of(std::string_view host_port);
std::uint16_t port_of(std::string_view host_port);

namespace options {

// Wrappers that give an option of the table its kind: `seconds({...})` reads as what it is.
constexpr ComponentOption with_kind(ComponentOption o, ValueKind kind) {
  o.kind = kind;
  return o;
}
constexpr ComponentOption seconds(ComponentOption o) { return with_kind(o, ValueKind::kSeconds); }
constexpr ComponentOption integer(ComponentOption o) { return with_kind(o, ValueKind::kInteger); }
constexpr ComponentOption boolean(ComponentOption o) { return with_kind(o, ValueKind::kBoolean); }
constexpr ComponentOption endpoints(ComponentOption o) {
  return with_kind(o, ValueKind::kEndpoints);
}
constexpr ComponentOption host_port(ComponentOption o) {
  return with_kind(o, ValueKind::kHostPort);
}
constexpr ComponentOption secret(ComponentOption o) {
  o.secret = true;
  return o;
}

// Every process judges its peers by its own interval x liveness, so all three share these.
inline constexpr std::string_view kHeartbeatDefault = "0.25";
inline constexpr std::string_view kLivenessDefault = "4";
constexpr ComponentOption heartbeat(std::string_view key) {
  return seconds({key, "--heartbeat", "COURIER_HEARTBEAT", kHeartbeatDefault,
                  "Heartbeat interval, seconds (at least 0.01)"});
}
constexpr ComponentOption liveness(std::string_view key) {
  return integer({key, "--liveness", "COURIER_LIVENESS", kLivenessDefault,
                  "Missed heartbeats before a peer counts as lost", 1, 100});
}

inline constexpr ComponentOption kLogLevel{"logging.level", "--log-level", "COURIER_LOG_LEVEL",
                                           "info",
                                           "trace, debug, info, warn, error, critical or off"};
inline constexpr ComponentOption kLogFormat{"logging.format", "--log-format", "COURIER_LOG_FORMAT",
                                            "text", "text or json"};
inline constexpr ComponentOption kAccessLog =
    boolean({"logging.access_log", "--access-log", "COURIER_ACCESS_LOG", "true",
             "One access record per request (gateway and worker), whatever logging.level says"});
inline constexpr ComponentOption kAccessLogSkip{
    "logging.access_log_skip", "--access-log-skip", "COURIER_ACCESS_LOG_SKIP",
    "/healthz,/readyz,/metrics", "Request paths never access-logged (exact, comma-separated)"};
inline constexpr ComponentOption kLogQuery =
    boolean({"logging.log_query", "--log-query", "COURIER_LOG_QUERY", "false",
             "Log query values too (off: only the keys, /p?token=)"});

namespace gateway {
inline constexpr ComponentOption kListen =
    host_port({"gateway.listen", "--listen", "COURIER_GATEWAY_LISTEN", "0.0.0.0:8080",
               "HTTP listen address, HOST:PORT"});
// The admin endpoints (/metrics, /services, /dashboard) are served only here, without client auth.
inline constexpr ComponentOption kAdminListen = host_port(
    {"gateway.admin_listen", "--admin-listen", "COURIER_GATEWAY_ADMIN_LISTEN", "127.0.0.1:9901",
     "Admin HTTP address (/metrics, /services, /dashboard; no client auth), HOST:PORT; off: none"});
inline constexpr ComponentOption kRequiredServices{
    "gateway.required_services", "--required-services", "COURIER_REQUIRED_SERVICES", "",
    "Services /readyz needs a worker for, comma-separated [every configured service]"};
inline constexpr ComponentOption kBroker =
    endpoints({"gateway.broker", "--broker", "COURIER_BROKER_URL", "tcp://127.0.0.1:5555",
               "Broker frontend endpoint, or several separated by commas"});
inline constexpr ComponentOption kThreads =
    integer({"gateway.threads", "--threads", "COURIER_GATEWAY_THREADS", "0",
             "HTTP threads, 0: one per core", 0, 256});
inline constexpr ComponentOption kMaxBody =
    integer({"gateway.max_body", "--max-body", "COURIER_MAX_BODY", "8388608",
             "Largest request body in bytes (larger: 413)", 0, std::int64_t{1} << 30});
inline constexpr ComponentOption kMaxHeader =
    integer({"gateway.max_header", "--max-header", "COURIER_MAX_HEADER", "16384",
             "Largest request head in bytes (larger: 431)", 1024, 1 << 20});
inline constexpr ComponentOption kMaxConnections =
    integer({"gateway.max_connections", "--max-connections", "COURIER_MAX_CONNECTIONS_IN", "10000",
             "Open connections at most", 1, 1'000'000});
inline constexpr ComponentOption kMaxConnectionsPerClient =
    integer({"gateway.max_connections_per_client", "--max-connections-per-client",
             "COURIER_MAX_CONNECTIONS_PER_CLIENT", "256",
             "Open connections per client address at most, 0: no limit", 0, 1'000'000});
inline constexpr ComponentOption kHeaderTimeout =
    seconds({"gateway.header_timeout", "--header-timeout", "COURIER_HEADER_TIMEOUT", "10",
             "Seconds to receive a request head"});
inline constexpr ComponentOption kBodyTimeout =
    seconds({"gateway.body_timeout", "--body-timeout", "COURIER_BODY_TIMEOUT", "30",
             "Seconds to receive a request body (and to write a response)"});
inline constexpr ComponentOption kIdleTimeout =
    seconds({"gateway.idle_timeout", "--idle-timeout", "COURIER_IDLE_TIMEOUT", "60",
             "Seconds a keep-alive connection may idle"});
inline constexpr ComponentOption kHeartbeat = heartbeat("gateway.heartbeat");
inline constexpr ComponentOption kLiveness = liveness("gateway.liveness");
inline constexpr ComponentOption kShutdownGrace =
    seconds({"gateway.shutdown_grace", "--shutdown-grace", "COURIER_SHUTDOWN_GRACE", "30",
             "On SIGTERM, seconds to finish requests"});
inline constexpr ComponentOption kJwtSecret =
    secret({"gateway.auth.jwt_secret", "", "COURIER_AUTH_JWT_SECRET", "",
            "HS256 secret, at least 32 bytes"});
inline constexpr ComponentOption kJwtSecretFile{"gateway.auth.jwt_secret_file", "",
                                                "COURIER_AUTH_JWT_SECRET_FILE", "",
                                                "File holding the HS256 secret"};
inline constexpr ComponentOption kApiKeys =
    secret({"gateway.auth.api_keys", "", "COURIER_AUTH_API_KEYS", "", "SUBJECT:KEY,KEY2,..."});
inline constexpr ComponentOption kAuthLeeway =
    seconds({"gateway.auth.leeway", "--auth-leeway", "COURIER_AUTH_LEEWAY", "0",
             "Clock skew allowed on JWT exp/nbf/iat, seconds"});
inline constexpr ComponentOption kAuthRequireExp =
    boolean({"gateway.auth.require_exp", "--auth-require-exp", "COURIER_AUTH_REQUIRE_EXP", "true",
             "Reject JWTs without exp"});
inline constexpr ComponentOption kAuthAudience{"gateway.auth.audience", "--auth-audience",
                                               "COURIER_AUTH_AUDIENCE", "",
                                               "JWTs must name this in aud (empty: not checked)"};
inline constexpr ComponentOption kAuthIssuer{"gateway.auth.issuer", "--auth-issuer",
                                             "COURIER_AUTH_ISSUER", "",
                                             "JWTs must have this iss (empty: not checked)"};
inline constexpr ComponentOption kTrustedProxies{
    "gateway.trusted_proxies", "--trusted-proxies", "COURIER_TRUSTED_PROXIES", "",
    "Peers (IPs or CIDRs, comma-separated) whose Forwarded/X-Forwarded-* headers are kept"};
inline constexpr ComponentOption kHopStamps =
    boolean({"gateway.hop_stamps", "--hop-stamps", "COURIER_HOP_STAMPS", "true",
             "Stamp each request at every hop; per-hop latency in /metrics"});
// A broker in the gateway's own process, on the broker.* settings (docs/operations.md,
// "Embedded broker").
inline constexpr ComponentOption kEmbeddedBroker = boolean(
    {"gateway.embedded_broker", "--embedded-broker", "COURIER_GATEWAY_EMBEDDED_BROKER", "false",
     "Run a broker in this process, reached over inproc:// (its settings: broker.*)"});
// CURVE on the broker link: both or neither.
inline constexpr ComponentOption kCurveSecretKeyFile{
    "gateway.curve.secret_key_file", "--curve-secret-key-file",
    "COURIER_GATEWAY_CURVE_SECRET_KEY_FILE", "",
    "File holding this gateway's CURVE secret key (z85); CURVE on when set"};
inline constexpr ComponentOption kCurveBrokerKeyFile{
    "gateway.curve.broker_key_file", "--curve-broker-key-file", "COURIER_CURVE_BROKER_KEY_FILE", "",
    "File holding the brokers' CURVE public key (z85)"};
}  // namespace gateway

namespace broker {
inline constexpr ComponentOption kFrontend{"broker.frontend", "--frontend",
                                           "COURIER_BROKER_FRONTEND", "tcp://127.0.0.1:5555",
                                           "Endpoint gateways connect to"};
inline constexpr ComponentOption kBackend{"broker.backend", "--backend", "COURIER_BROKER_BACKEND",
                                          "tcp://127.0.0.1:5556", "Endpoint workers connect to"};
inline constexpr ComponentOption kId{"broker.id", "--id", "COURIER_BROKER_ID", "",
                                     "Broker id in stats and logs [host name]"};
inline constexpr ComponentOption kHeartbeat = heartbeat("broker.heartbeat");
inline constexpr ComponentOption kLiveness = liveness("broker.liveness");
inline constexpr ComponentOption kNoWorkerGrace =
    seconds({"broker.no_worker_grace", "--no-worker-grace", "COURIER_NO_WORKER_GRACE", "1",
             "Seconds a request waits for a worker of its service to appear"});
inline constexpr ComponentOption kDrainTimeout =
    seconds({"broker.drain_timeout", "--drain-timeout", "COURIER_BROKER_DRAIN_TIMEOUT", "5",
             "On SIGTERM, seconds to wait for replies"});
// Bounds on what peers can make the broker hold (docs/protocol.md, "What the broker refuses").
inline constexpr ComponentOption kServices{
    "broker.services", "--services", "COURIER_BROKER_SERVICES", "",
    "Services workers may register for, comma-separated; * for any (capped by max_services) "
    "[the configured services]"};
inline constexpr ComponentOption kMaxServices =
    integer({"broker.max_services", "--max-services", "COURIER_BROKER_MAX_SERVICES", "64",
             "With services *, services created at most", 1, 1024});
inline constexpr ComponentOption kMaxWorkersPerService =
    integer({"broker.max_workers_per_service", "--max-workers-per-service",
             "COURIER_BROKER_MAX_WORKERS_PER_SERVICE", "1024",
             "Workers registered per service at most", 1, 100'000});
inline constexpr ComponentOption kMaxGateways =
    integer({"broker.max_gateways", "--max-gateways", "COURIER_BROKER_MAX_GATEWAYS", "1024",
             "Gateway connections known at most", 1, 100'000});
inline constexpr ComponentOption kMaxRequestMessage =
    integer({"broker.max_request_message", "--max-request-message",
             "COURIER_BROKER_MAX_REQUEST_MESSAGE", "9437184",
             "Largest frame in bytes on the frontend (gateway max_body + 1 MiB; larger: connection "
             "dropped)",
             4096, std::int64_t{2} << 30});
inline constexpr ComponentOption kMaxReplyMessage = integer(
    {"broker.max_reply_message", "--max-reply-message", "COURIER_BROKER_MAX_REPLY_MESSAGE",
     "269484032", "Largest frame in bytes on the backend (worker response limit 256 MiB + 1 MiB)",
     4096, std::int64_t{2} << 30});
// CURVE on both sockets: the secret key and both authorized lists, or none of them.
inline constexpr ComponentOption kCurveSecretKeyFile{
    "broker.curve.secret_key_file", "--curve-secret-key-file",
    "COURIER_BROKER_CURVE_SECRET_KEY_FILE", "",
    "File holding the broker's CURVE secret key (z85); CURVE on when set"};
inline constexpr ComponentOption kCurveGatewayKeys{
    "broker.curve.gateway_keys_file", "--curve-gateway-keys",
    "COURIER_BROKER_CURVE_GATEWAY_KEYS_FILE", "",
    "Authorized gateway public keys: a file (KEY [NAME] per line) or a directory of *.pub"};
inline constexpr ComponentOption kCurveWorkerKeys{
    "broker.curve.worker_keys_file", "--curve-worker-keys", "COURIER_BROKER_CURVE_WORKER_KEYS_FILE",
    "", "Authorized worker public keys: a file (KEY [NAME] per line) or a directory of *.pub"};
inline constexpr ComponentOption kInsecure =
    boolean({"broker.insecure", "--insecure", "COURIER_BROKER_INSECURE", "false",
             "Allow a non-loopback endpoint without CURVE (anyone who can reach it is trusted)"});
inline constexpr ComponentOption kAdminListen =
    host_port({"broker.admin_listen", "--admin-listen", "COURIER_BROKER_ADMIN_LISTEN", "",
               "HTTP listen address, HOST:PORT, of /metrics, /healthz and /readyz (empty: off)"});
}  // namespace broker

namespace worker {
inline constexpr ComponentOption kService{"worker.service", "--service", "COURIER_SERVICE", "",
                                          "Service to serve, e.g. rule-engine (required)"};
inline constexpr ComponentOption kBroker = endpoints(
    {"worker.broker", "--broker", "COURIER_WORKER_BROKER", "tcp://127.0.0.1:5556",
     "Broker backend endpoint, or several separated by commas (the capacity is split between "
     "them)"});
inline constexpr ComponentOption kId{"worker.id", "--id", "COURIER_WORKER_ID", "",
                                     "Worker id in logs and stats [host-pid]"};
inline constexpr ComponentOption kHeartbeat = heartbeat("worker.heartbeat");
inline constexpr ComponentOption kLiveness = liveness("worker.liveness");
inline constexpr ComponentOption kDrainTimeout =
    seconds({"worker.drain_timeout", "--drain-timeout", "COURIER_WORKER_DRAIN_TIMEOUT", "30",
             "On SIGTERM, seconds to finish in-flight requests"});
// CURVE on the broker link: both or neither.
inline constexpr ComponentOption kCurveSecretKeyFile{
    "worker.curve.secret_key_file", "--curve-secret-key-file",
    "COURIER_WORKER_CURVE_SECRET_KEY_FILE", "",
    "File holding this worker's CURVE secret key (z85); CURVE on when set"};
inline constexpr ComponentOption kCurveBrokerKeyFile{
    "worker.curve.broker_key_file", "--curve-broker-key-file", "COURIER_CURVE_BROKER_KEY_FILE", "",
    "File holding the brokers' CURVE public key (z85)"};
inline constexpr ComponentOption kAdminListen =
    host_port({"worker.admin_listen", "--admin-listen", "COURIER_WORKER_ADMIN_LISTEN", "",
               "HTTP listen address, HOST:PORT, of /metrics, /healthz and /readyz (empty: off)"});
}  // namespace worker

// All of the above: a key under gateway., broker., worker. or logging. that is not here stops
// start-up, in every binary (they all read the same file).
inline constexpr const ComponentOption* kAll[] = {
    &kLogLevel,
    &kLogFormat,
    &kAccessLog,
    &kAccessLogSkip,
    &kLogQuery,
    &gateway::kListen,
    &gateway::kAdminListen,
    &gateway::kRequiredServices,
    &gateway::kBroker,
    &gateway::kThreads,
    &gateway::kMaxBody,
    &gateway::kMaxHeader,
    &gateway::kMaxConnections,
    &gateway::kMaxConnectionsPerClient,
    &gateway::kHeaderTimeout,
    &gateway::kBodyTimeout,
    &gateway::kIdleTimeout,
    &gateway::kHeartbeat,
    &gateway::kLiveness,
    &gateway::kShutdownGrace,
    &gateway::kJwtSecret,
    &gateway::kJwtSecretFile,
    &gateway::kApiKeys,
    &gateway::kAuthLeeway,
    &gateway::kAuthRequireExp,
    &gateway::kAuthAudience,
    &gateway::kAuthIssuer,
    &gateway::kTrustedProxies,
    &gateway::kHopStamps,
    &gateway::kEmbeddedBroker,
    &gateway::kCurveSecretKeyFile,
    &gateway::kCurveBrokerKeyFile,
    &broker::kFrontend,
    &broker::kBackend,
    &broker::kId,
    &broker::kHeartbeat,
    &broker::kLiveness,
    &broker::kNoWorkerGrace,
    &broker::kDrainTimeout,
    &broker::kServices,
    &broker::kMaxServices,
    &broker::kMaxWorkersPerService,
    &broker::kMaxGateways,
    &broker::kMaxRequestMessage,
    &broker::kMaxReplyMessage,
    &broker::kCurveSecretKeyFile,
    &broker::kCurveGatewayKeys,
    &broker::kCurveWorkerKeys,
    &broker::kInsecure,
    &broker::kAdminListen,
    &worker::kService,
    &worker::kBroker,
    &worker::kId,
    &worker::kHeartbeat,
    &worker::kLiveness,
    &worker::kDrainTimeout,
    &worker::kCurveSecretKeyFile,
    &worker::kCurveBrokerKeyFile,
    &worker::kAdminListen,
};

}  // namespace options

// True for a key in options::kAll.
bool known_component_key(std::string_view key);

}  // namespace courier
