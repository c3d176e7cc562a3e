// libFuzzer target: the Dispatcher fed sequences of structurally valid messages (READY, HEARTBEAT
// with random status, REQUEST, REPLY, STREAM, CREDIT, CANCEL, STATS, DRAIN, DISCONNECT) from
// several gateways and workers, with time advancing and ticks in between. Nothing may crash or
// throw, and after every step: the requests it counts as at a worker are exactly the credit its
// workers have in use, and a worker's reply or stream part reaches only a gateway that sent that
// correlation id (or the same authenticated gateway over another connection).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>

#include "broker/dispatcher.hpp"

namespace {

using namespace courier;
using namespace courier::broker;
using protocol::Command;
using protocol::Frames;

// Reads the input as a stream of choices; past its end every choice is 0.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  std::uint8_t next() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string take(std::size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

constexpr const char* kReplyBody = "fuzz-reply";  // also the payload of workers' STREAM parts
const char* const kGateways[] = {"g0", "g1", "g2"};
const char* const kPrincipals[] = {"key-a", "key-a", ""};  // g0 and g1: one gateway, reconnected
const char* const kWorkers[] = {"w0", "w1", "w2", "w3"};
const char* const kServices[] = {"echo", "slow", "other"};
const char* const kStatusKeys[] = {
    "circuit",  "circuit_accepting", "circuit_failure_rate", "circuit_opened",
    "requests", "attempts",          "circuit_retry_in_ms",  "unknown"};

class CheckingOutbox : public Outbox {
 public:
  // Gateways that sent each id (with their principals), to check where worker replies go.
  std::set<std::pair<std::string, std::string>> sent;  // (principal or gateway, id)

  bool to_gateway(Frames& frames) override {
    // A REPLY may end with STAMPS (6 frames with the routing id).
    const bool reply = (frames.size() == 5 || frames.size() == 6) &&
                       protocol::view(frames[2]).size() == 1 &&
                       protocol::view(frames[2])[0] == static_cast<char>(Command::kReply);
    const bool stream = frames.size() == 7 && protocol::view(frames[2]).size() == 1 &&
                        protocol::view(frames[2])[0] == static_cast<char>(Command::kStream);
    const auto& body = reply ? frames[4] : frames.back();
    if ((reply || stream) && protocol::view(body).rfind(kReplyBody, 0) == 0) {
      const std::string gateway(protocol::view(frames[0]));
      const std::string id(protocol::view(frames[3]));
      std::string principal;
      for (std::size_t i = 0; i < 3; ++i) {
        if (gateway == kGateways[i]) principal = kPrincipals[i];
      }
      const bool ok = sent.count({gateway, id}) ||
                      (!principal.empty() && sent.count({"principal:" + principal, id}));
      if (!ok) std::abort();  // a reply reached a gateway that never asked for it
    }
    return (++sends % 17) != 0;  // now and then a peer is unreachable
  }
  bool to_worker(Frames&) override { return (++sends % 13) != 0; }

