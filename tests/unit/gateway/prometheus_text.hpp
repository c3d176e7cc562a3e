// A strict reader of the Prometheus text exposition format (0.0.4) for tests: checks every line's
// syntax, that TYPE comes before a family's samples, and that sample names belong to their family.
#pragma once

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace courier::testing::prometheus_text {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Parsed {
  std::string error;                         // empty when the text is valid; else "line N: why"
  std::map<std::string, std::string> types;  // family -> counter|gauge|histogram|summary|untyped
  std::vector<Sample> samples;

  // The value of the sample with exactly this name and (a superset of) these labels.
  std::optional<double> value(std::string_view name,
                              const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : labels) {
        const auto it = s.labels.find(k);
        if (it == s.labels.end() || it->second != v) match = false;
      }
      if (match) return s.value;
    }
    return std::nullopt;
  }
};

inline bool metric_name(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
  }
  return true;
}

inline bool label_name(std::string_view s) {
  return metric_name(s) && s.find(':') == std::string_view::npos;
}

inline std::optional<double> sample_value(std::string_view s) {
  if (s == "+Inf") return INFINITY;
  if (s == "-Inf") return -INFINITY;
  if (s == "NaN") return NAN;
  const std::string text(s);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) return std::nullopt;
  return v;
}

// The family a sample belongs to: histogram and summary samples carry suffixes.
inline std::string family_of(const std::string& name,
                             const std::map<std::string, std::string>& types) {
  if (types.count(name)) return name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string_view sfx(suffix);
    if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
      const auto base = name.substr(0, name.size() - sfx.size());
      const auto it = types.find(base);
      if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
    }
  }
  return name;
}

inline Parsed parse(std::string_view text) {
  Parsed out;
  std::set<std::string> finished;  // families whose samples already ended
  std::string current;
  int line_no = 0;
  const auto fail = [&](const std::string& why) {
    out.error = "line " + std::to_string(line_no) + ": " + why;
    return out;
  };
  if (!text.empty() && text.back() != '\n') {
    line_no = 0;
    return fail("text must end with a newline");
  }
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
        const bool is_type = line[2] == 'T';
        auto rest = line.substr(7);
        const auto sp = rest.find(' ');
        const std::string name(rest.substr(0, sp));
        if (!metric_name(name)) return fail("bad metric name in comment: " + name);
        if (is_type) {
          const auto type = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
          if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
              type != "untyped") {
            return fail("bad type: " + std::string(type));
          }
          if (out.types.count(name)) return fail("second TYPE for " + name);
          if (finished.count(name) || name == current) return fail("TYPE after samples of " + name);
          out.types[name] = std::string(type);
        }
      }
      continue;
    }
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = std::string(line.substr(0, i));
    if (!metric_name(s.name)) return fail("bad sample name: " + s.name);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const auto eq = line.find('=', i);
        if (eq == std::string_view::npos) return fail("label without '='");
        const std::string key(line.substr(i, eq - i));
        if (!label_name(key)) return fail("bad label name: " + key);
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') return fail("label value must be quoted");
        ++i;
        std::string value;
        for (;; ++i) {
          if (i >= line.size()) return fail("unterminated label value");
          if (line[i] == '"') break;
          if (line[i] == '\\') {
            if (++i >= line.size()) return fail("dangling escape");
            if (line[i] == 'n')
              value += '\n';
            else if (line[i] == '\\' || line[i] == '"')
              value += line[i];
            else
              return fail("bad escape");
          } else {
            value += line[i];
          }
        }
        ++i;  // closing quote
        if (s.labels.count(key)) return fail("repeated label " + key);
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return fail("unterminated label set");
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') return fail("missing value");
    auto rest = line.substr(i + 1);
    const auto sp = rest.find(' ');  // an optional timestamp follows
    const auto v = sample_value(rest.substr(0, sp));
    if (!v) return fail("bad value: " + std::string(rest));
    s.value = *v;
    const auto family = family_of(s.name, out.types);
    if (family != current) {
      if (finished.count(family)) return fail("samples of " + family + " are not contiguous");
      if (!current.empty()) finished.insert(current);
      current = family;
    }
    const auto type = out.types.count(family) ? out.types[family] : "untyped";
    if (type == "counter" && (s.value < 0 || std::isnan(s.value))) return fail("negative counter");
    if (type == "histogram" && s.name == family) return fail("histogram sample without suffix");
    if (type == "histogram" && s.name == family + "_bucket" && !s.labels.count("le")) {
      return fail("bucket without le");
    }
    out.samples.push_back(std::move(s));
  }
  return out;
}

}  // namespace courier::testing::prometheus_text
