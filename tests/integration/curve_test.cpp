// CURVE on the broker links, from outside: the real binaries with keys made by courier-keys, and
// raw libzmq peers with no key, an unlisted key, or a key for the other socket, which must never
// get an answer while the gateway's traffic keeps flowing.
#include "common/curve.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "common/envelope.hpp"
#include "common/frames.hpp"
#include "tests/integration/topology.hpp"
#include "tests/support/test_upstream.hpp"

namespace courier::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using protocol::Command;

class KeyDir {
 public:
  KeyDir() {
    static int n = 0;
    path_ = fs::temp_directory_path() /
            ("courier-curve-it-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::remove_all(path_);
    // Made by the tool itself, as compose and scripts/up.sh do.
    ChildProcess keys(COURIER_KEYS_BIN, {"init", path_.string()});
    const auto status = keys.wait_exit(10s);
    if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      throw std::runtime_error("courier-keys init failed: " + keys.log_text());
    }
  }
  ~KeyDir() { fs::remove_all(path_); }
  std::string operator()(const std::string& name) const { return (path_ / name).string(); }

  std::vector<std::string> broker_args() const {
    return {"--curve-secret-key-file",      (*this)("broker.key"), "--curve-gateway-keys",
            (*this)("gateways.authorized"), "--curve-worker-keys", (*this)("workers.authorized")};
  }
  std::vector<std::string> client_args(const std::string& who) const {
    return {"--curve-secret-key-file", (*this)(who + ".key"), "--curve-broker-key-file",
            (*this)("broker.pub")};
  }

 private:
  fs::path path_;
};

// Broker, one worker per built-in service and the gateway, all with their keys. The worker's keys
// go on its own command line, so that a test can start another worker with other keys.
struct CurveTopology {
  CurveTopology(const KeyDir& keys, const TestUpstream& upstream)
      : topology([&] {
          TopologyOptions options;
          options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
          options.broker_args = keys.broker_args();
          options.gateway_args = keys.client_args("gateway");
          options.start = false;
          return options;
        }()) {
    topology.start_broker();
    topology.start_worker("rule-engine", keys.client_args("worker"));
    topology.start_worker("ai-gm", keys.client_args("worker"));
    topology.start_gateway();
  }
  Topology topology;
};

// A raw DEALER peer: no key, or a CURVE client with the given keys.
struct RawPeer {
  RawPeer(zmq::context_t& context, const std::string& endpoint,
          std::optional<curve::ClientKeys> keys)
      : socket(context, zmq::socket_type::dealer) {
    socket.set(zmq::sockopt::linger, 0);
    if (keys) curve::apply_client(socket, *keys);
    socket.connect(endpoint);
  }
  void send(protocol::Frames frames) {
    (void)zmq::send_multipart(socket, frames, zmq::send_flags::dontwait);
  }
  // Anything at all within `timeout`.
  bool received_within(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    return zmq::poll(&item, 1, timeout) > 0;
  }
  zmq::socket_t socket;
};

protocol::Frames stats_frames() {
  protocol::Frames f;
  protocol::add_header(f, Command::kStats);
  f.push_back(protocol::id_frame(protocol::CorrelationId{7}));
  return f;
}

protocol::Frames request_frames(const std::string& path) {
  RequestEnvelope request;
  request.id = protocol::CorrelationId{9};
  request.service = "rule-engine";
  request.method = "GET";
  request.target = path;
  request.deadline_ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch() + 30s)
                                     .count());
  protocol::Frames f;
  protocol::add_request(f, protocol::request_header(request), encode(request));
  return f;
}

protocol::Frames ready_frames() {
  protocol::Frames f;
  protocol::add_ready(f, "rule-engine", 1000, "rogue");
  return f;
}

std::uint64_t broker_counter(const Topology& topology, const std::string& name) {
  const auto r = topology.admin("/services", {}, 1s);
  if (!r.ok() || r.status != 200) return 0;
  const auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded()) return 0;
  return j["broker"]["counters"].value(name, std::uint64_t{0});
}

