// Single include point for Boost.Asio and Boost.Beast.
// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>; g++ 12 needs it first.
#pragma once

// clang-format off: <utility> must come first (see above), so the includes are not sorted.
#include <utility>
// clang-format on

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace courier {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
}  // namespace courier
