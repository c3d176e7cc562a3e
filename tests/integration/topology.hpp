// Starts the real Courier binaries (broker, workers, gateway) on loopback ports chosen at run
// time, for integration tests. Readiness is polled on the gateway's /readyz with a deadline. The
// gateway's admin listener (/metrics, /services, /dashboard) gets a port of its own too.
#pragma once

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/net.hpp"
#include "tests/support/process.hpp"

namespace courier::testing {

struct TopologyOptions {
  std::map<std::string, std::string> upstreams;  // service -> URL; becomes <SVC>_URL
  int workers_per_service = 1;
  int brokers = 1;  // every worker and the gateway connect to all of them
  // The gateway runs the one broker itself (gateway.embedded_broker): no broker process, the
  // workers connect to the gateway's broker backend. Set for a whole suite by
  // COURIER_TEST_EMBEDDED_BROKER=1 (CTest runs some suites both ways).
  bool embedded_broker = std::getenv("COURIER_TEST_EMBEDDED_BROKER") != nullptr;
  EnvList env;  // extra environment for every process
  std::vector<std::string> broker_args;
  std::vector<std::string> worker_args;
  std::vector<std::string> gateway_args;
  // 1: the broker links run on the gateway's HTTP thread; more: on a thread of their own.
  int gateway_threads = 2;
  bool start = true;  // false: the test starts the pieces itself
};

class Topology {
 public:
  explicit Topology(TopologyOptions options);
  ~Topology();

  // (Re)starts broker `index` on its ports.
  void start_broker(std::size_t index = 0);
  ChildProcess& start_worker(const std::string& service, std::vector<std::string> args = {});
  void start_gateway();
  // Waits until /readyz answers 200 (broker connected, a worker for every configured service).
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Waits until the gateway's /services (on the admin port) counts at least `count` workers for
  // `service`. Readiness needs only one per service; a test that relies on several being registered
  // waits for them.
  bool wait_workers(const std::string& service, int count,
                    std::chrono::milliseconds timeout = std::chrono::seconds(15));

  std::uint16_t gateway_port() const { return gateway_port_; }
  std::uint16_t admin_port() const { return admin_port_; }
  // Every broker's endpoints, comma-separated (what --broker takes).
  std::string frontends() const;
  std::string backends() const;
  // A broker process; none when the gateway embeds the broker.
  ChildProcess& broker(std::size_t index = 0) { return *brokers_.at(index); }
  bool embedded_broker() const { return options_.embedded_broker; }
  ChildProcess& gateway() { return *gateway_; }
  std::vector<std::unique_ptr<ChildProcess>>& workers() { return workers_; }

  // GET on the gateway's public port.
  HttpResult get(const std::string& target, const HeaderList& headers = {},
                 std::chrono::milliseconds timeout = kDefaultClientTimeout) const;
  // GET on the gateway's admin listener: /metrics, /services, /dashboard.
  HttpResult admin(const std::string& target, const HeaderList& headers = {},
                   std::chrono::milliseconds timeout = kDefaultClientTimeout) const;
  // Every process's log, for failure messages.
  std::string logs() const;

 private:
  EnvList environment() const;

  TopologyOptions options_;
  std::vector<std::unique_ptr<ReservedPort>> reserved_;  // every port below, until destruction
  std::vector<std::uint16_t> frontend_ports_;
  std::vector<std::uint16_t> backend_ports_;
  std::uint16_t gateway_port_ = 0;
  std::uint16_t admin_port_ = 0;
  std::vector<std::unique_ptr<ChildProcess>> brokers_;
  std::unique_ptr<ChildProcess> gateway_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

}  // namespace courier::testing
