#include "common/ids.hpp"

#include <pthread.h>
#include <sys/random.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>

namespace courier {

namespace {

// One thread's batch of random bytes. A forked child must not hand out the bytes its parent
// already had (both would produce the same ids), so a fork empties the forking thread's batch,
// the only thread the child has.
struct Batch {
  std::array<std::uint8_t, 512> bytes;
  std::size_t used = bytes.size();
};

thread_local Batch batch;

void forget_batch() { batch.used = batch.bytes.size(); }

void fill(std::uint8_t* out, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    const auto n = ::getrandom(out + got, size - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "getrandom");
    }
    got += static_cast<std::size_t>(n);
  }
}

}  // namespace

void random_bytes(std::span<std::uint8_t> out) {
  static std::once_flag at_fork;
  std::call_once(at_fork, [] { ::pthread_atfork(nullptr, nullptr, forget_batch); });
  if (out.size() > batch.bytes.size()) {
    fill(out.data(), out.size());
    return;
  }
  if (batch.bytes.size() - batch.used < out.size()) {
    fill(batch.bytes.data(), batch.bytes.size());
    batch.used = 0;
  }
  std::memcpy(out.data(), batch.bytes.data() + batch.used, out.size());
  // Bytes handed out are not kept: nothing later in this process can read them back.
  std::memset(batch.bytes.data() + batch.used, 0, out.size());
  batch.used += out.size();
}

IdGenerator::IdGenerator() { (void)next(); }

protocol::CorrelationId IdGenerator::next() {
  protocol::CorrelationId id{};
  random_bytes(id);
  return id;
}

std::string IdGenerator::next_request_id() {
  std::array<std::uint8_t, 16> bytes{};
  random_bytes(bytes);
  return to_hex(bytes);
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (auto b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace courier
