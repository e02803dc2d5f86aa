package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
)

// Options configure a server.
type Options struct {
	// Users are the users the server knows besides the admin, by name,
	// each with a bearer token (a static token file). RBAC gives them
	// nothing until a test binds a role.
	Users []string
	// Flags are extra kube-apiserver flags.
	Flags []string
}

// Server is a running kube-apiserver and its etcd.
type Server struct {
	// Admin is a client config for the loopback superuser (system:masters).
	Admin *rest.Config
	// Client is a clientset for Admin.
	Client kubernetes.Interface
	// Started is how long the start took (etcd and the API server ready).
	Started time.Duration

	tokens map[string]string
	dir    string
	etcd   *embed.Etcd
	api    *kubeapiservertesting.TestServer
	tb     *mainTB
	nsSeq  atomic.Int64
}

// Start starts etcd and a kube-apiserver on free loopback ports. Stop
// releases both and their files.
func Start(opts Options) (srv *Server, err error) {
	began := time.Now()
	dir, err := os.MkdirTemp("", "sluice-kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	s := &Server{dir: dir, tokens: map[string]string{}, tb: &mainTB{name: "kubetest", dir: dir}}
	defer func() {
		if err != nil {
			s.Stop()
			err = fmt.Errorf("kubetest: %w%s", err, s.tb.logTail())
		}
	}()
	// The API server logs through klog, a process-wide logger: into this
	// server's log, which a failed start prints.
	// SLUICE_KUBETEST_LOG=N also prints it, up to verbosity N.
	verbosity, _ := strconv.Atoi(os.Getenv("SLUICE_KUBETEST_LOG"))
	klog.SetLogger(funcr.New(func(prefix, args string) { s.tb.Logf("%s %s", prefix, args) }, funcr.Options{Verbosity: verbosity}))
	if s.etcd, err = startEtcd(filepath.Join(dir, "etcd"), s.tb); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	flags := []string{
		// No controllers run, so nothing would make the service accounts
		// the admission plugin waits for.
		"--disable-admission-plugins=ServiceAccount",
		"--authorization-mode=RBAC",
	}
	if len(opts.Users) > 0 {
		file, err := s.tokenFile(opts.Users)
		if err != nil {
			return nil, err
		}
		flags = append(flags, "--token-auth-file="+file)
	}
	flags = append(flags, opts.Flags...)
	storage := storagebackend.NewDefaultConfig("/"+filepath.Base(dir), nil)
	for _, u := range s.etcd.Clients {
		storage.Transport.ServerList = append(storage.Transport.ServerList, "http://"+u.Addr().String())
	}
	api, err := s.tb.run(func() (kubeapiservertesting.TestServer, error) {
		return kubeapiservertesting.StartTestServer(s.tb,
			&kubeapiservertesting.TestServerInstanceOptions{EnableCertAuth: true, DisableInvariantChecks: true}, flags, storage)
	})
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	s.api = &api
	s.Admin = rest.CopyConfig(api.ClientConfig)
	if s.Client, err = kubernetes.NewForConfig(s.Admin); err != nil {
		return nil, err
	}
	s.Started = time.Since(began)
	return s, nil
}

// Stop stops the API server and etcd and removes their files.
func (s *Server) Stop() {
	if s.api != nil {
		s.api.TearDownFn()
		s.api = nil
	}
	s.tb.cleanup()
	if s.etcd != nil {
		s.etcd.Close()
		s.etcd = nil
	}
	os.RemoveAll(s.dir)
}

// tokenFile writes a static token file ("token,user,uid") for users.
func (s *Server) tokenFile(users []string) (string, error) {
	var b strings.Builder
	for i, u := range users {
		tok := fmt.Sprintf("sluice-test-token-%d-%s", i, u)
		s.tokens[u] = tok
		fmt.Fprintf(&b, "%s,%s,%s\n", tok, u, u)
	}
	file := filepath.Join(s.dir, "tokens.csv")
	return file, os.WriteFile(file, []byte(b.String()), 0o600)
}

// As returns a client config for one of Options.Users: the admin's
// server and CA, the user's bearer token.
func (s *Server) As(user string) *rest.Config {
	tok, ok := s.tokens[user]
	if !ok {
		panic("kubetest: unknown user " + user)
	}
	cfg := rest.AnonymousClientConfig(s.Admin)
	cfg.BearerToken = tok
	return cfg
}

// WriteKubeconfig writes cfg (a server, CA data, TLS server name and a
// bearer token) as a kubeconfig file, as kubectl would read it.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
		TLSServerName:            cfg.ServerName,
	}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	return clientcmd.WriteToFile(*kc, path)
}

var notLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace of its own for the test, named after it,
// with labels.
func (s *Server) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	name := strings.Trim(notLabel.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	suffix := "-" + strconv.FormatInt(s.nsSeq.Add(1), 10)
	if len(name) > 63-len(suffix) {
		name = strings.TrimRight(name[:63-len(suffix)], "-")
	}
	name += suffix
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := s.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	// Without the namespace controller a deleted namespace stays
	// Terminating; it and everything in it go with the server.
	return name
}