TEST(Curve, ProxiedRequestSucceedsWithTheRightKeys) {
  KeyDir keys;
  TestUpstream upstream;
  CurveTopology curve(keys, upstream);
  auto& topology = curve.topology;
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto r = topology.get("/rule-engine/hello");
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(upstream.hits("/hello"), 1u);
  EXPECT_NE(topology.broker().log_text().find("CURVE on"), std::string::npos);
  EXPECT_EQ(topology.broker().log_text().find("running without CURVE"), std::string::npos);
  if (HasFailure()) std::cerr << topology.logs();
}

// The broker inside the gateway takes its keys from the broker.* settings (here the
// environment); the gateway's own link to it is in-process and needs none, while a worker
// still needs its listed key.
TEST(Curve, AnEmbeddedBrokerRequiresKeysOfWorkersButNotOfItsOwnGateway) {
  KeyDir keys;
  TestUpstream upstream;
  TopologyOptions options;
  options.upstreams = {{"rule-engine", upstream.url()}, {"ai-gm", upstream.url()}};
  options.embedded_broker = true;
  options.start = false;
  options.env = {{"COURIER_BROKER_CURVE_SECRET_KEY_FILE", keys("broker.key")},
                 {"COURIER_BROKER_CURVE_GATEWAY_KEYS_FILE", keys("gateways.authorized")},
                 {"COURIER_BROKER_CURVE_WORKER_KEYS_FILE", keys("workers.authorized")}};
  Topology topology(options);
  topology.start_worker("rule-engine", keys.client_args("worker"));
  topology.start_worker("ai-gm", keys.client_args("worker"));
  topology.start_gateway();
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  EXPECT_EQ(topology.get("/rule-engine/hello").status, 200u) << topology.logs();
  EXPECT_EQ(upstream.hits("/hello"), 1u);
  EXPECT_NE(topology.gateway().log_text().find("broker CURVE on"), std::string::npos)
      << topology.logs();

  // A worker without keys never registers, and never takes a request.
  auto& stranger = topology.start_worker("rule-engine");
  const auto registered = wait_until(
      [&] {
        const auto r = topology.admin("/services", {}, 1s);
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        return !j.is_discarded() && j["services"]["rule-engine"].value("workers", 0) >= 2;
      },
      1500ms, 50ms);
  EXPECT_FALSE(registered) << topology.logs();
  EXPECT_TRUE(stranger.running());
}

TEST(Curve, PeersWithoutAListedKeyNeverGetAnAnswerWhileTrafficFlows) {
  KeyDir keys;
  TestUpstream upstream;
  CurveTopology curve(keys, upstream);
  auto& topology = curve.topology;
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();

  const auto broker_key = curve::load_public_key("broker.pub", keys("broker.pub"));
  const auto stranger = curve::ClientKeys{curve::generate(), broker_key};
  const auto gateway_key =
      curve::ClientKeys{curve::load_secret_key("gateway.key", keys("gateway.key")), broker_key};
  const auto frontend = topology.frontends();
  const auto backend = topology.backends();
  zmq::context_t context(1);
  std::vector<std::unique_ptr<RawPeer>> peers;
  const auto add = [&](const std::string& endpoint, std::optional<curve::ClientKeys> k) {
    peers.push_back(std::make_unique<RawPeer>(context, endpoint, std::move(k)));
    return peers.back().get();
  };
  for (auto* gw : {add(frontend, std::nullopt), add(frontend, stranger)}) {
    gw->send(stats_frames());
    gw->send(request_frames("/rogue"));
  }
  // The gateway's key is for the frontend only: on the backend it is as good as none.
  for (auto* wk : {add(backend, std::nullopt), add(backend, stranger), add(backend, gateway_key)}) {
    wk->send(ready_frames());
  }

  // Meanwhile, and after, the real gateway's requests keep succeeding.
  for (int i = 0; i < 20; ++i) {
    const auto r = topology.get("/rule-engine/ok/" + std::to_string(i));
    ASSERT_EQ(r.status, 200u) << r.body << topology.logs();
  }
  // A rogue worker admitted would get its share of these, and heartbeats: none gets anything.
  for (auto& peer : peers) EXPECT_FALSE(peer->received_within(300ms));
  EXPECT_EQ(upstream.hits("/rogue"), 0u);
  // Every refusal is counted: two on the frontend, three on the backend (or more: peers retry).
  EXPECT_TRUE(
      wait_until([&] { return broker_counter(topology, "curve_denied_gateways") >= 2; }, 10s, 50ms))
      << topology.logs();
  EXPECT_TRUE(
      wait_until([&] { return broker_counter(topology, "curve_denied_workers") >= 3; }, 10s, 50ms))
      << topology.logs();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(topology.get("/rule-engine/after/" + std::to_string(i)).status, 200u);
  }
  const auto log = topology.broker().log_text();
  EXPECT_NE(log.find("CURVE handshake denied on workers"), std::string::npos) << log;
  EXPECT_NE(log.find("is not authorized"), std::string::npos) << log;
  EXPECT_NE(log.find("CURVE handshake failed on frontend"), std::string::npos) << log;
  if (HasFailure()) std::cerr << topology.logs();
}

