package watch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sluicenet/sluice/kube"
)

// The kinds watched, in the order Snapshot lists them.
const (
	Namespaces     = "namespaces"
	Nodes          = "nodes"
	Pods           = "pods"
	Services       = "services"
	EndpointSlices = "endpointslices"
)

var kinds = []string{Namespaces, Nodes, Pods, Services, EndpointSlices}

// Op is what happened to an object.
type Op int

const (
	// Synced is the first event: every informer has synced, and Snapshot
	// holds the whole state. Events after it are changes to that state.
	Synced Op = iota
	Added
	Updated
	Deleted
)

func (o Op) String() string {
	return [...]string{"synced", "added", "updated", "deleted"}[o]
}

// Event is one change, or the initial state (Synced).
type Event struct {
	Op   Op
	Kind string // one of the kind constants; "" for Synced
	// Key is "namespace/name", or "name" for cluster-scoped kinds.
	Key string
	// Obj is the stripped object (see kube.Strip*; a pod is a *kube.Pod):
	// its new state, or for Deleted its last known state. Old is the state
	// an update replaced.
	Obj, Old metav1.Object
	// Tombstone is set on a Deleted the watch missed: a relist found the
	// object gone, and Obj is the state last seen, which may be stale.
	Tombstone bool
	// Snapshot is the whole state, for Synced.
	Snapshot *kube.Snapshot
}

// Options configure a Cache.
type Options struct {
	// Handler receives the events, one at a time (never concurrently), in
	// the order the cache applied them, starting with Synced. Nothing is
	// delivered before every informer has synced.
	Handler func(Event)
	// Resync is the informers' resync period (0: none).
	Resync time.Duration
}

// Cache is the agent's view of the cluster: one shared informer factory,
// an informer per kind, each object stripped before it is stored.
type Cache struct {
	opts      Options
	factory   informers.SharedInformerFactory
	informers map[string]cache.SharedIndexInformer

	deliverMu sync.Mutex  // serialises the handler
	synced    atomic.Bool // set, under deliverMu, when Synced is delivered

	mu     sync.Mutex
	errs   map[string]watchError // the last watch error per kind
	counts map[string]int        // watch errors per kind
}

type watchError struct {
	err error
	at  time.Time
}

// New makes a cache of the cluster behind cs. Start starts it.
func New(cs kubernetes.Interface, opts Options) (*Cache, error) {
	f := informers.NewSharedInformerFactoryWithOptions(cs, opts.Resync, informers.WithTransform(Strip))
	c := &Cache{opts: opts, factory: f, errs: map[string]watchError{}, counts: map[string]int{},
		informers: map[string]cache.SharedIndexInformer{
			Namespaces:     f.Core().V1().Namespaces().Informer(),
			Nodes:          f.Core().V1().Nodes().Informer(),
			Pods:           f.Core().V1().Pods().Informer(),
			Services:       f.Core().V1().Services().Informer(),
			EndpointSlices: f.Discovery().V1().EndpointSlices().Informer(),
		}}
	for _, kind := range kinds {
		inf := c.informers[kind]
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
			AddFunc:    func(obj any, _ bool) { c.deliver(Event{Op: Added, Kind: kind, Obj: asMeta(obj)}) },
			UpdateFunc: func(old, obj any) { c.deliver(Event{Op: Updated, Kind: kind, Obj: asMeta(obj), Old: asMeta(old)}) },
			DeleteFunc: func(obj any) { c.deliver(deleted(kind, obj)) },
		}); err != nil {
			return nil, fmt.Errorf("watch %s: %w", kind, err)
		}
		// A broken watch is retried by the reflector with backoff; the
		// store keeps what it had. Record the error for Status.
		if err := inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
			c.mu.Lock()
			c.errs[kind] = watchError{err, time.Now()}
			c.counts[kind]++
			c.mu.Unlock()
			cache.DefaultWatchErrorHandler(ctx, r, err)
		}); err != nil {
			return nil, fmt.Errorf("watch %s: %w", kind, err)
		}
	}
	return c, nil
}

// deleted makes the event of a delete, unwrapping a tombstone.
func deleted(kind string, obj any) Event {
	ev := Event{Op: Deleted, Kind: kind}
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		ev.Tombstone, ev.Key = true, t.Key
		obj = t.Obj
	}
	ev.Obj = asMeta(obj)
	return ev
}

func asMeta(obj any) metav1.Object {
	m, _ := obj.(metav1.Object)
	return m
}

func key(m metav1.Object) string {
	if m.GetNamespace() == "" {
		return m.GetName()
	}
	return m.GetNamespace() + "/" + m.GetName()
}

