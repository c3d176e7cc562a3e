#include "workers/http_client.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include "tests/unit/workers/scripted_upstream.hpp"

namespace courier::workers {
namespace {

using namespace std::chrono_literals;
using testing::ok_response;
using testing::ScriptedUpstream;
using testing::Step;

UpstreamRequest get(std::string target = "/", http::verb method = http::verb::get) {
  UpstreamRequest request{method, target, 11};
  request.set(http::field::host, "upstream");
  return request;
}

class HttpClientTest : public ::testing::Test {
 protected:
  FetchResult fetch(ConnectionPool& pool, const UpstreamRequest& request,
                    std::chrono::milliseconds timeout = 5s) {
    auto result = testing::run_for(ioc_, pool.fetch(request, Clock::now() + timeout));
    EXPECT_TRUE(result.has_value()) << "fetch did not complete";
    return result.value_or(FetchResult{});
  }

  using Clock = std::chrono::steady_clock;
  asio::io_context ioc_;
};

TEST_F(HttpClientTest, ReusesKeepAliveConnection) {
  ScriptedUpstream upstream(ioc_, {{ok_response("one")}, {ok_response("two")}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  EXPECT_EQ(fetch(pool, get()).response.body(), "one");
  EXPECT_EQ(pool.idle_connections(), 1u);
  EXPECT_EQ(fetch(pool, get()).response.body(), "two");
  EXPECT_EQ(upstream.connections(), 1);
  EXPECT_EQ(pool.stats().connections_opened, 1u);
  EXPECT_EQ(pool.stats().connections_reused, 1u);
}

TEST_F(HttpClientTest, ReadsChunkedBody) {
  ScriptedUpstream upstream(ioc_, {{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  const auto result = fetch(pool, get());
  EXPECT_EQ(result.outcome, FetchOutcome::kOk);
  EXPECT_EQ(result.response.body(), "hello world");
  EXPECT_EQ(pool.idle_connections(), 1u);
}

TEST_F(HttpClientTest, SkipsInterimResponses) {
  ScriptedUpstream upstream(
      ioc_, {{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" +
              ok_response("final")}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  const auto result = fetch(pool, get());
  EXPECT_EQ(result.response.result_int(), 200u);
  EXPECT_EQ(result.response.body(), "final");
}

TEST_F(HttpClientTest, HeadResponseHasNoBodyAndKeepsConnectionUsable) {
  ScriptedUpstream upstream(
      ioc_, {{"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"}, {ok_response("next")}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  const auto head = fetch(pool, get("/", http::verb::head));
  EXPECT_EQ(head.outcome, FetchOutcome::kOk);
  EXPECT_EQ(head.response[http::field::content_length], "1000");
  EXPECT_TRUE(head.response.body().empty());
  EXPECT_EQ(fetch(pool, get()).response.body(), "next");
  EXPECT_EQ(upstream.connections(), 1);
}

TEST_F(HttpClientTest, DoesNotPoolConnectionsTheUpstreamWillClose) {
  ScriptedUpstream upstream(ioc_, {{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0"
                                    "\r\n\r\n"},
                                   {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kOk);
  EXPECT_EQ(pool.idle_connections(), 0u);
  EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kOk);
  EXPECT_EQ(pool.idle_connections(), 0u);
  EXPECT_EQ(pool.stats().connections_opened, 2u);
}

TEST_F(HttpClientTest, DropsAnIdleConnectionTheUpstreamClosedBeforeReusingIt) {
  ScriptedUpstream upstream(
      ioc_, {{ok_response("first"), /*close_after=*/true}, {ok_response("second")}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  ASSERT_EQ(fetch(pool, get()).response.body(), "first");
  ioc_.restart();
  ioc_.poll();  // the upstream's close runs: its FIN is then waiting on the pooled socket
  const auto result = fetch(pool, get("/", http::verb::post));
  EXPECT_EQ(result.outcome, FetchOutcome::kOk);
  EXPECT_EQ(result.response.body(), "second");
  EXPECT_EQ(pool.stats().idle_found_closed, 1u);
  EXPECT_EQ(pool.stats().stale_replays, 0u);
  EXPECT_EQ(pool.stats().connections_opened, 2u);
}

TEST_F(HttpClientTest, ResendsRetrySafeRequestTheUpstreamReadAndDroppedOnAReusedConnection) {
  ScriptedUpstream upstream(
      ioc_, {{ok_response("first")}, {"", /*close_after=*/true}, {ok_response("second")}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  ASSERT_EQ(fetch(pool, get()).response.body(), "first");
  const auto result = fetch(pool, get());
  EXPECT_EQ(result.outcome, FetchOutcome::kOk);
  EXPECT_EQ(result.response.body(), "second");
  EXPECT_EQ(pool.stats().stale_replays, 1u);
  EXPECT_EQ(pool.stats().connections_opened, 2u);
  EXPECT_EQ(upstream.requests().size(), 3u);
}

TEST_F(HttpClientTest, NeverResendsPostTheUpstreamReadAndDroppedOnAReusedConnection) {
  ScriptedUpstream upstream(
      ioc_, {{ok_response("first")}, {"", /*close_after=*/true}, {ok_response("twice")}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  auto post = get("/orders", http::verb::post);
  post.body() = "{}";
  post.prepare_payload();
  ASSERT_EQ(fetch(pool, post).response.body(), "first");
  const auto result = fetch(pool, post);
  EXPECT_EQ(result.outcome, FetchOutcome::kResetBeforeResponse);
  EXPECT_TRUE(result.request_sent);
  EXPECT_EQ(pool.stats().stale_replays, 0u);
  EXPECT_EQ(pool.stats().replays_refused, 1u);
  EXPECT_EQ(upstream.requests().size(), 2u);
  EXPECT_EQ(upstream.connections(), 1);
}

TEST_F(HttpClientTest, ResendsPostWithIdempotencyKeyTheUpstreamDroppedOnAReusedConnection) {
  ScriptedUpstream upstream(
      ioc_, {{ok_response("first")}, {"", /*close_after=*/true}, {ok_response("second")}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  auto post = get("/pay", http::verb::post);
  post.set("Idempotency-Key", "k-1");
  post.content_length(0);
  ASSERT_EQ(fetch(pool, post).response.body(), "first");
  EXPECT_EQ(fetch(pool, post).response.body(), "second");
  EXPECT_EQ(pool.stats().stale_replays, 1u);
}

TEST_F(HttpClientTest, CloseBeforeResponseOnFreshConnectionIsReported) {
  ScriptedUpstream upstream(ioc_, {{"", /*close_after=*/true}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  const auto result = fetch(pool, get());
  EXPECT_EQ(result.outcome, FetchOutcome::kResetBeforeResponse);
  EXPECT_EQ(pool.stats().stale_replays, 0u);
  EXPECT_EQ(upstream.requests().size(), 1u);
}

TEST_F(HttpClientTest, ConnectionRefusedIsConnectFailure) {
  const auto port = testing::closed_port(ioc_);
  ConnectionPool pool(ioc_.get_executor(), {"127.0.0.1", port, "", ""}, 4);

  const auto result = fetch(pool, get());
  EXPECT_EQ(result.outcome, FetchOutcome::kConnectFailed);
  EXPECT_EQ(result.ec.value(), static_cast<int>(std::errc::connection_refused));
  EXPECT_FALSE(result.request_sent);
}

TEST_F(HttpClientTest, ACancelledConnectKeepsTheResolvedEndpoints) {
  // A listener that accepts nothing, its backlog full: further connects hang (the SYN is dropped).
  tcp::acceptor blackhole(ioc_, {asio::ip::make_address("127.0.0.1"), 0});
  blackhole.listen(0);
  std::vector<tcp::socket> fillers;
  for (int i = 0; i < 4; ++i) {
    fillers.emplace_back(ioc_);
    fillers.back().open(tcp::v4());
    fillers.back().non_blocking(true);
    // Not asio's connect, which waits for the handshake even on a non-blocking socket.
    const auto to = blackhole.local_endpoint();
    (void)::connect(fillers.back().native_handle(), to.data(), to.size());
  }
  ConnectionPool pool(ioc_.get_executor(), {"localhost", blackhole.local_endpoint().port(), "", ""},
                      4);

  Cancellation cancel;
  asio::steady_timer timer(ioc_, 100ms);
  timer.async_wait([&](const beast::error_code&) { cancel.cancel(); });
  auto cancelled =
      testing::run_for(ioc_, pool.fetch(get(), Clock::now() + 5s, FetchOptions{nullptr, &cancel}));
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->outcome, FetchOutcome::kCancelled);
  EXPECT_EQ(pool.stats().resolves, 1u);

  ioc_.restart();
  const auto timed_out = fetch(pool, get(), 100ms);
  EXPECT_EQ(timed_out.outcome, FetchOutcome::kConnectFailed);
  EXPECT_EQ(pool.stats().resolves, 1u) << "the cached endpoints were used";
  // A connect that failed on its own does reset them: the upstream may have moved.
  ioc_.restart();
  fetch(pool, get(), 100ms);
  EXPECT_EQ(pool.stats().resolves, 2u);
}

TEST_F(HttpClientTest, SilentUpstreamTimesOut) {
  ScriptedUpstream upstream(ioc_, {{""}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  const auto result = fetch(pool, get(), 50ms);
  EXPECT_EQ(result.outcome, FetchOutcome::kTimeout);
  EXPECT_EQ(pool.idle_connections(), 0u);
}

TEST_F(HttpClientTest, GarbageIsBadResponse) {
  ScriptedUpstream upstream(ioc_, {{"SMTP ready\r\n\r\n"}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kBadResponse);
}

TEST_F(HttpClientTest, TruncatedBodyIsBadResponse) {
  ScriptedUpstream upstream(
      ioc_, {{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", /*close_after=*/true}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kBadResponse);
}

// Hostile upstreams: nothing they send may get past the client as a response.
TEST_F(HttpClientTest, OversizedHeadIsBadResponse) {
  ScriptedUpstream upstream(ioc_, {{"HTTP/1.1 200 OK\r\nX-Big: " + std::string(100 * 1024, 'a') +
                                    "\r\nContent-Length: 0\r\n\r\n"}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kBadResponse);
  EXPECT_EQ(pool.idle_connections(), 0u);
}

TEST_F(HttpClientTest, ControlBytesInAHeaderAreBadResponse) {
  const std::vector<std::string> fields = {"X-Evil: a\x01b", "X-Evil: a\x7f", "X Evil: a",
                                           std::string("X-Evil: a\0b", 11), "X-\xc3\xa9: a"};
  std::vector<Step> script;
  for (const auto& field : fields) {
    script.push_back({"HTTP/1.1 200 OK\r\n" + field + "\r\nContent-Length: 0\r\n\r\n"});
  }
  ScriptedUpstream upstream(ioc_, script);
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);
  for (const auto& field : fields) {
    SCOPED_TRACE(field);
    EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kBadResponse);
  }
  EXPECT_EQ(upstream.requests().size(), fields.size());
}

TEST_F(HttpClientTest, BodyBeyondTheLimitIsBadResponse) {
  ScriptedUpstream upstream(ioc_, {{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nab"}});
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);

  EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kBadResponse);
}

TEST_F(HttpClientTest, StatusLineOutsideHttp1IsBadResponse) {
  const std::vector<std::string> lines = {"HTTP/1.1 999 Nine\r\n", "HTTP/1.1 20 Short\r\n",
                                          "HTTP/1.1 2000 Long\r\n", "HTTP/9.9 200 OK\r\n",
                                          "HTTP/1.1 200 OK\r\r\n"};
  std::vector<Step> script;
  for (const auto& line : lines) script.push_back({line + "Content-Length: 0\r\n\r\n"});
  ScriptedUpstream upstream(ioc_, script);
  ConnectionPool pool(ioc_.get_executor(), upstream.url(), 4);
  for (const auto& line : lines) {
    SCOPED_TRACE(line);
    EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kBadResponse);
  }
}

TEST_F(HttpClientTest, UnknownHostIsConnectFailure) {
  ConnectionPool pool(ioc_.get_executor(), {"no-such-host.invalid", 80, "", ""}, 4);

  EXPECT_EQ(fetch(pool, get()).outcome, FetchOutcome::kConnectFailed);
}

}  // namespace
}  // namespace courier::workers
