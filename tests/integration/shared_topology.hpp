// A fixture for suites whose tests share one topology: a TestUpstream behind both built-in
// services and the real binaries, started before the suite's first test and stopped after its
// last. Each suite gets its own (the statics belong to SharedTopologyTest<Suite>).
#pragma once

#include <gtest/gtest.h>

#include <iostream>

#include "tests/integration/topology.hpp"
#include "tests/support/test_upstream.hpp"

namespace courier::testing {

// Suite derives from SharedTopologyTest<Suite> and defines
//   static void configure(TopologyOptions& options);
// to add what it needs beyond the upstreams (environment, flags).
template <typename Suite>
class SharedTopologyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    upstream_ = new TestUpstream();
    TopologyOptions options;
    options.upstreams = {{"rule-engine", upstream_->url()}, {"ai-gm", upstream_->url()}};
    Suite::configure(options);
    topology_ = new Topology(std::move(options));
    ASSERT_TRUE(topology_->wait_ready()) << topology_->logs();
  }
  static void TearDownTestSuite() {
    delete topology_;
    topology_ = nullptr;
    delete upstream_;
    upstream_ = nullptr;
  }
  // Scripts are per test; the upstream and the processes are not.
  void SetUp() override { upstream_->clear_scripts(); }
  void TearDown() override {
    if (HasFailure()) std::cerr << topology_->logs();
  }

  static std::uint16_t port() { return topology_->gateway_port(); }
  static inline TestUpstream* upstream_ = nullptr;
  static inline Topology* topology_ = nullptr;
};

}  // namespace courier::testing
