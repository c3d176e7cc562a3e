// Runs an io_context on the calling thread until it stops. A handler that throws is logged and the
// loop goes on: one failed callback must not take down the thread that drives every connection.
#pragma once

#include "common/asio.hpp"

namespace courier {

void run_io(asio::io_context& io, const char* what);

}  // namespace courier
