// zmq_hop_bench: what one libzmq hop between two processes costs on this machine, the floor under
// each of the four broker hops in Courier's per-hop breakdown (docs/performance.md). A DEALER in
// this process and a ROUTER in a forked child echo one message at a time over loopback TCP (or
// ipc://), each side blocking in zmq_recv as an idle Courier process blocks in its event loop; a
// hop is half a round trip. Prints one line:
//
//   RESULT hop_mean_us=.. hop_p50_us=.. hop_p90_us=.. hop_p99_us=.. round_trips=N bytes=B
//   transport=tcp
//
//   zmq_hop_bench [--round-trips N] [--bytes B] [--ipc DIR]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <zmq.hpp>

namespace {

struct Args {
  int round_trips = 5000;
  std::size_t bytes = 300;  // about a small REQUEST: header frames and a msgpack envelope
  std::string ipc_dir;      // empty: TCP on 127.0.0.1
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--round-trips" && has_value) {
      a.round_trips = std::clamp(std::atoi(argv[++i]), 100, 1'000'000);
    } else if (arg == "--bytes" && has_value) {
      a.bytes = static_cast<std::size_t>(std::clamp(std::atoi(argv[++i]), 1, 1 << 20));
    } else if (arg == "--ipc" && has_value) {
      a.ipc_dir = argv[++i];
    } else {
      std::fprintf(stderr, "usage: zmq_hop_bench [--round-trips N] [--bytes B] [--ipc DIR]\n");
      std::exit(arg == "--help" || arg == "-h" ? 0 : 2);
    }
  }
  return a;
}

// The child: binds, tells the parent where, echoes until the parent ends it (or is silent for
// 5 s). Exiting on its own after the last echo could drop that echo with the socket.
[[noreturn]] void echo(const Args& a, int ready_fd) {
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::rcvtimeo, 5'000);
  router.bind(a.ipc_dir.empty() ? "tcp://127.0.0.1:*" : "ipc://" + a.ipc_dir + "/zmq-hop.sock");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  if (::write(ready_fd, endpoint.data(), endpoint.size()) < 0) std::_Exit(1);
  ::close(ready_fd);
  for (;;) {
    zmq::message_t id;
    zmq::message_t body;
    if (!router.recv(id) || !router.recv(body)) std::_Exit(0);
    router.send(id, zmq::send_flags::sndmore);
    router.send(body, zmq::send_flags::none);
  }
}

double percentile(std::vector<double>& sorted, double p) {
  return sorted[std::min(sorted.size() - 1, static_cast<std::size_t>(p * sorted.size()))];
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int warm_up = 200;
  int ready[2];
  if (::pipe(ready) != 0) return 1;
  // Fork before any libzmq context exists: a context does not survive fork.
  const pid_t child = ::fork();
  if (child < 0) return 1;
  if (child == 0) {
    ::close(ready[0]);
    echo(a, ready[1]);
  }
  ::close(ready[1]);
  char endpoint[256] = {};
  const auto got = ::read(ready[0], endpoint, sizeof endpoint - 1);
  ::close(ready[0]);
  if (got <= 0) return 1;

  zmq::context_t context(1);
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::rcvtimeo, 5'000);
  dealer.connect(endpoint);
  const std::string payload(a.bytes, 'x');
  std::vector<double> hop_us;
  hop_us.reserve(static_cast<std::size_t>(a.round_trips));
  for (int i = 0; i < warm_up + a.round_trips; ++i) {
    const auto start = std::chrono::steady_clock::now();
    dealer.send(zmq::message_t(payload.data(), payload.size()), zmq::send_flags::none);
    zmq::message_t reply;
    if (!dealer.recv(reply)) {
      std::fprintf(stderr, "zmq_hop_bench: no echo within 5 s\n");
      ::kill(child, SIGKILL);
      return 1;
    }
    const std::chrono::duration<double, std::micro> rtt = std::chrono::steady_clock::now() - start;
    if (i >= warm_up) hop_us.push_back(rtt.count() / 2);
  }
  ::kill(child, SIGTERM);
  ::waitpid(child, nullptr, 0);
  std::sort(hop_us.begin(), hop_us.end());
  double sum = 0;
  for (double h : hop_us) sum += h;
  std::printf(
      "RESULT hop_mean_us=%.1f hop_p50_us=%.1f hop_p90_us=%.1f hop_p99_us=%.1f round_trips=%d "
      "bytes=%zu transport=%s\n",
      sum / static_cast<double>(hop_us.size()), percentile(hop_us, 0.5), percentile(hop_us, 0.9),
      percentile(hop_us, 0.99), a.round_trips, a.bytes, a.ipc_dir.empty() ? "tcp" : "ipc");
  return 0;
}
