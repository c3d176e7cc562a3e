// broker_bench: round trips per second through the broker alone. N echo workers (one DEALER and
// one thread each, answering at once) and one asynchronous client keeping K requests in flight,
// all on loopback TCP. Prints one table row per (N, K).
//
//   broker_bench [--seconds S] [--workers 1,2,4] [--inflight 1,64] [--connect FRONT BACK]
//
// Without --connect the broker runs in this process on its own thread (its main-thread CPU time
// per request is then reported); with it, the bench drives an external courier-broker.
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "broker/broker.hpp"
#include "common/envelope.hpp"

namespace {

using namespace std::chrono_literals;
using courier::protocol::Command;
using courier::protocol::Frames;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kHeartbeat = 250ms;  // what real gateways and workers send; the broker expects it
constexpr auto kWarmup = 300ms;

struct Config {
  std::chrono::milliseconds duration{2'000};
  std::vector<int> workers{1, 2, 4};
  std::vector<int> inflight{1, 64};
  std::optional<std::pair<std::string, std::string>> connect;
};

struct Result {
  int workers = 0;
  int inflight = 0;
  std::uint64_t round_trips = 0;
  double seconds = 0;
  double p50_us = 0;
  double p99_us = 0;
  double broker_cpu_us = -1;      // broker main thread CPU per round trip; -1 when external
  double process_cpu_us = 0;      // this whole process (all of the above, their ZeroMQ I/O threads)
  std::uint64_t all_replies = 0;  // including warm-up and drain
};

double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto sec = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; };
  return sec(usage.ru_utime) + sec(usage.ru_stime);
}

