#include "common/io_loop.hpp"

#include <spdlog/spdlog.h>

#include <exception>

namespace courier {

void run_io(asio::io_context& io, const char* what) {
  for (;;) {
    try {
      io.run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("{} thread: unexpected exception in a handler: {}", what, e.what());
    }
  }
}

}  // namespace courier
