# One image for every Courier binary (broker, gateway, worker, demo upstream, courier-keys).
# /keys belongs to the courier user, so that a fresh named volume mounted there is its to write.
# Build stage: Debian 12 packages only, Release build with tests off.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ cmake ninja-build pkg-config \
      cppzmq-dev libzmq3-dev libmsgpack-cxx-dev libboost-dev libspdlog-dev \
      nlohmann-json3-dev libcli11-dev libyaml-cpp-dev prometheus-cpp-dev libjwt-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCOURIER_BUILD_TESTS=OFF -DCOURIER_BUILD_BENCH=OFF \
 && cmake --build /build \
 && install -D -t /out/bin /build/broker/courier-broker /build/gateway/courier-gateway \
      /build/workers/courier-worker /build/demo/courier-demo-upstream /build/keys/courier-keys

# Runtime stage: shared libraries only, non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libzmq5 libspdlog1.10 libfmt9 libyaml-cpp0.7 \
      libprometheus-cpp-core1.0 libjwt0 curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home courier \
 && install -d -o courier -m 0700 /keys
COPY --from=build /out/bin/ /usr/local/bin/
USER courier
EXPOSE 8080 5555 5556
CMD ["courier-gateway", "--help"]
