#!/usr/bin/env bash
# Runs the tests of the test/kube module (a real kube-apiserver and etcd,
# in-process), printing progress through the build: cold, it compiles
# Kubernetes (10-20 minutes on 2 cores, about 3 GiB in the linker); warm,
# it takes under a minute. -p 1 keeps one linker at a time; -vet=off
# saves a fifth of the cold build (vet runs after, from the cache);
# -trimpath would break the API server's test fixtures.
set -euo pipefail
cd "$(dirname "$0")"
GO=${GO:-go}
start=$SECONDS
echo "test/kube: building and running the kube-apiserver test module (cold: 10-20 min, warm: under a minute)..."
(
	while sleep 60; do
		echo "test/kube: $(((SECONDS - start) / 60)) min..."
	done
) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
$GO test -vet=off -p 1 -count=1 -timeout 40m ./...
$GO vet ./...
echo "test/kube: done in $((SECONDS - start))s"