double thread_cpu_seconds(pthread_t thread) {
  clockid_t id;
  if (pthread_getcpuclockid(thread, &id) != 0) return 0;
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void send_control(zmq::socket_t& socket, Command command) {
  Frames frames;
  courier::protocol::add_header(frames, command);
  (void)zmq::send_multipart(socket, frames, zmq::send_flags::dontwait);
}

// Answers every REQUEST at once with the same small reply envelope.
void run_echo_worker(zmq::context_t& context, const std::string& backend, int index,
                     const std::atomic<bool>& stop, std::atomic<int>& registered) {
  pthread_setname_np(pthread_self(), ("worker-" + std::to_string(index)).c_str());
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::sndhwm, 100'000);
  socket.set(zmq::sockopt::rcvhwm, 100'000);
  socket.connect(backend);
  Frames ready;
  courier::protocol::add_ready(ready, "echo", 10'000, "bench-worker-" + std::to_string(index));
  zmq::send_multipart(socket, ready);

  courier::ReplyEnvelope reply;
  reply.status = 200;
  reply.body = "ok";
  reply.worker_id = "bench";
  const zmq::message_t reply_envelope = courier::encode(reply);

  bool greeted = false;
  auto next_heartbeat = SteadyClock::now() + kHeartbeat;
  Frames in;
  Frames out;
  while (!stop.load(std::memory_order_relaxed)) {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 50ms);
    while (true) {
      in.clear();
      if (!zmq::recv_multipart(socket, std::back_inserter(in), zmq::recv_flags::dontwait)) break;
      Command command{};
      if (courier::protocol::parse_command(in, 0, command)) continue;
      if (command == Command::kHeartbeat && !greeted) {
        greeted = true;
        registered.fetch_add(1);
      }
      if (command != Command::kRequest || in.size() != 7) continue;
      out.clear();
      courier::protocol::add_header(out, Command::kReply);
      out.push_back(std::move(in[3]));  // the correlation id, as received
      zmq::message_t envelope;
      envelope.copy(const_cast<zmq::message_t&>(reply_envelope));
      out.push_back(std::move(envelope));
      zmq::send_multipart(socket, out);
    }
    if (SteadyClock::now() >= next_heartbeat) {
      send_control(socket, Command::kHeartbeat);
      next_heartbeat = SteadyClock::now() + kHeartbeat;
    }
  }
  send_control(socket, Command::kDisconnect);
}

// One client keeping `inflight` requests outstanding; returns once the measured window is over
// and the outstanding replies are in (or a bounded wait for them has passed).
Result run_client(zmq::context_t& context, const std::string& frontend, int inflight,
                  std::chrono::milliseconds duration) {
  pthread_setname_np(pthread_self(), "client");
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::sndhwm, 100'000);
  socket.set(zmq::sockopt::rcvhwm, 100'000);
  socket.connect(frontend);

  courier::RequestEnvelope request;
  request.service = "echo";
  request.method = "GET";
  request.target = "/bench";
  request.headers = {{"Accept", "*/*"}};
  const zmq::message_t request_envelope = courier::encode(request);

  // Slot i of the window carries ids i, i + inflight, ...: the id says when it was sent.
  std::vector<SteadyClock::time_point> sent_at(static_cast<std::size_t>(inflight));
  std::vector<float> latencies_us;
  latencies_us.reserve(1'000'000);
  std::uint64_t next_seq = 0;

  const auto send_request = [&](std::uint64_t seq) {
    courier::protocol::RequestHeader header;
    header.service = "echo";
    for (int i = 0; i < 8; ++i) header.id[8 + i] = static_cast<std::uint8_t>(seq >> (56 - 8 * i));
    header.deadline_ms =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch() + 30s)
                                       .count());
    header.flags = courier::protocol::kFlagRetrySafe;
    zmq::message_t envelope;
    envelope.copy(const_cast<zmq::message_t&>(request_envelope));
    Frames frames;
    frames.reserve(7);
    courier::protocol::add_request(frames, header, std::move(envelope));
    sent_at[seq % static_cast<std::uint64_t>(inflight)] = SteadyClock::now();
    zmq::send_multipart(socket, frames);
  };

  const auto start = SteadyClock::now();
  const auto measure_from = start + kWarmup;
  const auto measure_until = measure_from + duration;
  auto next_heartbeat = start;
  std::uint64_t outstanding = 0;
  std::uint64_t measured = 0;
  std::uint64_t all_replies = 0;
  for (; outstanding < static_cast<std::uint64_t>(inflight); ++outstanding)
    send_request(next_seq++);

  Frames in;
  bool sending = true;
  const auto give_up = measure_until + 5s;
  while ((sending || outstanding > 0) && SteadyClock::now() < give_up) {
    const auto now = SteadyClock::now();
    if (now >= next_heartbeat) {
      send_control(socket, Command::kHeartbeat);
      next_heartbeat = now + kHeartbeat;
    }
    if (sending && now >= measure_until) sending = false;
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 50ms);
    while (true) {
      in.clear();
      if (!zmq::recv_multipart(socket, std::back_inserter(in), zmq::recv_flags::dontwait)) break;
      courier::protocol::CorrelationId id{};
      Command command{};
      if (courier::protocol::parse_command(in, 0, command) || command != Command::kReply ||
          courier::protocol::parse_reply(in, 0, id)) {
        continue;
      }
      std::uint64_t seq = 0;
      for (int i = 0; i < 8; ++i) seq = (seq << 8) | id[8 + i];
      const auto t = SteadyClock::now();
      --outstanding;
      ++all_replies;
      if (t >= measure_from && t < measure_until) {
        ++measured;
        latencies_us.push_back(std::chrono::duration<float, std::micro>(
                                   t - sent_at[seq % static_cast<std::uint64_t>(inflight)])
                                   .count());
      }
      if (sending) {
        send_request(next_seq++);
        ++outstanding;
      }
    }
  }
  Result result;
  result.inflight = inflight;
  result.round_trips = measured;
  result.all_replies = all_replies;
  result.seconds = std::chrono::duration<double>(duration).count();
  if (!latencies_us.empty()) {
    const auto at = [&](double q) {
      const auto k = static_cast<std::size_t>(q * static_cast<double>(latencies_us.size() - 1));
      std::nth_element(latencies_us.begin(), latencies_us.begin() + static_cast<long>(k),
                       latencies_us.end());
      return static_cast<double>(latencies_us[k]);
    };
    result.p50_us = at(0.50);
    result.p99_us = at(0.99);
  }
  if (outstanding > 0)
    std::fprintf(stderr, "warning: %llu replies missing\n",
                 static_cast<unsigned long long>(outstanding));
  return result;
}