// startEtcd starts a single-member etcd in dir on free loopback ports.
func startEtcd(dir string, tb *mainTB) (*embed.Etcd, error) {
	logger := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), zapcore.AddSync(tb), zapcore.WarnLevel))
	var lastErr error
	for range 5 { // a free port can be taken between choosing and binding
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		cfg := embed.NewConfig()
		cfg.Dir = dir
		cfg.UnsafeNoFsync = true // a test server is never restarted from its data
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger.Named("etcd"))
		client := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))}
		peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			os.RemoveAll(dir)
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
			return e, nil
		case err := <-e.Err():
			e.Close()
			return nil, err
		case <-time.After(60 * time.Second):
			e.Close()
			return nil, errors.New("not ready within 60s")
		}
	}
	return nil, lastErr
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// mainTB is the ktesting.TB StartTestServer needs, outside any test: it
// keeps the log (printed when the start fails, or with SLUICE_KUBETEST_LOG
// set), runs cleanups at Stop, and turns Fatal into an error of Start.
type mainTB struct {
	name, dir string
	mu        sync.Mutex
	log       []string
	cleanups  []func()
	failed    bool
}

type fatal struct{ msg string }

// run calls start, turning a Fatal during it into an error.
func (tb *mainTB) run(start func() (kubeapiservertesting.TestServer, error)) (v kubeapiservertesting.TestServer, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
	}()
	return start()
}

func (tb *mainTB) cleanup() {
	tb.mu.Lock()
	fns := tb.cleanups
	tb.cleanups = nil
	tb.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// logTail is the last lines logged, for an error.
func (tb *mainTB) logTail() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	lines := tb.log[max(0, len(tb.log)-20):]
	if len(lines) == 0 {
		return ""
	}
	return "\nlast log lines:\n" + strings.Join(lines, "\n")
}

var verbose = os.Getenv("SLUICE_KUBETEST_LOG") != ""

// Write takes etcd's log lines.
func (tb *mainTB) Write(p []byte) (int, error) {
	tb.Logf("%s", p)
	return len(p), nil
}

func (tb *mainTB) Log(args ...any) { tb.Logf("%s", fmt.Sprint(args...)) }
func (tb *mainTB) Logf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	if verbose {
		fmt.Fprintln(os.Stderr, msg)
	}
	tb.mu.Lock()
	tb.log = append(tb.log, msg)
	if len(tb.log) > 1000 {
		tb.log = append(tb.log[:0], tb.log[500:]...)
	}
	tb.mu.Unlock()
}
func (tb *mainTB) Error(args ...any) { tb.Errorf("%s", fmt.Sprint(args...)) }
func (tb *mainTB) Errorf(format string, args ...any) {
	tb.Logf("ERROR: "+format, args...)
	tb.Fail()
}
func (tb *mainTB) Fail() {
	tb.mu.Lock()
	tb.failed = true
	tb.mu.Unlock()
}
func (tb *mainTB) Failed() bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.failed
}
func (tb *mainTB) FailNow()          { tb.Fail(); panic(fatal{"failed"}) }
func (tb *mainTB) Fatal(args ...any) { tb.Fatalf("%s", fmt.Sprint(args...)) }
func (tb *mainTB) Fatalf(format string, args ...any) {
	tb.Fail()
	panic(fatal{fmt.Sprintf(format, args...)})
}
func (tb *mainTB) Skip(args ...any)                 { tb.Fatal(append([]any{"skipped: "}, args...)...) }
func (tb *mainTB) Skipf(format string, args ...any) { tb.Fatalf("skipped: "+format, args...) }
func (tb *mainTB) SkipNow()                         { tb.Fatal("skipped") }
func (tb *mainTB) Skipped() bool                    { return false }
func (tb *mainTB) Helper()                          {}
func (tb *mainTB) Name() string                     { return tb.name }
func (tb *mainTB) Attr(key, value string)           { tb.Logf("attr %s=%s", key, value) }
func (tb *mainTB) Chdir(string)                     { panic("kubetest: Chdir is not supported outside a test") }
func (tb *mainTB) Setenv(key, value string)         { os.Setenv(key, value) }
func (tb *mainTB) Cleanup(fn func()) {
	tb.mu.Lock()
	tb.cleanups = append(tb.cleanups, fn)
	tb.mu.Unlock()
}
func (tb *mainTB) TempDir() string {
	d, err := os.MkdirTemp(tb.dir, "tmp-")
	if err != nil {
		tb.Fatalf("TempDir: %v", err)
	}
	return d
}

// Compact compacts etcd to its current revision, as the API server's
// periodic compaction does: watches from older resource versions then fail
// with 410 Gone (with --watch-cache=false, which serves them from etcd),
// and their clients relist.
func (s *Server) Compact(ctx context.Context) error {
	resp, err := s.api.EtcdClient.Get(ctx, "compact-probe")
	if err != nil {
		return fmt.Errorf("etcd revision: %w", err)
	}
	if _, err := s.api.EtcdClient.Compact(ctx, resp.Header.Revision); err != nil {
		return fmt.Errorf("etcd compact: %w", err)
	}
	return nil
}

// Main is a test package's TestMain: it starts a server into *srv, runs
// the tests, stops the server and exits with the tests' status.
func Main(m *testing.M, opts Options, srv **Server) {
	s, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kube-apiserver and etcd ready in %.1fs\n", s.Started.Seconds())
	*srv = s
	code := m.Run()
	s.Stop()
	os.Exit(code)
}
