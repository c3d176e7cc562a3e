# One image for every Courier binary (broker, gateway, worker, demo upstream, courier-keys).
# /keys belongs to the courier user, so that a fresh named volume mounted there is its to write.
#   docker build --build-arg COURIER_REVISION=$(git describe --always --dirty) -t courier .
# Docker builds have no .git: COURIER_REVISION names the source in --version and build_info.
# COURIER_PREBUILT=DIR (a directory in the build context holding the five binaries, built on
# Debian 12 like this image) skips the compile: CI uses it for the binaries it already built and
# tested (scripts/compose-ci.sh). The runtime stage is the same either way.

# Build stage: Debian 12 packages only, Release build with tests off.
FROM debian:bookworm-slim AS build
ARG COURIER_PREBUILT=
ARG COURIER_REVISION=
RUN if [ -z "$COURIER_PREBUILT" ]; then \
      apt-get update \
   && apt-get install -y --no-install-recommends g++ cmake ninja-build pkg-config \
        cppzmq-dev libzmq3-dev libmsgpack-cxx-dev libboost-dev libspdlog-dev \
        nlohmann-json3-dev libcli11-dev libyaml-cpp-dev prometheus-cpp-dev libjwt-dev \
   && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY . .
RUN set -e; \
    if [ -n "$COURIER_PREBUILT" ]; then \
      cd "$COURIER_PREBUILT"; \
      install -D -t /out/bin courier-broker courier-gateway courier-worker courier-demo-upstream \
        courier-keys; \
    else \
      cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCOURIER_BUILD_TESTS=OFF -DCOURIER_BUILD_BENCH=OFF -DCOURIER_REVISION="$COURIER_REVISION"; \
      cmake --build /build --target courier-broker courier-gateway courier-worker \
        courier-demo-upstream courier-keys; \
      install -D -t /out/bin /build/broker/courier-broker /build/gateway/courier-gateway \
        /build/workers/courier-worker /build/demo/courier-demo-upstream /build/keys/courier-keys; \
    fi

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
# 8080: the gateway's public port; 9901-9903: admin ports (gateway, broker, worker); 5555/5556: broker.
EXPOSE 8080 9901 9902 9903 5555 5556
CMD ["courier-gateway", "--help"]