TEST(Curve, AWorkerWithTheWrongBrokerKeySaysCurveAndNeverRegisters) {
  KeyDir keys;
  TestUpstream upstream;
  CurveTopology curve(keys, upstream);
  auto& topology = curve.topology;
  ASSERT_TRUE(topology.wait_ready()) << topology.logs();
  const auto other = fs::path(keys("other")).string();
  curve::write_key_pair(other, "not-the-broker", false);
  auto& worker = topology.start_worker(
      "rule-engine", {"--curve-secret-key-file", keys("worker.key"), "--curve-broker-key-file",
                      other + "/not-the-broker.pub"});
  EXPECT_TRUE(wait_until(
      [&] {
        const auto log = worker.log_text();
        return log.find("not answering") != std::string::npos &&
               log.find("CURVE on") != std::string::npos;
      },
      15s, 50ms))
      << worker.log_text();
  EXPECT_TRUE(worker.running());
  EXPECT_TRUE(
      wait_until([&] { return broker_counter(topology, "curve_denied_workers") >= 1; }, 10s, 50ms))
      << topology.logs();
  // Still the one worker of the topology.
  const auto services = nlohmann::json::parse(topology.admin("/services").body);
  EXPECT_EQ(services["services"]["rule-engine"].value("workers", 0), 1) << services.dump();
}

// The broker binary alone, on ports of its own.
struct BrokerRun {
  explicit BrokerRun(std::vector<std::string> args, EnvList env = {})
      : process(COURIER_BROKER_BIN, args, env) {}
  // Its exit code, or -1 while still running after `timeout`.
  int exit_code(std::chrono::milliseconds timeout = 10s) {
    const auto status = process.wait_exit(timeout);
    if (!status) return -1;
    return WIFEXITED(*status) ? WEXITSTATUS(*status) : 128 + WTERMSIG(*status);
  }
  bool logged(const std::string& text, std::chrono::milliseconds timeout = 10s) {
    return wait_until([&] { return process.log_text().find(text) != std::string::npos; }, timeout,
                      20ms);
  }
  ChildProcess process;
};

TEST(CurveBroker, RefusesToListenOnANonLoopbackAddressWithoutKeys) {
  BrokerRun broker({"--frontend", "tcp://0.0.0.0:*", "--backend", "tcp://127.0.0.1:*"});
  EXPECT_EQ(broker.exit_code(), 2) << broker.process.log_text();
  EXPECT_NE(broker.process.log_text().find("refusing to listen on tcp://0.0.0.0:* without CURVE"),
            std::string::npos)
      << broker.process.log_text();
}

