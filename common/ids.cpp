#include "common/ids.hpp"

#include <random>

namespace courier {

IdGenerator::IdGenerator(std::uint64_t prefix) : prefix_(prefix) {}

std::uint64_t IdGenerator::random_prefix() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}

protocol::CorrelationId IdGenerator::next() {
  const std::uint64_t n = counter_.fetch_add(1, std::memory_order_relaxed);
  protocol::CorrelationId id{};
  for (int i = 0; i < 8; ++i) {
    id[i] = static_cast<std::uint8_t>(prefix_ >> (56 - 8 * i));
    id[8 + i] = static_cast<std::uint8_t>(n >> (56 - 8 * i));
  }
  return id;
}

std::string to_hex(const protocol::CorrelationId& id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(id.size() * 2);
  for (auto b : id) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace courier
