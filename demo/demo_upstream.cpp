#include "demo/demo_upstream.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <ctime>
#include <exception>
#include <iomanip>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <sstream>

namespace courier::demo {
namespace {

using nlohmann::json;

constexpr std::chrono::seconds kWriteTimeout{30};
constexpr std::chrono::milliseconds kAcceptBackoff{50};
constexpr std::string_view kServerName = "courier-demo-upstream";
constexpr std::string_view kGmModel = "courier-demo-gm";

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::optional<double> parse_double(std::string_view text) {
  double value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::string hex_id(std::string_view prefix, std::uint64_t bits) {
  std::ostringstream out;
  out << prefix << std::hex << std::setw(16) << std::setfill('0') << bits;
  return out.str();
}

std::string iso8601(std::chrono::system_clock::time_point when) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(when);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string_view path_of(std::string_view target) { return target.substr(0, target.find('?')); }

// The posted JSON object, or an empty object when the body is empty, not JSON or not an object:
// the real services are lenient enough that demos should not fail on a sloppy body.
json posted_object(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  return parsed.is_object() ? parsed : json::object();
}

json field_or(const json& object, const char* key, json fallback) {
  auto it = object.find(key);
  return it != object.end() && !it->is_null() ? *it : fallback;
}

Response json_response(unsigned status, const json& body) {
  return Response{status,
                  {{"Content-Type", "application/json"}},
                  body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

// The Rule Engine's envelope: {"status": "success"|"error", "data": ..., "message": ...}.
Response wrapped(unsigned status, json data, std::string message) {
  return json_response(status, {{"status", status < 400 ? "success" : "error"},
                                {"data", std::move(data)},
                                {"message", std::move(message)}});
}

Response not_found(Role role, const Request& request) {
  std::string message =
      "No route for " + request.method + " " + std::string(path_of(request.target));
  if (role == Role::kRuleEngine) return wrapped(404, nullptr, std::move(message));
  return json_response(404, {{"error", "not_found"}, {"message", std::move(message)}});
}

Response method_not_allowed(Role role, const Request& request, std::string_view allowed) {
  std::string message = "Method " + request.method + " not allowed";
  Response response =
      role == Role::kRuleEngine
          ? wrapped(405, nullptr, std::move(message))
          : json_response(405, {{"error", "method_not_allowed"}, {"message", std::move(message)}});
  response.headers.emplace_back("Allow", std::string(allowed));
  return response;
}

Response health(Role role, const HandlerContext& context) {
  json body = {{"status", "ok"}, {"service", role_name(role)}, {"time", iso8601(context.now)}};
  if (role == Role::kAiGm) body["model"] = kGmModel;
  return json_response(200, body);
}

Response session_add(const Request& request, const HandlerContext& context) {
  json data = posted_object(request.body);
  data["session_id"] = hex_id("sess-", context.entropy);
  data["created_at"] = iso8601(context.now);
  data["active"] = true;
  return wrapped(200, std::move(data), "Session created");
}

Response play_scenario(const Request& request, const HandlerContext& context) {
  static constexpr std::string_view kRules[] = {"initiative-order", "line-of-sight", "morale-check",
                                                "resource-upkeep"};
  const json posted = posted_object(request.body);
  const std::size_t first = context.entropy % std::size(kRules);
  json data = {
      {"scenario_id", field_or(posted, "scenario_id", "scenario-1")},
      {"session_id", field_or(posted, "session_id", nullptr)},
      {"run_id", hex_id("run-", splitmix64(context.entropy))},
      {"state", "running"},
      {"step", 1},
      {"triggered_rules", {kRules[first], kRules[(first + 1) % std::size(kRules)]}},
      {"request", posted},
  };
  return wrapped(200, std::move(data), "Scenario started");
}

Response game_turn(const Request& request, const HandlerContext& context) {
  struct Scene {
    std::string_view name;
    std::string_view narration;
  };
  static constexpr Scene kScenes[] = {
      {"north-gate", "Rain hammers the north gate while a guard squints at your papers."},
      {"market", "The market falls quiet; a hooded figure slips a note into your hand."},
      {"crypt", "Cold air rises from the crypt, and something below answers your torch."},
      {"harbour", "Gulls scatter as a black-sailed ship noses into the harbour."},
  };
  const json posted = posted_object(request.body);
  const Scene& scene = kScenes[context.entropy % std::size(kScenes)];

  std::int64_t turn = static_cast<std::int64_t>(context.sequence);
  if (auto it = posted.find("turn"); it != posted.end() && it->is_number_integer()) {
    turn = it->get<std::int64_t>() + 1;
  }
  std::string narration(scene.narration);
  const json action = field_or(posted, "action", field_or(posted, "player_action", nullptr));
  if (action.is_string()) narration = "You " + action.get<std::string>() + ". " + narration;

  json body = {
      {"session_id", field_or(posted, "session_id", nullptr)},
      {"turn", turn},
      {"narration", std::move(narration)},
      {"actions",
       {{{"type", "move"}, {"target", scene.name}},
        {{"type", "roll"}, {"dice", "1d20"}, {"result", 1 + (context.entropy >> 8) % 20}}}},
      {"state", {{"scene", scene.name}, {"tension", ((context.entropy >> 16) % 11) / 10.0}}},
      {"model", kGmModel},
  };
  return json_response(200, body);
}

std::string_view query_of(std::string_view target) {
  const auto mark = target.find('?');
  return mark == std::string_view::npos ? std::string_view() : target.substr(mark + 1);
}

std::optional<std::uint64_t> parse_u64(std::string_view text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

Response bad_request(Role role, std::string message) {
  if (role == Role::kRuleEngine) return wrapped(400, nullptr, std::move(message));
  return json_response(400, {{"error", "bad_request"}, {"message", std::move(message)}});
}

// The value of the last `key=` in a query string ("a=1&b=2"), or nullopt when absent.
std::optional<std::string_view> query_value(std::string_view query, std::string_view key) {
  std::optional<std::string_view> found;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) {
      found = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
  }
  return found;
}

// GET /session/list?user_id=1&skip=0&limit=10&is_deleted=false: one page of the user's sessions,
// made up from the query (the demo keeps no state), in the Rule Engine's envelope; 422 like
// FastAPI's validation when a parameter is missing or malformed.
Response session_list(const Request& request, const HandlerContext& context) {
  constexpr std::uint64_t kMaxUserId = 1'000'000'000, kMaxSkip = 1'000'000, kMaxLimit = 100;
  const std::string_view query = query_of(request.target);
  const auto number = [&](std::string_view key, std::uint64_t fallback, std::uint64_t low,
                          std::uint64_t high) -> std::optional<std::uint64_t> {
    const auto text = query_value(query, key);
    if (!text) return fallback;
    const auto value = parse_u64(*text);
    if (!value || *value < low || *value > high) return std::nullopt;
    return value;
  };
  const auto user_id =
      query_value(query, "user_id") ? number("user_id", 0, 0, kMaxUserId) : std::nullopt;
  const auto skip = number("skip", 0, 0, kMaxSkip);
  const auto limit = number("limit", 10, 1, kMaxLimit);
  const auto deleted = query_value(query, "is_deleted").value_or("false");
  if (!user_id || !skip || !limit || (deleted != "true" && deleted != "false")) {
    return wrapped(422, nullptr,
                   "user_id (0-" + std::to_string(kMaxUserId) + ") is required; skip 0-" +
                       std::to_string(kMaxSkip) + ", limit 1-" + std::to_string(kMaxLimit) +
                       ", is_deleted true or false");
  }
  // A user has 3-9 sessions, the same ones on every call.
  const std::uint64_t total = 3 + *user_id % 7;
  json sessions = json::array();
  for (std::uint64_t i = *skip; i < total && i < *skip + *limit; ++i) {
    sessions.push_back({{"session_id", hex_id("sess-", splitmix64(*user_id * 16 + i))},
                        {"user_id", *user_id},
                        {"created_at", iso8601(context.now - std::chrono::hours(24 * (i + 1)))},
                        {"is_deleted", deleted == "true"}});
  }
  return wrapped(
      200,
      {{"sessions", std::move(sessions)}, {"total", total}, {"skip", *skip}, {"limit", *limit}},
      "Sessions listed");
}

// `think_ms` in the query of a route that answers at once: the work the real service does
// before answering (an LLM call, a database), on top of --latency-ms, so one upstream can serve
// fast and slow requests side by side. Capped like the streaming routes' think time.
Answer thinking(Role role, const Request& request, Response response) {
  std::string error;
  const auto params = parse_stream_params(query_of(request.target),
                                          {.think = std::chrono::milliseconds(0)}, "", 0, error);
  if (!params) return bad_request(role, std::move(error));
  response.delay += params->think;
  return response;
}

// Unit boundaries of `text`: one per UTF-8 character, or one per word with its trailing space.
std::vector<std::uint32_t> cut_units(std::string_view text, bool words) {
  std::vector<std::uint32_t> cuts;
  for (std::uint32_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const bool starts = words ? (i == 0 || (text[i - 1] == ' ' && byte != ' '))
                              : (byte & 0xC0) != 0x80;  // not a UTF-8 continuation byte
    if (starts) cuts.push_back(i);
  }
  cuts.push_back(static_cast<std::uint32_t>(text.size()));
  return cuts;
}

std::string_view unit_of(const StreamPlan& plan, std::uint64_t index) {
  const std::size_t units = plan.cuts.size() - 1;
  const std::size_t k = index % units;
  return plan.text.substr(plan.cuts[k], plan.cuts[k + 1] - plan.cuts[k]);
}

// The stream would outlast kMaxStreamDuration.
bool too_long(const StreamParams& params, std::uint64_t pieces) {
  const auto budget = (kMaxStreamDuration - params.think).count();
  return params.interval.count() > 0 &&
         pieces > static_cast<std::uint64_t>(budget / params.interval.count());
}

constexpr std::string_view kTooLong = "think_ms + pieces x interval_ms exceeds 900000 ms";

// A user id as the Rule Engine takes it in its path: short, and nothing that needs escaping.
bool valid_user_id(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

// GET /play/riddle/{user_id}, /play/quiz/{user_id}: the LLM writes the text before the head
// goes out, then it trickles out one character at a time, unframed (no "data:").
Answer minigame(const Request& request, const HandlerContext& context, bool quiz) {
  static constexpr std::string_view kRiddles[] = {
      "I speak without a mouth and hear without ears. I have no body, but I come alive with "
      "wind. What am I?",
      "The more of me you take, the more you leave behind. What am I?",
      "입은 없는데 말을 하고, 귀는 없는데 듣는다. 바람이 불면 살아나는 나는 무엇일까?",
  };
  static constexpr std::string_view kQuizzes[] = {
      "Which metal is liquid at room temperature? 1) Iron 2) Mercury 3) Tin 4) Lead",
      "How many sides does a hexagon have? 1) Five 2) Six 3) Seven 4) Eight",
      "다음 중 가장 큰 행성은? 1) 지구 2) 화성 3) 목성 4) 금성",
  };
  const std::string_view path = path_of(request.target);
  const std::string_view user_id = path.substr(path.rfind('/') + 1);
  if (!valid_user_id(user_id)) {
    return wrapped(422, nullptr, "user_id must be 1-64 characters of [A-Za-z0-9_-]");
  }
  std::string error;
  const auto params = parse_stream_params(query_of(request.target), {}, "chars", kMaxPieces, error);
  if (!params) return bad_request(Role::kRuleEngine, std::move(error));

  StreamPlan plan;
  plan.kind = StreamPlan::Kind::kCharacters;
  plan.headers = {{"Content-Type", "text/event-stream; charset=utf-8"},
                  {"Cache-Control", "no-cache"}};
  plan.think = params->think;
  plan.interval = params->interval;
  plan.text = quiz ? kQuizzes[context.entropy % std::size(kQuizzes)]
                   : kRiddles[context.entropy % std::size(kRiddles)];
  plan.cuts = cut_units(plan.text, /*words=*/false);
  plan.count = params->count != 0 ? params->count : plan.cuts.size() - 1;
  if (too_long(*params, plan.count)) return bad_request(Role::kRuleEngine, std::string(kTooLong));
  return plan;
}

// POST /v1/chat/completions, OpenAI-shaped: with "stream": true one SSE event per token and
// "data: [DONE]"; otherwise one completion after the time the tokens would have taken.
Answer chat_completion(const Request& request, const HandlerContext& context) {
  static constexpr std::string_view kReply =
      "The torchlight flickers across the ancient altar as you step closer. Runes glow faintly "
      "beneath the dust, and somewhere in the dark a heavy stone door grinds open.";
  constexpr std::size_t kMaxModelName = 64;
  const json posted = posted_object(request.body);
  std::string error;
  auto params = parse_stream_params(query_of(request.target), {}, "tokens", kMaxPieces, error);
  if (!params) {
    return json_response(
        400,
        {{"error",
          {{"message", std::move(error)}, {"type", "invalid_request_error"}, {"code", nullptr}}}});
  }
  StreamPlan plan;
  plan.kind = StreamPlan::Kind::kChatChunks;
  plan.think = params->think;
  plan.interval = params->interval;
  plan.text = kReply;
  plan.cuts = cut_units(kReply, /*words=*/true);
  plan.count = params->count != 0 ? params->count : plan.cuts.size() - 1;
  if (auto it = posted.find("max_tokens"); it != posted.end() && it->is_number_unsigned()) {
    plan.count = std::clamp<std::uint64_t>(it->get<std::uint64_t>(), 1, plan.count);
  }
  plan.id = hex_id("chatcmpl-", context.entropy);
  const auto model = posted.find("model");
  plan.model = model != posted.end() && model->is_string() &&
                       model->get_ref<const std::string&>().size() <= kMaxModelName
                   ? model->get<std::string>()
                   : std::string("courier-demo-llm");
  plan.created =
      std::chrono::duration_cast<std::chrono::seconds>(context.now.time_since_epoch()).count();
  if (too_long(*params, plan.count)) {
    return json_response(
        400,
        {{"error", {{"message", kTooLong}, {"type", "invalid_request_error"}, {"code", nullptr}}}});
  }
  const auto stream = posted.find("stream");
  if (stream != posted.end() && stream->is_boolean() && stream->get<bool>()) {
    plan.headers = {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};
    return plan;
  }
  std::string content;
  for (std::uint64_t i = 0; i < plan.count; ++i) content += unit_of(plan, i);
  const std::uint64_t prompt_chars = request.body.size();
  Response response =
      json_response(200, {{"id", plan.id},
                          {"object", "chat.completion"},
                          {"created", plan.created},
                          {"model", plan.model},
                          {"choices",
                           {{{"index", 0},
                             {"message", {{"role", "assistant"}, {"content", std::move(content)}}},
                             {"finish_reason", "stop"}}}},
                          {"usage",
                           {{"prompt_tokens", prompt_chars / 4},
                            {"completion_tokens", plan.count},
                            {"total_tokens", prompt_chars / 4 + plan.count}}}});
  response.delay = plan.think + plan.interval * static_cast<std::int64_t>(plan.count);
  return response;
}

// GET /bytes/{n}?chunk=65536: n bytes, chunked, as fast as the reader takes them (or
// interval_ms apart), for throughput and flow-control runs.
Answer byte_stream(Role role, const Request& request) {
  const std::string_view path = path_of(request.target);
  const auto total = parse_u64(path.substr(path.rfind('/') + 1));
  if (!total || *total > kMaxBytes) {
    return bad_request(role,
                       "the byte count must be an integer from 0 to " + std::to_string(kMaxBytes));
  }
  std::string error;
  const auto params = parse_stream_params(
      query_of(request.target),
      {.think = std::chrono::milliseconds(0), .interval = std::chrono::milliseconds(0)}, "", 0,
      error);
  if (!params) return bad_request(role, std::move(error));
  StreamPlan plan;
  plan.kind = StreamPlan::Kind::kBytes;
  plan.headers = {{"Content-Type", "application/octet-stream"}};
  plan.think = params->think;
  plan.interval = params->interval;
  plan.total = *total;
  plan.chunk = params->chunk;
  if (too_long(*params, plan.pieces())) return bad_request(role, std::string(kTooLong));
  return plan;
}

struct Route {
  std::string_view method;
  std::string_view path;  // ending in '/': a prefix, followed by one non-empty segment
  Answer (*run)(Role, const Request&, const HandlerContext&);
};

bool matches(const Route& route, std::string_view path) {
  if (route.path.back() != '/') return route.path == path;
  return path.size() > route.path.size() && path.starts_with(route.path) &&
         path.find('/', route.path.size()) == std::string_view::npos;
}

constexpr Route kRuleEngineRoutes[] = {
    {"GET", "/health",
     [](Role r, const Request&, const HandlerContext& c) -> Answer { return health(r, c); }},
    {"POST", "/session/add",
     [](Role r, const Request& q, const HandlerContext& c) -> Answer {
       return thinking(r, q, session_add(q, c));
     }},
    {"GET", "/session/list",
     [](Role r, const Request& q, const HandlerContext& c) -> Answer {
       return thinking(r, q, session_list(q, c));
     }},
    {"POST", "/play/scenario",
     [](Role r, const Request& q, const HandlerContext& c) -> Answer {
       return thinking(r, q, play_scenario(q, c));
     }},
    {"GET", "/play/riddle/",
     [](Role, const Request& q, const HandlerContext& c) -> Answer {
       return minigame(q, c, false);
     }},
    {"GET", "/play/quiz/",
     [](Role, const Request& q, const HandlerContext& c) -> Answer {
       return minigame(q, c, true);
     }},
    {"GET", "/bytes/",
     [](Role r, const Request& q, const HandlerContext&) -> Answer { return byte_stream(r, q); }},
};

constexpr Route kAiGmRoutes[] = {
    {"GET", "/health",
     [](Role r, const Request&, const HandlerContext& c) -> Answer { return health(r, c); }},
    {"POST", "/api/v1/game/turn",
     [](Role r, const Request& q, const HandlerContext& c) -> Answer {
       return thinking(r, q, game_turn(q, c));
     }},
    {"POST", "/v1/chat/completions",
     [](Role, const Request& q, const HandlerContext& c) -> Answer {
       return chat_completion(q, c);
     }},
    {"GET", "/bytes/",
     [](Role r, const Request& q, const HandlerContext&) -> Answer { return byte_stream(r, q); }},
};

bool is_http_error(const beast::error_code& ec) {
  return &ec.category() == &http::make_error_code(http::error::bad_version).category();
}

void log_exception(std::exception_ptr error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::error("connection coroutine failed: {}", e.what());
  }
}

}  // namespace

std::optional<Role> parse_role(std::string_view text) {
  if (text == "rule-engine") return Role::kRuleEngine;
  if (text == "ai-gm") return Role::kAiGm;
  return std::nullopt;
}

std::string_view role_name(Role role) {
  return role == Role::kRuleEngine ? "rule-engine" : "ai-gm";
}

std::optional<LatencyDistribution> parse_latency_distribution(std::string_view spec) {
  if (spec.empty() || spec == "none") return LatencyDistribution{};
  const auto first_colon = spec.find(':');
  const auto second_colon = spec.find(':', first_colon + 1);
  if (first_colon == std::string_view::npos || second_colon == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view kind = spec.substr(0, first_colon);
  const auto a = parse_double(spec.substr(first_colon + 1, second_colon - first_colon - 1));
  const auto b = parse_double(spec.substr(second_colon + 1));
  if (!a || !b || *a < 0 || *b < 0) return std::nullopt;
  if (kind == "uniform" && *a <= *b) {
    return LatencyDistribution{LatencyDistribution::Kind::kUniform, *a, *b};
  }
  if (kind == "normal") return LatencyDistribution{LatencyDistribution::Kind::kNormal, *a, *b};
  return std::nullopt;
}

std::chrono::milliseconds sample_latency(std::chrono::milliseconds fixed,
                                         const LatencyDistribution& distribution,
                                         std::mt19937_64& rng) {
  double extra = 0;
  switch (distribution.kind) {
    case LatencyDistribution::Kind::kNone:
      break;
    case LatencyDistribution::Kind::kUniform:
      extra = distribution.first == distribution.second
                  ? distribution.first
                  : std::uniform_real_distribution<double>(distribution.first,
                                                           distribution.second)(rng);
      break;
    case LatencyDistribution::Kind::kNormal:
      extra = distribution.second == 0
                  ? distribution.first
                  : std::normal_distribution<double>(distribution.first, distribution.second)(rng);
      break;
  }
  const auto total = static_cast<double>(fixed.count()) + std::max(extra, 0.0);
  return std::chrono::milliseconds(std::llround(std::max(total, 0.0)));
}

std::optional<ListenAddress> parse_listen(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // a bare IPv6 address is ambiguous without brackets
  }
  std::uint16_t port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size()) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  asio::ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  return ListenAddress{std::string(host), port};
}

Fate decide_fate(const Faults& faults, std::mt19937_64& rng) {
  // One draw partitions [0, 1): drops first, then errors, so the two rates add up predictably.
  const double draw = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (draw < faults.drop_rate) return Fate::kDrop;
  if (draw < faults.drop_rate + faults.error_rate) return Fate::kError;
  return Fate::kRespond;
}

std::optional<StreamParams> parse_stream_params(std::string_view query, StreamParams defaults,
                                                std::string_view count_key, std::uint64_t max_count,
                                                std::string& error) {
  StreamParams params = defaults;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const auto eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view text = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    const auto bounded = [&](std::uint64_t low,
                             std::uint64_t high) -> std::optional<std::uint64_t> {
      const auto value = parse_u64(text);
      if (!value || *value < low || *value > high) {
        error = std::string(key) + " must be an integer from " + std::to_string(low) + " to " +
                std::to_string(high);
        return std::nullopt;
      }
      return value;
    };
    if (key == "think_ms") {
      const auto value = bounded(0, kMaxThink.count());
      if (!value) return std::nullopt;
      params.think = std::chrono::milliseconds(*value);
    } else if (key == "interval_ms") {
      const auto value = bounded(0, kMaxInterval.count());
      if (!value) return std::nullopt;
      params.interval = std::chrono::milliseconds(*value);
    } else if (key == "chunk") {
      const auto value = bounded(1, kMaxChunk);
      if (!value) return std::nullopt;
      params.chunk = *value;
    } else if (!count_key.empty() && key == count_key) {
      const auto value = bounded(1, max_count);
      if (!value) return std::nullopt;
      params.count = *value;
    }
  }
  return params;
}

std::uint64_t StreamPlan::pieces() const {
  switch (kind) {
    case Kind::kCharacters:
      return count;
    case Kind::kChatChunks:
      return count + 1;  // the last carries finish_reason and [DONE]
    case Kind::kBytes:
      return chunk == 0 ? 0 : total / chunk + (total % chunk != 0);
  }
  return 0;
}

void StreamPlan::piece(std::uint64_t index, std::string& out) const {
  out.clear();
  switch (kind) {
    case Kind::kCharacters:
      out = unit_of(*this, index);
      return;
    case Kind::kChatChunks: {
      json event = {
          {"id", id}, {"object", "chat.completion.chunk"}, {"created", created}, {"model", model}};
      if (index < count) {
        json delta = {{"content", unit_of(*this, index)}};
        if (index == 0) delta["role"] = "assistant";
        event["choices"] = {{{"index", 0}, {"delta", delta}, {"finish_reason", nullptr}}};
      } else {
        event["choices"] = {{{"index", 0}, {"delta", json::object()}, {"finish_reason", "stop"}}};
      }
      out = "data: " + event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
      if (index >= count) out += "data: [DONE]\n\n";
      return;
    }
    case Kind::kBytes: {
      // Printable and position-dependent, so a reader can check order and loss; cut from a
      // pattern repeated once up front, so a piece costs one copy.
      static constexpr std::string_view kPattern = "abcdefghijklmnopqrstuvwxyz0123456789\n";
      static const std::string kRepeated = [] {
        std::string text;
        while (text.size() < kMaxChunk + kPattern.size()) text += kPattern;
        return text;
      }();
      const std::uint64_t start = index * chunk;
      const std::uint64_t size = std::min(chunk, total - start);
      out.assign(kRepeated, start % kPattern.size(), size);
      return;
    }
  }
}

bool is_health_check(const Request& request) {
  return (request.method == "GET" || request.method == "HEAD") &&
         path_of(request.target) == "/health";
}

Answer handle(Role role, const Request& request, const HandlerContext& context) {
  const std::span<const Route> routes = role == Role::kRuleEngine
                                            ? std::span<const Route>(kRuleEngineRoutes)
                                            : std::span<const Route>(kAiGmRoutes);
  const std::string_view path = path_of(request.target);
  // Both arms must be views: a std::string arm would make the result a dangling temporary.
  const std::string_view method =
      request.method == "HEAD" ? std::string_view("GET") : std::string_view(request.method);
  const Route* same_path = nullptr;
  for (const Route& route : routes) {
    if (!matches(route, path)) continue;
    if (route.method == method) return route.run(role, request, context);
    same_path = &route;
  }
  if (same_path != nullptr) {
    return method_not_allowed(role, request,
                              same_path->method == "GET" ? "GET, HEAD" : same_path->method);
  }
  return not_found(role, request);
}

Response injected_error(Role role, unsigned status) {
  std::string message = "injected failure (demo --error-rate)";
  if (role == Role::kRuleEngine) return wrapped(status, nullptr, std::move(message));
  return json_response(status, {{"error", "injected_failure"}, {"message", std::move(message)}});
}

struct DemoServer::Connection {
  explicit Connection(tcp::socket socket)
      : stream(std::move(socket)), timer(stream.get_executor()) {}
  beast::tcp_stream stream;
  asio::steady_timer timer;
  bool idle = true;  // waiting for a request; touched only on the connection's strand
};

struct DemoServer::Registry {
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> in_flight{0};
  std::mutex mutex;
  std::set<std::shared_ptr<Connection>> connections;
  bool accepting = false;
  std::function<void()> on_drained;