Result run_one(const Config& config, int workers, int inflight) {
  std::unique_ptr<courier::broker::Broker> broker;
  std::thread broker_thread;
  std::string frontend, backend;
  if (config.connect) {
    frontend = config.connect->first;
    backend = config.connect->second;
  } else {
    courier::broker::BrokerOptions options;
    options.frontend = "tcp://127.0.0.1:*";
    options.backend = "tcp://127.0.0.1:*";
    options.dispatcher.broker_id = "bench";
    broker = std::make_unique<courier::broker::Broker>(options);
    frontend = broker->frontend_endpoint();
    backend = broker->backend_endpoint();
    broker_thread = std::thread([&] {
      pthread_setname_np(pthread_self(), "broker");
      broker->run(false);
    });
  }

  zmq::context_t context(1);
  std::atomic<bool> stop{false};
  std::atomic<int> registered{0};
  std::vector<std::thread> worker_threads;
  for (int i = 0; i < workers; ++i) {
    worker_threads.emplace_back([&, i] { run_echo_worker(context, backend, i, stop, registered); });
  }
  const auto wait_until = SteadyClock::now() + 5s;
  while (registered.load() < workers && SteadyClock::now() < wait_until) {
    std::this_thread::sleep_for(1ms);  // start-up only; not part of any measurement
  }
  if (registered.load() < workers) {
    std::fprintf(stderr, "only %d of %d workers registered\n", registered.load(), workers);
  }

  // CPU over the client's whole run (warm-up and drain included), divided by all its replies.
  const double cpu_before = broker ? thread_cpu_seconds(broker_thread.native_handle()) : 0;
  const double process_before = process_cpu_seconds();
  Result result = run_client(context, frontend, inflight, config.duration);
  const double cpu_after = broker ? thread_cpu_seconds(broker_thread.native_handle()) : 0;
  if (result.all_replies > 0) {
    result.process_cpu_us =
        (process_cpu_seconds() - process_before) * 1e6 / double(result.all_replies);
  }
  result.workers = workers;

  stop.store(true);
  for (auto& t : worker_threads) t.join();
  if (broker) {
    broker->stop();
    broker_thread.join();
    if (result.all_replies > 0) {
      result.broker_cpu_us = (cpu_after - cpu_before) * 1e6 / double(result.all_replies);
    }
  }
  return result;
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    p = std::strchr(p, ',');
    if (!p) break;
    ++p;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) {
      config.duration = std::chrono::milliseconds(static_cast<long>(std::atof(argv[++i]) * 1000.0));
    } else if (arg == "--workers" && i + 1 < argc) {
      config.workers = parse_list(argv[++i]);
    } else if (arg == "--inflight" && i + 1 < argc) {
      config.inflight = parse_list(argv[++i]);
    } else if (arg == "--connect" && i + 2 < argc) {
      config.connect = std::make_pair(std::string(argv[i + 1]), std::string(argv[i + 2]));
      i += 2;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seconds S] [--workers 1,2,4] [--inflight 1,64] "
                   "[--connect FRONTEND BACKEND]\n",
                   argv[0]);
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::err);  // workers leaving between runs is expected
  std::printf(
      "| workers | in flight | round trips/s | p50 us | p99 us | broker thread CPU us/rt "
      "| all threads CPU us/rt |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  std::fflush(stdout);
  for (int workers : config.workers) {
    for (int inflight : config.inflight) {
      const Result r = run_one(config, workers, inflight);
      char cpu[32] = "n/a";
      if (r.broker_cpu_us >= 0) std::snprintf(cpu, sizeof cpu, "%.1f", r.broker_cpu_us);
      std::printf("| %d | %d | %.0f | %.0f | %.0f | %s | %.1f |\n", r.workers, r.inflight,
                  double(r.round_trips) / r.seconds, r.p50_us, r.p99_us, cpu, r.process_cpu_us);
      std::fflush(stdout);
      // For run_broker_bench.sh --binary, which divides the broker process's CPU time by it.
      std::fprintf(stderr, "replies %llu\n", static_cast<unsigned long long>(r.all_replies));
    }
  }
  return 0;
}
