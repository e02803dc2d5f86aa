package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sluicenet/sluice/bpf"
)

// The socket load balancer hangs off one cgroup (the node's cgroup v2
// root in production, so that every pod's and the host's sockets go
// through it): per hook, a dispatcher attached once that reads the
// generation word and tail-calls that half's program of the hook, in a
// two-entry program array of its own. So it swaps with the TC datapath,
// in the same flip. A half without the hook's program translates nothing.

// sockArrayName is the program array of one hook (map names hold 15
// characters).
func sockArrayName(h bpf.SockHook) string {
	return [...]string{"sl_sk_connect4", "sl_sk_sendmsg4", "sl_sk_recvmsg4", "sl_sk_peer4"}[h]
}

type sockAttachment struct {
	cgroupID    uint64
	dispatchers []*ebpf.Program
	links       []link.Link
}

func (a *sockAttachment) close() {
	for _, l := range a.links {
		l.Close()
	}
	for _, d := range a.dispatchers {
		d.Close()
	}
}

func (s *Switch) sockLinkPin(h bpf.SockHook) string {
	return filepath.Join(s.pinDir, "sklink_"+h.String())
}

// cgroupID is the id of a cgroup v2 directory: its inode number.
func cgroupID(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, err
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("%s is not a cgroup v2 directory", path)
	}
	return st.Ino, nil
}

// AttachCgroup attaches the socket load balancer to a cgroup v2 directory:
// from then on the sockets of its processes (and of its descendants')
// connect to service frontends through the serving generation. Attaching
// to the cgroup already attached (as adopted after a restart) changes
// nothing; to another, it moves.
func (s *Switch) AttachCgroup(path string) error {
	id, err := cgroupID(path)
	if err != nil {
		return fmt.Errorf("socket load balancing: %w", err)
	}
	if s.sock != nil {
		if s.sock.cgroupID == id {
			return nil
		}
		if err := s.DetachCgroup(); err != nil {
			return err
		}
	}
	at := &sockAttachment{cgroupID: id}
	s.sock = at
	fail := func(err error) error {
		s.DetachCgroup()
		return fmt.Errorf("socket load balancing on %s: %w", path, err)
	}
	for h := range bpf.SockHooks {
		d, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "sl_sk_dispatch", Type: ebpf.CGroupSockAddr, AttachType: h.AttachType(),
			License: "Dual BSD/GPL", Instructions: sockDispatcher(s.active.FD(), s.sockProgs[h].FD())})
		if err != nil {
			return fail(privilege(fmt.Errorf("load the %s dispatcher: %w", h, err)))
		}
		at.dispatchers = append(at.dispatchers, d)
		l, err := link.AttachCgroup(link.CgroupOptions{Path: path, Attach: h.AttachType(), Program: d})
		if err != nil {
			return fail(fmt.Errorf("attach the %s dispatcher: %w", h, err))
		}
		at.links = append(at.links, l)
		if s.pinDir != "" {
			if err := l.Pin(s.sockLinkPin(h)); err != nil {
				return fail(fmt.Errorf("pin the %s link: %w", h, err))
			}
		}
	}
	return nil
}

// DetachCgroup removes the socket load balancer from its cgroup.
func (s *Switch) DetachCgroup() error {
	if s.sock == nil {
		return nil
	}
	var errs []error
	for _, l := range s.sock.links {
		if s.pinDir != "" {
			if err := l.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		errs = append(errs, l.Close())
	}
	s.sock.links = nil
	s.sock.close()
	s.sock = nil
	return errors.Join(errs...)
}

// adoptSock takes over the socket hooks an earlier agent pinned; a partial
// set is detached.
func (s *Switch) adoptSock() {
	var links []link.Link
	for h := range bpf.SockHooks {
		l, err := link.LoadPinnedLink(s.sockLinkPin(h), nil)
		if err != nil {
			continue
		}
		links = append(links, l)
	}
	if len(links) == int(bpf.SockHooks) {
		if info, err := links[0].Info(); err == nil && info.Cgroup() != nil {
			s.sock = &sockAttachment{cgroupID: info.Cgroup().CgroupId, links: links}
			return
		}
	}
	for _, l := range links {
		l.Unpin()
		l.Close()
	}
}

// fillSock puts a generation's socket programs in a half of the hooks'
// arrays (or empties it, for a generation without them).
func (s *Switch) fillSock(dp *Datapath, half uint32) error {
	for h := range bpf.SockHooks {
		p := dp.Programs[sockProgram(h)]
		if p == nil {
			if err := s.sockProgs[h].Delete(half); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("clear the %s program: %w", h, err)
			}
			continue
		}
		if err := s.sockProgs[h].Put(half, p); err != nil {
			return fmt.Errorf("install the %s program: %w", h, err)
		}
	}
	return nil
}

// sockDispatcher reads the serving half and tail-calls the hook's program
// there; with none, the socket goes on untranslated (return 1).
func sockDispatcher(activeFD, arrayFD int) asm.Instructions {
	call := func(key int32) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.LoadMapPtr(asm.R2, arrayFD),
			asm.Mov.Imm(asm.R3, key),
			asm.FnTailCall.Call(),
		}
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMapValue(asm.R0, activeFD, 0),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.Word),
		asm.JNE.Imm(asm.R7, 0, "half1"),
	}
	insns = append(insns, call(0)...)
	insns = append(insns, asm.Ja.Label("out"))
	half1 := call(1)
	half1[0] = half1[0].WithSymbol("half1")
	insns = append(insns, half1...)
	return append(insns,
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"),
		asm.Return(),
	)
}
