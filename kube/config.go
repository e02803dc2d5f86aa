package kube

import (
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// InClusterEnv is set in every pod of a cluster: with it, and no
// kubeconfig, Config uses the pod's service account.
const InClusterEnv = "KUBERNETES_SERVICE_HOST"

// RequestTimeout bounds each request to the API server, so that a server
// that accepts connections but never answers fails rather than hangs.
const RequestTimeout = 60 * time.Second

// Config returns the client configuration of a kubeconfig file (its
// current context), or, when path is "" and the process runs in a pod
// (KUBERNETES_SERVICE_HOST is set), of the pod's service account. Errors
// name the file and what is wrong with it.
func Config(path string) (*rest.Config, error) {
	var cfg *rest.Config
	switch {
	case path != "":
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", path, unwrapPath(err))
		}
		raw, err := clientcmd.LoadFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: cannot parse: %w; expected a kubeconfig file (apiVersion: v1, kind: Config)", path, err)
		}
		cc := clientcmd.NewNonInteractiveClientConfig(*raw, "", &clientcmd.ConfigOverrides{}, nil)
		if cfg, err = cc.ClientConfig(); err != nil {
			if clientcmd.IsEmptyConfig(err) {
				return nil, fmt.Errorf("kubeconfig %s: no clusters, users or contexts in it; expected a current-context naming a cluster with a server", path)
			}
			return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
		}
	case os.Getenv(InClusterEnv) != "":
		var err error
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, fmt.Errorf("in-cluster config (%s is set): %w", InClusterEnv, err)
		}
	default:
		return nil, fmt.Errorf("no kubeconfig given and not running in a pod (%s is not set); give --kubeconfig PATH", InClusterEnv)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = RequestTimeout
	}
	cfg.UserAgent = "sluice"
	return cfg, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