  // Called with `lock` held; releases it before running the callback.
  void notify_if_drained(std::unique_lock<std::mutex>& lock) {
    if (!stopping || accepting || !connections.empty() || !on_drained) return;
    auto callback = std::exchange(on_drained, {});
    lock.unlock();
    callback();
  }

  void connection_finished(const std::shared_ptr<Connection>& connection) {
    std::unique_lock lock(mutex);
    connections.erase(connection);
    notify_if_drained(lock);
  }
};

DemoServer::DemoServer(asio::io_context& io, Config config)
    : io_(io),
      config_(std::move(config)),
      acceptor_(asio::make_strand(io)),
      registry_(std::make_shared<Registry>()) {
  const tcp::endpoint endpoint(asio::ip::make_address(config_.listen.host), config_.listen.port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  endpoint_ = acceptor_.local_endpoint();
}

DemoServer::~DemoServer() {
  // Frames destroyed later by the io_context must not call back into the owner's (gone) state.
  std::lock_guard lock(registry_->mutex);
  registry_->on_drained = nullptr;
}

std::size_t DemoServer::active_connections() const {
  std::lock_guard lock(registry_->mutex);
  return registry_->connections.size();
}

std::size_t DemoServer::requests_in_flight() const { return registry_->in_flight.load(); }

void DemoServer::start() {
  {
    std::lock_guard lock(registry_->mutex);
    if (registry_->stopping || registry_->accepting) return;
    registry_->accepting = true;
  }
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), log_exception);
}

void DemoServer::stop(std::function<void()> on_drained) {
  std::vector<std::shared_ptr<Connection>> snapshot;
  {
    std::unique_lock lock(registry_->mutex);
    if (registry_->stopping.exchange(true)) return;
    registry_->on_drained = std::move(on_drained);
    snapshot.assign(registry_->connections.begin(), registry_->connections.end());
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    registry_->notify_if_drained(lock);
  }
  // Busy connections see `stopping` after their response; idle ones are woken here.
  for (auto& connection : snapshot) {
    asio::post(connection->stream.get_executor(), [connection] {
      if (connection->idle) connection->stream.cancel();
    });
  }
}

asio::awaitable<void> DemoServer::accept_loop() {
  auto registry = registry_;
  asio::steady_timer backoff(acceptor_.get_executor());
  while (!registry->stopping) {
    tcp::socket socket(asio::make_strand(io_));
    beast::error_code ec;
    co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (registry->stopping || ec == asio::error::operation_aborted) break;
    if (ec) {
      // Usually out of descriptors under load: wait for connections to go rather than spin.
      spdlog::warn("accept failed: {}", ec.message());
      backoff.expires_after(kAcceptBackoff);
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto connection = std::make_shared<Connection>(std::move(socket));
    {
      std::lock_guard lock(registry->mutex);
      if (registry->stopping) break;  // stop() has taken its snapshot: nobody would wake this one
      registry->connections.insert(connection);
    }
    asio::co_spawn(connection->stream.get_executor(), serve(connection, accepted_++),
                   log_exception);
  }
  std::unique_lock lock(registry->mutex);
  registry->accepting = false;
  registry->notify_if_drained(lock);
}

asio::awaitable<void> DemoServer::serve(std::shared_ptr<Connection> connection,
                                        std::uint64_t index) {
  // Unregisters however the coroutine ends, including when its frame is destroyed unrun.
  struct Unregister {
    std::shared_ptr<Registry> registry;
    std::shared_ptr<Connection> connection;
    ~Unregister() { registry->connection_finished(connection); }
  } unregister{registry_, connection};
  const auto& registry = unregister.registry;

  beast::tcp_stream& stream = connection->stream;
  std::mt19937_64 rng(splitmix64(config_.seed ^ splitmix64(index)));
  beast::flat_buffer buffer;
  for (;;) {
    connection->idle = true;
    if (registry->stopping) break;
    http::request_parser<http::string_body> parser;
    parser.body_limit(config_.body_limit);
    stream.expires_after(config_.idle_timeout);
    beast::error_code ec;
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    connection->idle = false;
    if (ec) {
      if (is_http_error(ec) && ec != http::error::end_of_stream &&
          ec != http::error::partial_message) {
        // Untrusted input: answer malformed requests, then hang up.
        const bool too_large = ec == http::error::body_limit;
        http::response<http::string_body> res{
            too_large ? http::status::payload_too_large : http::status::bad_request, 11};
        res.set(http::field::server, kServerName);
        res.set(http::field::content_type, "application/json");
        res.body() = json{{"error", too_large ? "payload_too_large" : "bad_request"},
                          {"message", ec.message()}}
                         .dump();
        res.keep_alive(false);
        res.prepare_payload();
        stream.expires_after(kWriteTimeout);
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      }
      break;
    }

    const auto started = std::chrono::steady_clock::now();
    struct InFlight {
      std::atomic<std::size_t>& count;
      explicit InFlight(std::atomic<std::size_t>& c) : count(c) { ++count; }
      ~InFlight() { --count; }
    } in_flight(registry->in_flight);
    http::request<http::string_body>& raw = parser.get();
    Request request{std::string(raw.method_string()), std::string(raw.target()),
                    std::move(raw.body())};
    Fate fate = Fate::kRespond;
    if (!is_health_check(request)) {
      const auto delay = sample_latency(config_.latency, config_.latency_distribution, rng);
      if (delay.count() > 0) {
        stream.expires_never();
        connection->timer.expires_after(delay);
        co_await connection->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      fate = decide_fate(config_.faults, rng);
    }
    if (fate == Fate::kDrop) {
      spdlog::debug("{} {} -> dropped connection", request.method, request.target);
      break;
    }

    const HandlerContext context{++sequence_, rng(), std::chrono::system_clock::now()};
    Answer answer = fate == Fate::kError
                        ? Answer(injected_error(config_.role, config_.faults.error_status))
                        : handle(config_.role, request, context);
    const bool keep_alive = raw.keep_alive() && !registry->stopping;
    const bool head_only = raw.method() == http::verb::head;
    unsigned status = 0;
    if (auto* plan = std::get_if<StreamPlan>(&answer)) {
      status = plan->status;
      ec = co_await play_stream(connection, *plan, raw.version(), keep_alive, head_only);
    } else {
      Response& response = std::get<Response>(answer);
      status = response.status;
      if (response.delay.count() > 0) {
        stream.expires_never();
        connection->timer.expires_after(response.delay);
        co_await connection->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      http::response<http::string_body> res{static_cast<http::status>(response.status),
                                            raw.version()};
      res.set(http::field::server, kServerName);
      for (const auto& [name, value] : response.headers) res.set(name, value);
      res.body() = std::move(response.body);
      res.keep_alive(keep_alive);
      res.prepare_payload();

      stream.expires_after(kWriteTimeout);
      if (head_only) {
        http::response_serializer<http::string_body> serializer(res);
        co_await http::async_write_header(stream, serializer,
                                          asio::redirect_error(asio::use_awaitable, ec));
      } else {
        co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    spdlog::debug("{} {} -> {} in {} ms{}", request.method, request.target, status,
                  std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count(),
                  ec ? " (" + ec.message() + ")" : std::string());
    if (ec || !keep_alive) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
}

asio::awaitable<beast::error_code> DemoServer::play_stream(std::shared_ptr<Connection> connection,
                                                           const StreamPlan& plan, unsigned version,
                                                           bool keep_alive, bool head_only) {
  beast::tcp_stream& stream = connection->stream;
  beast::error_code ec;
  // A proxy that cancels a request hangs up. Watching for that during the waits, not only at the
  // next write, frees the connection at once (a think time can be a minute) and lets the log say
  // when the client left.
  struct Watch {
    bool active = true;
    bool peer_gone = false;
  };
  auto watch = std::make_shared<Watch>();
  stream.socket().async_wait(
      tcp::socket::wait_read, [watch, connection](const boost::system::error_code& wait_ec) {
        if (!watch->active || wait_ec == asio::error::operation_aborted) return;
        char probe;
        const auto n =
            ::recv(connection->stream.socket().native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        // Readable with data is a pipelined request, read once this stream is over.
        if (wait_ec || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
          watch->peer_gone = true;
          connection->timer.cancel();
        }
      });
  struct StopWatching {
    Watch& watch;
    tcp::socket& socket;
    ~StopWatching() {
      watch.active = false;
      boost::system::error_code ignored;
      socket.cancel(ignored);  // only the watch is pending here
    }
  } stop_watching{*watch, stream.socket()};
  std::uint64_t sent = 0;
  const std::uint64_t pieces = plan.pieces();
  const auto abandoned = [&] {
    ++streams_abandoned_;
    spdlog::info("stream abandoned by the client after {} of {} pieces", sent, pieces);
    return watch->peer_gone ? beast::error_code(asio::error::connection_reset) : ec;
  };
  const auto pause = [&](std::chrono::milliseconds wait) -> asio::awaitable<void> {
    stream.expires_never();
    connection->timer.expires_after(wait);
    co_await connection->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  };
  if (plan.think.count() > 0) {
    co_await pause(plan.think);
    if (ec) co_return abandoned();
  }
  http::response<http::empty_body> head{static_cast<http::status>(plan.status), version};
  head.set(http::field::server, kServerName);
  for (const auto& [name, value] : plan.headers) head.set(name, value);
  head.keep_alive(keep_alive);
  head.chunked(true);
  http::response_serializer<http::empty_body> serializer(head);
  stream.expires_after(kWriteTimeout);
  co_await http::async_write_header(stream, serializer,
                                    asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return abandoned();
  if (head_only) co_return ec;

  // One write per piece: with Nagle off each reaches the wire as its own segment, which is what
  // a proxy in front of this upstream must preserve.
  std::string piece;
  for (; sent < pieces; ++sent) {
    if (sent > 0 && plan.interval.count() > 0) {
      co_await pause(plan.interval);
      if (ec) co_return abandoned();
    }
    plan.piece(sent, piece);
    stream.expires_after(kWriteTimeout);
    co_await asio::async_write(stream, http::make_chunk(asio::buffer(piece)),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return abandoned();
  }
  stream.expires_after(kWriteTimeout);
  co_await asio::async_write(stream, http::make_chunk_last(),
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return abandoned();
  co_return ec;
}

}  // namespace courier::demo
