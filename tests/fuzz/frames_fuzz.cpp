// libFuzzer target: arbitrary multipart messages through every frame parser and the broker's
// dispatcher, as they would arrive on either ROUTER socket.
#include <cstddef>
#include <cstdint>

#include "broker/dispatcher.hpp"
#include "common/frames.hpp"

namespace {

class NullOutbox : public courier::broker::Outbox {
 public:
  bool to_gateway(courier::protocol::Frames&) override { return true; }
  bool to_worker(courier::protocol::Frames&) override { return true; }
};

// Splits the input into frames at each 0xFF 0x00 marker so the fuzzer controls frame counts.
courier::protocol::Frames split(const std::uint8_t* data, std::size_t size) {
  courier::protocol::Frames frames;
  std::size_t start = 0;
  for (std::size_t i = 0; i + 1 < size; ++i) {
    if (data[i] == 0xff && data[i + 1] == 0x00) {
      frames.emplace_back(data + start, i - start);
      start = i + 2;
      ++i;
    }
  }
  frames.emplace_back(data + start, size - start);
  return frames;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace courier;
  auto frames = split(data, size);
  protocol::Command command{};
  protocol::RequestHeader request;
  protocol::ReadyHeader ready;
  protocol::CorrelationId id{};
  (void)protocol::parse_command(frames, 0, command);
  (void)protocol::parse_request(frames, 0, request);
  (void)protocol::parse_reply(frames, 0, id);
  (void)protocol::parse_ready(frames, 0, ready);
  (void)protocol::parse_stats(frames, 0, id);

  static NullOutbox outbox;
  static broker::Dispatcher dispatcher({}, outbox);
  const auto now = broker::Now::current();
  // The same bytes as if from a gateway and from a worker (routing id prepended by ROUTER).
  auto from_gateway = split(data, size);
  from_gateway.insert(from_gateway.begin(), zmq::message_t(std::string("gw")));
  dispatcher.on_gateway_message(from_gateway, now);
  auto from_worker = split(data, size);
  from_worker.insert(from_worker.begin(), zmq::message_t(std::string("wk")));
  dispatcher.on_worker_message(from_worker, now);
  dispatcher.on_tick(now);
  return 0;
}
