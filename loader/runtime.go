package loader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
)

// PodRef names a pod of this node, from its CNI record.
type PodRef struct{ Namespace, Name string }

// RuntimePod is how the serving generation enforces a pod it does not
// list: as a pod of Workload ("Kind/name", from the artifact's runtime
// table), or, when no workload accounts for it, with the reserved init
// identity and no policy of its own (Workload "").
type RuntimePod struct {
	Pod      PodRef
	Workload string
	Identity uint32
}

// runtimeTableOf reads an artifact's runtime.json; an artifact without
// one (older compilers) resolves every pod to init.
func runtimeTableOf(a *Artifact) (*emit.RuntimeTable, error) {
	data, ok := a.Files["runtime.json"]
	if !ok {
		return &emit.RuntimeTable{}, nil
	}
	var t emit.RuntimeTable
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s/runtime.json: %w", a.Dir, err)
	}
	return &t, nil
}

// SetRuntimePods makes the serving generation, and every later one,
// enforce the node's pods that the artifact does not list (pods created
// after the compile, or restarted with a new address): each gets an
// endpoints entry and an ipcache entry, resolved through the artifact's
// runtime table (see emit.RuntimeTable). Pods whose addresses the
// generation lists are left to it; pods no longer given lose their
// entries. Write them before attaching the pods' programs.
func (s *Switch) SetRuntimePods(pods map[netip.Addr]PodRef) ([]RuntimePod, error) {
	s.runtime = pods
	if s.gen == nil {
		return nil, nil
	}
	var err error
	s.RuntimePods, err = s.applyRuntime(s.gen)
	return s.RuntimePods, err
}

// applyRuntime brings a generation's runtime entries in line with
// s.runtime.
func (s *Switch) applyRuntime(dp *Datapath) ([]RuntimePod, error) {
	var errs []error
	for addr := range dp.runtimeWritten {
		if _, ok := s.runtime[addr]; !ok || dp.known[addr] {
			errs = append(errs, dp.restoreRuntime(addr))
		}
	}
	var out []RuntimePod
	for addr, ref := range s.runtime {
		if dp.known[addr] || !addr.Is4() {
			continue
		}
		rp := RuntimePod{Pod: ref, Identity: emit.InitEndpoint.Identity}
		ev := emit.InitEndpoint
		if w, ok := dp.runtimeTable.Resolve(ref.Namespace, ref.Name); ok {
			rp.Workload, rp.Identity, ev = w.Kind+"/"+w.Name, w.Identity, w.Endpoint()
		}
		out = append(out, rp)
		if err := dp.writeRuntime(addr, ev); err != nil {
			errs = append(errs, fmt.Errorf("enforce %s/%s at %s: %w", ref.Namespace, ref.Name, addr, err))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pod.Namespace != out[j].Pod.Namespace {
			return out[i].Pod.Namespace < out[j].Pod.Namespace
		}
		return out[i].Pod.Name < out[j].Pod.Name
	})
	return out, errors.Join(errs...)
}

// runtimeKeys are the keys of a runtime pod's entries, by map.
func runtimeKeys(addr netip.Addr) map[string][]byte {
	a := addr.As4()
	return map[string][]byte{
		bpf.MapEndpoints:    a[:],
		bpf.MapIPCache:      append([]byte{32, 0, 0, 0}, a[:]...),
		bpf.MapIPCacheExact: a[:],
	}
}

func (dp *Datapath) writeRuntime(addr netip.Addr, ev emit.EndpointValue) error {
	dp.runtimeWritten[addr] = true
	ipc := dp.runtimeTable.RuntimeIPCacheValue(dp.images[bpf.MapIPCache], addr, ev.Identity)
	for name, key := range runtimeKeys(addr) {
		m := dp.Maps[name]
		if m == nil {
			continue // no ipcache_exact in this generation
		}
		val := ipc
		if name == bpf.MapEndpoints {
			val = ev.Bytes()
		}
		if err := m.Put(key, val); err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
	}
	return nil
}

// restoreRuntime puts back what the image says for a runtime pod's keys:
// its value where the image has the key, else nothing.
func (dp *Datapath) restoreRuntime(addr netip.Addr) error {
	delete(dp.runtimeWritten, addr)
	var errs []error
	for name, key := range runtimeKeys(addr) {
		m := dp.Maps[name]
		if m == nil {
			continue
		}
		info, err := m.Info()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if val := imageValue(dp.images[name], key, int(info.ValueSize)); val != nil {
			errs = append(errs, m.Put(key, val))
		} else if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("map %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// imageValue returns the value of key in a map image, or nil.
func imageValue(image, key []byte, valueSize int) []byte {
	rec := len(key) + valueSize
	for off := 0; off+rec <= len(image); off += rec {
		if bytes.Equal(image[off:off+len(key)], key) {
			return image[off+len(key) : off+rec]
		}
	}
	return nil
}
