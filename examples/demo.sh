#!/bin/sh
# make demo: the seed example as a lab when the machine allows it (root,
# iproute2, BPF), else compiled and traced only. See README.md.
set -e
BIN=${BIN:-bin}
SEED=examples/seed
$BIN/sluice compile -f $SEED -o out/seed
echo
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null 2>&1 || ! $BIN/sluice verify out/seed/worker-1 >/dev/null 2>&1; then
	echo "This machine does not allow the lab (it needs root, iproute2 and a kernel with BPF):"
	echo "compiling and tracing only."
	echo
	$BIN/sluice trace -f $SEED --matrix --port 80/TCP -o table
	echo
	$BIN/sluice trace -f $SEED --from default/client --to default/backend --port 80/TCP
	exit 0
fi
if [ -e /run/sluice-lab/demo ]; then
	$BIN/sluice lab down --name demo
fi
trap '$BIN/sluice lab down --name demo' EXIT
$BIN/sluice lab up -f $SEED --name demo
echo
echo "== Reachability on 80/TCP, measured by real connections through the kernel:"
$BIN/sluice lab probe --name demo --matrix --port 80/TCP -o table
echo
echo "== The same matrix from the compiler's reference evaluator (sluice trace --matrix):"
$BIN/sluice trace -f $SEED --matrix --port 80/TCP -o table
echo
echo "== nginx-service (ClusterIP 10.103.111.79:80) from default/frontend, 12 connections:"
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
	$BIN/sluice lab probe --name demo --from default/frontend --to 10.103.111.79 --port 80/TCP
done | sort | uniq -c
echo
echo "== NodePort 31355 from outside the cluster, on every node:"
for ip in 192.168.122.233 192.168.122.123 192.168.122.121; do
	$BIN/sluice lab probe --name demo --from world --to $ip --port 31355/TCP
done
echo
echo "== Why can default/client not reach default/backend?"
$BIN/sluice trace -f $SEED --from default/client --to default/backend --port 80/TCP
echo
