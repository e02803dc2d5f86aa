//go:build !unix

package synth

import "os"

// maxRSSKiB is unknown where there is no rusage.
func maxRSSKiB(*os.ProcessState) int64 { return 0 }
