#include "common/stamps.hpp"

namespace courier::protocol {
namespace {

void put_u64(std::uint8_t* p, std::uint64_t value) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(value & 0xff);
    value >>= 8;
  }
}

std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

zmq::message_t stamps_frame(const Stamps& stamps) {
  zmq::message_t frame(kStampsFrameSize);
  auto* p = static_cast<std::uint8_t*>(frame.data());
  for (std::size_t i = 0; i < kStampCount; ++i) put_u64(p + 8 * i, stamps.us[i]);
  return frame;
}

Stamps read_stamps(const zmq::message_t& frame) {
  Stamps out;
  if (frame.size() != kStampsFrameSize) return out;
  const auto* p = static_cast<const std::uint8_t*>(frame.data());
  for (std::size_t i = 0; i < kStampCount; ++i) out.us[i] = get_u64(p + 8 * i);
  return out;
}

void write_stamp(zmq::message_t& frame, Stamp slot, std::uint64_t us) {
  if (frame.size() != kStampsFrameSize) return;
  put_u64(static_cast<std::uint8_t*>(frame.data()) + 8 * static_cast<std::size_t>(slot), us);
}

}  // namespace courier::protocol