// deliver passes an event to the handler once the cache has synced;
// before, the state it describes is in the stores, and so in the
// Synced event's snapshot.
func (c *Cache) deliver(ev Event) {
	if ev.Key == "" && ev.Obj != nil {
		ev.Key = key(ev.Obj)
	}
	c.deliverMu.Lock()
	defer c.deliverMu.Unlock()
	if c.synced.Load() && c.opts.Handler != nil {
		c.opts.Handler(ev)
	}
}

// Start starts the informers; once every one has synced, the handler
// gets Synced. It returns at once; the cache stops with ctx.
func (c *Cache) Start(ctx context.Context) {
	c.factory.Start(ctx.Done())
	go func() {
		if !c.WaitForSync(ctx) {
			return
		}
		c.deliverMu.Lock()
		defer c.deliverMu.Unlock()
		// The stores are read under the handler's lock: an event whose
		// object is already in them is delivered after Synced (a repeat,
		// which the handler must take as an upsert), one that is not yet
		// in them is delivered after too; none is lost between.
		snap := c.snapshot()
		c.synced.Store(true)
		if c.opts.Handler != nil {
			c.opts.Handler(Event{Op: Synced, Snapshot: snap})
		}
	}()
}

// Shutdown stops the informers and waits for them.
func (c *Cache) Shutdown() { c.factory.Shutdown() }

// WaitForSync waits until every informer has synced, or ctx ends.
func (c *Cache) WaitForSync(ctx context.Context) bool {
	var synced []cache.InformerSynced
	for _, kind := range kinds {
		synced = append(synced, c.informers[kind].HasSynced)
	}
	return cache.WaitForCacheSync(ctx.Done(), synced...)
}

// Ready is nil once every informer has synced and the handler has had
// Synced; before, it says which kinds are not synced yet and the last
// watch error of each, for a /readyz.
func (c *Cache) Ready() error {
	if c.synced.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var waiting []string
	for _, kind := range kinds {
		if c.informers[kind].HasSynced() {
			continue
		}
		s := kind
		if e, ok := c.errs[kind]; ok {
			s += fmt.Sprintf(" (last error %s ago: %v)", time.Since(e.at).Round(time.Second), e.err)
		}
		waiting = append(waiting, s)
	}
	if len(waiting) == 0 {
		return fmt.Errorf("synced, delivering the initial state")
	}
	return fmt.Errorf("not synced with the API server: %s", strings.Join(waiting, ", "))
}

// Counts returns the objects held per kind, and the watch errors seen per
// kind since the start.
func (c *Cache) Counts() (objects, errors map[string]int) {
	objects = map[string]int{}
	for _, kind := range kinds {
		objects[kind] = len(c.informers[kind].GetStore().ListKeys())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	errors = map[string]int{}
	for k, n := range c.counts {
		errors[k] = n
	}
	return objects, errors
}

// Snapshot returns the whole state held, once synced.
func (c *Cache) Snapshot() (*kube.Snapshot, error) {
	if err := c.Ready(); err != nil {
		return nil, err
	}
	return c.snapshot(), nil
}

func (c *Cache) snapshot() *kube.Snapshot {
	s := &kube.Snapshot{}
	for _, kind := range kinds {
		objs := c.informers[kind].GetStore().List()
		sort.Slice(objs, func(i, j int) bool { return key(objs[i].(metav1.Object)) < key(objs[j].(metav1.Object)) })
		for _, o := range objs {
			// The stores' objects are shared: the snapshot gets copies.
			switch o := o.(type) {
			case *corev1.Namespace:
				s.Namespaces = append(s.Namespaces, *o.DeepCopy())
			case *corev1.Node:
				s.Nodes = append(s.Nodes, *o.DeepCopy())
			case *kube.Pod:
				s.Pods = append(s.Pods, *o.Pod())
			case *corev1.Service:
				s.Services = append(s.Services, *o.DeepCopy())
			case *discoveryv1.EndpointSlice:
				s.EndpointSlices = append(s.EndpointSlices, *o.DeepCopy())
			}
		}
	}
	return s
}

// Strip is the informers' transform: the kube.Strip function of the
// object's kind, and for pods kube.SlimPod; anything else (a *kube.Pod
// already slim) passes unchanged.
func Strip(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return kube.StripNamespace(o), nil
	case *corev1.Node:
		return kube.StripNode(o), nil
	case *corev1.Pod:
		return kube.SlimPod(o), nil
	case *corev1.Service:
		return kube.StripService(o), nil
	case *discoveryv1.EndpointSlice:
		return kube.StripEndpointSlice(o), nil
	}
	return obj, nil
}