TEST(CurveBroker, RunsInsecureWhenToldSoAndWarns) {
  for (const auto& [args, env] :
       {std::pair{std::vector<std::string>{"--insecure"}, EnvList{}},
        std::pair{std::vector<std::string>{}, EnvList{{"COURIER_BROKER_INSECURE", "true"}}}}) {
    std::vector<std::string> all = {"--frontend", "tcp://127.0.0.1:*", "--backend",
                                    "tcp://0.0.0.0:*"};
    all.insert(all.end(), args.begin(), args.end());
    BrokerRun broker(all, env);
    EXPECT_TRUE(broker.logged("broker running without CURVE: anyone who can reach"))
        << broker.process.log_text();
    EXPECT_TRUE(broker.process.running());
  }
}

TEST(CurveBroker, OnLoopbackWithoutKeysStartsWithAWarning) {
  BrokerRun broker({"--frontend", "tcp://127.0.0.1:*", "--backend",
                    "ipc:///tmp/courier-curve-" + std::to_string(::getpid())});
  EXPECT_TRUE(broker.logged("running without CURVE")) << broker.process.log_text();
  EXPECT_TRUE(broker.process.running());
}

TEST(CurveBroker, ABadKeyLineStopsStartUpNamingFileAndLine) {
  KeyDir keys;
  {
    std::ofstream out(keys("workers.authorized"), std::ios::app);
    out << "this-is-not-a-key worker-2\n";
  }
  std::vector<std::string> args = {"--frontend", "tcp://0.0.0.0:*", "--backend", "tcp://0.0.0.0:*"};
  const auto curve_args = keys.broker_args();
  args.insert(args.end(), curve_args.begin(), curve_args.end());
  BrokerRun broker(args);
  EXPECT_EQ(broker.exit_code(), 2);
  EXPECT_NE(
      broker.process.log_text().find(keys("workers.authorized") + ":3: not a CURVE public key"),
      std::string::npos)
      << broker.process.log_text();
}

TEST(CurveBroker, WithKeysListensAnywhere) {
  KeyDir keys;
  std::vector<std::string> args = {"--frontend", "tcp://0.0.0.0:*", "--backend", "tcp://0.0.0.0:*"};
  const auto curve_args = keys.broker_args();
  args.insert(args.end(), curve_args.begin(), curve_args.end());
  BrokerRun broker(args);
  EXPECT_TRUE(broker.logged("broker CURVE on: public key")) << broker.process.log_text();
  EXPECT_TRUE(broker.process.running());
}

TEST(CurveClients, SomeButNotAllKeyOptionsStopStartUp) {
  KeyDir keys;
  ChildProcess gateway(COURIER_GATEWAY_BIN,
                       {"--listen", "127.0.0.1:0", "--curve-secret-key-file", keys("gateway.key")});
  const auto status = gateway.wait_exit(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(gateway.log_text().find("CURVE needs both"), std::string::npos) << gateway.log_text();
  ChildProcess worker(COURIER_WORKER_BIN,
                      {"--service", "rule-engine", "--curve-broker-key-file", keys("broker.pub")},
                      {{"RULE_ENGINE_URL", "http://127.0.0.1:1"}});
  const auto wstatus = worker.wait_exit(10s);
  ASSERT_TRUE(wstatus);
  EXPECT_EQ(WEXITSTATUS(*wstatus), 2);
  EXPECT_NE(worker.log_text().find("CURVE needs both"), std::string::npos) << worker.log_text();
  ChildProcess broker(COURIER_BROKER_BIN,
                      {"--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*",
                       "--curve-secret-key-file", keys("broker.key")});
  const auto bstatus = broker.wait_exit(10s);
  ASSERT_TRUE(bstatus);
  EXPECT_EQ(WEXITSTATUS(*bstatus), 2);
  EXPECT_NE(broker.log_text().find("CURVE needs all of"), std::string::npos) << broker.log_text();
}

}  // namespace
}  // namespace courier::testing
