package cni_test

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// addDelLatency wires n pods through a config list, then unwires them, and
// returns the ADD and DEL latencies.
func addDelLatency(b *testing.B, e *env, conf *libcni.NetworkConfigList, n int) (add, del []time.Duration) {
	rts := make([]*libcni.RuntimeConf, n)
	for i := range rts {
		_, rts[i] = e.pod(fmt.Sprintf("b%d-%d", len(e.cleanups), i))
	}
	e.cleanups = append(e.cleanups, nil)
	for _, rt := range rts {
		start := time.Now()
		if err := e.inNode(func() error { _, err := e.cniCfg.AddNetworkList(context.Background(), conf, rt); return err }); err != nil {
			b.Fatal(err)
		}
		add = append(add, time.Since(start))
	}
	for _, rt := range rts {
		start := time.Now()
		if err := e.inNode(func() error { return e.cniCfg.DelNetworkList(context.Background(), conf, rt) }); err != nil {
			b.Fatal(err)
		}
		del = append(del, time.Since(start))
	}
	return add, del
}

func percentile(ds []time.Duration, p float64) float64 {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
}

// BenchmarkAddDel measures ADD and DEL through libcni over 200 pods, for
// sluice-cni and, as the baseline in the same run, the reference ptp
// plugin with the same IPAM. Run by make bench (-benchtime=1x).
func BenchmarkAddDel(b *testing.B) {
	e := newEnv(b, "1.1.0")
	if out, err := exec.Command("go", "build", "-o", e.bin+"/", "github.com/containernetworking/plugins/plugins/main/ptp").CombinedOutput(); err != nil {
		b.Fatalf("build ptp: %v\n%s", err, out)
	}
	ptp, err := libcni.ConfListFromBytes([]byte(strings.Replace(strings.Replace(string(e.conf.Bytes), `"type": "sluice-cni"`, `"type": "ptp"`, 1), "10.88.0.0/24", "10.89.0.0/24", 1)))
	if err != nil {
		b.Fatal(err)
	}
	const n = 200
	for b.Loop() {
		sa, sd := addDelLatency(b, e, e.conf, n)
		pa, pd := addDelLatency(b, e, ptp, n)
		b.ReportMetric(percentile(sa, 0.5), "add-p50-ms")
		b.ReportMetric(percentile(sa, 0.99), "add-p99-ms")
		b.ReportMetric(percentile(sd, 0.5), "del-p50-ms")
		b.ReportMetric(percentile(sd, 0.99), "del-p99-ms")
		b.ReportMetric(percentile(pa, 0.99), "ptp-add-p99-ms")
		b.ReportMetric(percentile(pd, 0.99), "ptp-del-p99-ms")
		b.ReportMetric(percentile(sa, 0.99)/percentile(pa, 0.99), "add-p99-vs-ptp")
	}
}