 private:
  std::uint64_t sends = 0;
};

// Now and then a STAMPS frame at the end: of its size with any slots, or of another size.
void add_stamps(Frames& f, Bytes& in) {
  const std::uint8_t choice = in.next() % 4;
  if (choice == 1) {
    std::string slots = in.take(protocol::kStampsFrameSize);
    slots.resize(protocol::kStampsFrameSize, '\x7f');
    f.emplace_back(slots.data(), slots.size());
  } else if (choice == 2) {
    const std::string odd = in.take(in.next() % 128);
    f.emplace_back(odd.data(), odd.size());
  }
}

std::string status_text(Bytes& in) {
  if (in.next() % 4 == 0) return in.take(in.next());  // raw bytes
  std::string json = "{";
  const int fields = in.next() % 5;
  for (int i = 0; i < fields; ++i) {
    if (i) json += ',';
    json += '"';
    json += kStatusKeys[in.next() % 8];
    json += "\":";
    switch (in.next() % 8) {
      case 0:
        json += "1";
        break;
      case 1:
        json += "-1";
        break;
      case 2:
        json += "1.5e300";
        break;
      case 3:
        json += "\"open\"";
        break;
      case 4:
        json += "true";
        break;
      case 5:
        json += "null";
        break;
      case 6:
        json += "[1,{\"a\":2}]";
        break;
      default:
        json += "18446744073709551615";
        break;
    }
  }
  return json + "}";
}

std::string id_bytes(std::uint8_t n) {
  std::string id(protocol::kCorrelationIdSize, '\0');
  id[0] = '\xc0';
  id.back() = static_cast<char>(n % 8);
  return id;
}

std::string u64(std::uint64_t v) { return std::string(protocol::view(protocol::u64_frame(v))); }

Frames frames_of(std::initializer_list<std::string> parts) {
  Frames frames;
  for (const auto& p : parts) frames.emplace_back(p.data(), p.size());
  return frames;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(data, size);
  DispatcherOptions options;
  options.heartbeat_interval = std::chrono::milliseconds(100);
  options.liveness = 3;
  options.no_worker_grace = std::chrono::milliseconds(300);
  options.default_max_queue = 4;
  options.max_services = 2;
  options.max_workers_per_service = 3;
  options.max_gateways = 2;
  options.max_worker_strikes = 3;
  options.orphan_grace = std::chrono::milliseconds(500);
  CheckingOutbox out;
  Dispatcher dispatcher(options, out);
  Now now{Clock::time_point{} + std::chrono::hours(1), 1'700'000'000'000};
  const std::string tag(protocol::kTag);
  const auto c = [](Command command) { return std::string(1, static_cast<char>(command)); };

  for (int steps = 0; steps < 2000 && !in.empty(); ++steps) {
    const std::uint8_t op = in.next();
    const std::string worker = kWorkers[in.next() % 4];
    const std::size_t g = in.next() % 3;
    const std::string gateway = kGateways[g];
    switch (op % 13) {
      case 0: {
        const std::string service = kServices[in.next() % 3];
        const std::uint32_t capacity = 1 + in.next() % 4;
        auto f = frames_of({worker, tag, c(Command::kReady), service,
                            std::string(protocol::view(protocol::u32_frame(capacity))), worker});
        dispatcher.on_worker_message(f, now);
        break;
      }
      case 1: {
        auto f = frames_of({worker, tag, c(Command::kHeartbeat), status_text(in)});
        dispatcher.on_worker_message(f, now);
        break;
      }
      case 2: {
        const std::string service = kServices[in.next() % 3];
        const std::string id = id_bytes(in.next());
        const std::uint64_t deadline = now.wall_ms + (in.next() % 8) * 100;
        const std::string flags(1, static_cast<char>(in.next() % 2));
        auto f = frames_of(
            {gateway, tag, c(Command::kRequest), service, id, u64(deadline), flags, "envelope"});
        add_stamps(f, in);
        out.sent.insert({gateway, id});
        if (*kPrincipals[g]) out.sent.insert({std::string("principal:") + kPrincipals[g], id});
        dispatcher.on_gateway_message(f, now, kPrincipals[g]);
        break;
      }
      case 3: {
        auto f = frames_of({worker, tag, c(Command::kReply), id_bytes(in.next()), kReplyBody});
        add_stamps(f, in);
        dispatcher.on_worker_message(f, now);
        break;
      }
      case 4: {
        auto f = frames_of({gateway, tag, c(Command::kStats), id_bytes(in.next())});
        dispatcher.on_gateway_message(f, now, kPrincipals[g]);
        break;
      }
      case 5: {
        const Command command = in.next() % 2 ? Command::kDrain : Command::kDisconnect;
        auto f = frames_of({worker, tag, c(command)});
        dispatcher.on_worker_message(f, now);
        break;
      }
      case 6: {
        auto f = frames_of(
            {gateway, tag, c(in.next() % 4 ? Command::kHeartbeat : Command::kDisconnect)});
        dispatcher.on_gateway_message(f, now, kPrincipals[g]);
        break;
      }
      case 7: {
        const auto ms = std::chrono::milliseconds(in.next() * 4);
        now.steady += ms;
        now.wall_ms += static_cast<std::uint64_t>(ms.count());
        dispatcher.on_tick(now);
        break;
      }
      case 8: {
        // Garbage in a valid envelope of frames: a bad field in an otherwise fine shape.
        auto f = frames_of({worker, tag, c(Command::kReply), in.take(in.next() % 20), "x"});
        dispatcher.on_worker_message(f, now);
        break;
      }
      case 9: {
        // Parts 0 and 5 are out of range; until anywhere from the past to far ahead.
        const std::string part(1, static_cast<char>(in.next() % 6));
        const std::uint64_t until =
            in.next() % 8 == 0 ? ~0ull : now.wall_ms + (in.next() % 16) * 100 - 200;
        auto f = frames_of(
            {worker, tag, c(Command::kStream), id_bytes(in.next()), part, u64(until), kReplyBody});
        dispatcher.on_worker_message(f, now);
        break;
      }
      case 10: {
        const std::uint32_t bytes = in.next() % 8 == 0 ? 0 : 1u << (in.next() % 32);
        auto f = frames_of({gateway, tag, c(Command::kCredit), id_bytes(in.next()),
                            std::string(protocol::view(protocol::u32_frame(bytes)))});
        dispatcher.on_gateway_message(f, now, kPrincipals[g]);
        break;
      }
      case 11: {
        auto f = frames_of({gateway, tag, c(Command::kCancel), id_bytes(in.next())});
        dispatcher.on_gateway_message(f, now, kPrincipals[g]);
        break;
      }
      default:
        if (in.next() == 0xff) dispatcher.on_stall(std::chrono::milliseconds(5'000));
        break;
    }
    // Requests at workers are exactly the credit in use.
    const auto stats = dispatcher.stats(now);
    std::uint64_t held = 0;
    for (const auto& [name, svc] : stats.services) held += svc.in_flight;
    if (held != dispatcher.in_flight()) std::abort();
    if (stats.services.size() > options.max_services) std::abort();
    if (stats.gateways > options.max_gateways) std::abort();
  }
  dispatcher.begin_shutdown(now);
  dispatcher.fail_in_flight("fuzz done");
  if (dispatcher.in_flight() != 0) std::abort();
  return 0;
}
