#include "workers/worker.hpp"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <random>

#include "common/errors.hpp"
#include "common/ids.hpp"

namespace courier::workers {

using protocol::Command;

Worker::Worker(zmq::context_t& context, WorkerOptions options, ServiceConfig service)
    : options_(std::move(options)),
      service_(std::move(service)),
      work_(io_.get_executor()),
      forwarder_(io_.get_executor(), service_, options_.worker_id, std::random_device{}()),
      link_(context, ZmqLink::Options{options_.broker, std::chrono::milliseconds(20)},
            ZmqLink::Handlers{[this](protocol::Frames& f) { on_message(f); },
                              [this](auto now) { on_tick(now); }, nullptr,
                              [this](int event) { on_connection_event(event); }}) {}

Worker::~Worker() {
  link_.stop();
  work_.reset();
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
}

void Worker::start() {
  io_thread_ = std::thread([this] { io_.run(); });
  link_.start();
  spdlog::info("worker {} for {} -> {} (capacity {}), broker {}", options_.worker_id, service_.name,
               service_.upstream.text, service_.worker_concurrency, options_.broker);
}

void Worker::send_ready() {
  protocol::Frames frames;
  protocol::add_ready(frames, service_.name, service_.worker_concurrency, options_.worker_id);
  link_.send_now(frames);
  if (draining_.load()) {
    protocol::Frames drain;
    protocol::add_header(drain, Command::kDrain);
    link_.send_now(drain);
  }
}

void Worker::on_message(protocol::Frames& frames) {
  last_seen_ = std::chrono::steady_clock::now();
  Command command{};
  if (protocol::parse_command(frames, 0, command)) {
    spdlog::warn("malformed message from broker dropped");
    return;
  }
  if (!broker_alive_) {
    broker_alive_ = true;
    spdlog::info("broker {} reachable", options_.broker);
  }
  switch (command) {
    case Command::kRequest: {
      protocol::RequestHeader header;
      if (protocol::parse_request(frames, 0, header)) {
        spdlog::warn("malformed request from broker dropped");
        return;
      }
      in_flight_.fetch_add(1);
      asio::co_spawn(io_, run_request(header.id, std::move(frames[protocol::kEnvelopeIndex])),
                     [this](std::exception_ptr e) {
                       if (e) {
                         try {
                           std::rethrow_exception(e);
                         } catch (const std::exception& ex) {
                           spdlog::error("request failed with exception: {}", ex.what());
                         }
                       }
                     });
      return;
    }
    case Command::kDisconnect:
      // The broker does not know us (it restarted, or declared us dead): register again.
      spdlog::info("broker asked us to register again");
      send_ready();
      return;
    case Command::kHeartbeat:
      return;
    default:
      spdlog::warn("unexpected command {} from broker", static_cast<int>(command));
  }
}

asio::awaitable<void> Worker::run_request(protocol::CorrelationId id, zmq::message_t envelope) {
  RequestEnvelope request;
  ReplyEnvelope result;
  if (const auto ec = decode(protocol::view(envelope), request)) {
    result = make_error_reply(ErrorKind::kBadRequest, service_.name,
                              "invalid request envelope: " + ec.message(), id);
  } else if (request.id != id) {
    result = make_error_reply(ErrorKind::kBadRequest, service_.name,
                              "envelope id does not match its frame", id);
  } else {
    envelope = zmq::message_t();  // free the request buffer before the upstream call
    result = co_await forwarder_.forward(std::move(request));
  }
  result.id = id;
  result.worker_id = options_.worker_id;
  reply(id, result);
  {
    const auto& s = forwarder_.stats();
    nlohmann::json status = {{"circuit", forwarder_.circuit_state()},
                             {"requests", s.requests},
                             {"attempts", s.attempts},
                             {"retries", s.retries},
                             {"error_replies", s.error_replies},
                             {"circuit_rejections", s.circuit_rejections},
                             {"budget_rejections", s.budget_rejections}};
    std::lock_guard lock(status_mutex_);
    status_json_ = status.dump();
  }
  in_flight_.fetch_sub(1);
}

void Worker::reply(const protocol::CorrelationId& id, const ReplyEnvelope& reply) {
  protocol::Frames frames;
  frames.reserve(4);
  protocol::add_reply(frames, id, encode(reply));
  link_.post(std::move(frames));
}

void Worker::on_connection_event(int event) {
  if (event == ZMQ_EVENT_CONNECTED) {
    send_ready();  // a new connection is a new peer to the broker: register at once
  } else if (event == ZMQ_EVENT_DISCONNECTED && broker_alive_) {
    broker_alive_ = false;
    spdlog::warn("broker {} disconnected; will register again on reconnect", options_.broker);
  }
}

void Worker::on_tick(std::chrono::steady_clock::time_point now) {
  if (broker_alive_ && now - last_seen_ > options_.heartbeat_interval * options_.liveness) {
    broker_alive_ = false;
    spdlog::warn("broker {} silent for {} ms; will register again when it answers", options_.broker,
                 (now - last_seen_) / std::chrono::milliseconds(1));
  }
  if (now < next_heartbeat_) return;
  next_heartbeat_ = now + options_.heartbeat_interval;
  if (!broker_alive_) {
    // READY doubles as the heartbeat until the broker answers: it registers us on arrival.
    send_ready();
    return;
  }
  protocol::Frames hb;
  protocol::add_header(hb, Command::kHeartbeat);
  {
    std::lock_guard lock(status_mutex_);
    if (!status_json_.empty()) hb.emplace_back(status_json_.data(), status_json_.size());
  }
  link_.send_now(hb);
}

std::size_t Worker::drain_and_stop() {
  draining_.store(true);
  {
    protocol::Frames drain;
    protocol::add_header(drain, Command::kDrain);
    link_.post(std::move(drain));
  }
  spdlog::info("draining: {} requests in flight, waiting up to {} ms", in_flight_.load(),
               options_.drain_timeout.count());
  const auto until = std::chrono::steady_clock::now() + options_.drain_timeout;
  while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto left = static_cast<std::size_t>(std::max<std::int64_t>(0, in_flight_.load()));
  protocol::Frames bye;
  protocol::add_header(bye, Command::kDisconnect);
  link_.post(std::move(bye));
  link_.stop();  // flushes queued replies (linger) before closing
  work_.reset();
  io_.stop();
  if (io_thread_.joinable()) io_thread_.join();
  return left;
}

}  // namespace courier::workers
