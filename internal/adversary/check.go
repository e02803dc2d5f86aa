package adversary

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluicenet/sluice/compiler"
	"github.com/sluicenet/sluice/emit"
	"github.com/sluicenet/sluice/internal/oracle"
	"github.com/sluicenet/sluice/ir"
	"github.com/sluicenet/sluice/loader"
	"github.com/sluicenet/sluice/schema"
)

// Checker runs cases through the oracle, Sluice's evaluator and, with
// Kernel, the compiled programs in the kernel (BPF_PROG_TEST_RUN through
// loader.Tracer).
type Checker struct {
	Kernel bool
}

// Disagreement is one way Sluice differs from the oracle on a case.
type Disagreement struct {
	// Class names the kind of difference without the case's names, so
	// that disagreements can be counted by kind.
	Class string
	// Query is the connection, nil for a refusal difference.
	Query  *oracle.Query
	Detail string
}

func (d Disagreement) String() string {
	if d.Query == nil {
		return d.Class + ": " + d.Detail
	}
	return fmt.Sprintf("%s: %s: %s", d.Class, d.Query, d.Detail)
}

// Result is what a case showed.
type Result struct {
	Verdicts int  // queries compared
	Refused  bool // the oracle expects the compile to be refused
	// Limited: the compile met a documented limitation (knownLimitation)
	// and nothing was compared.
	Limited       bool
	Disagreements []Disagreement
}

// ErrNoKernel is returned when the datapath cannot be loaded for lack of
// privilege.
var ErrNoKernel = errors.New("the datapath needs root to load")

func irProto(p corev1.Protocol) ir.Proto {
	switch p {
	case corev1.ProtocolUDP:
		return ir.ProtoUDP
	case corev1.ProtocolSCTP:
		return ir.ProtoSCTP
	}
	return ir.ProtoTCP
}

// Run checks one case.
func (ck *Checker) Run(c *Case) (Result, error) {
	var res Result
	dis := func(class string, q *oracle.Query, format string, args ...any) {
		res.Disagreements = append(res.Disagreements, Disagreement{Class: class, Query: q, Detail: fmt.Sprintf(format, args...)})
	}
	set, diags := schema.Load([]string{"-"}, strings.NewReader(c.YAML()))
	if len(diags) > 0 {
		dis("the front end refuses generated YAML", nil, "%s", diags[0])
		return res, nil
	}
	or := oracle.New(set, "")
	cl, cdiags := compiler.Compile(set, compiler.Options{})
	if refusals := or.Refusals(); len(refusals) > 0 {
		res.Refused = true
		switch {
		case len(cdiags) == 0:
			for _, r := range refusals {
				dis("compiles what must be refused: "+r.Why, nil, "%s", r)
			}
		case cdiags[0].Pos.Line == 0:
			dis("refuses without a position", nil, "%s", cdiags[0])
		}
		return res, nil
	}
	if len(cdiags) > 0 {
		dis("refuses valid input: "+generic(cdiags[0].Message), nil, "%s", cdiags[0])
		return res, nil
	}
	ev := ir.NewEvaluator(cl)
	var tr *loader.Tracer
	if ck.Kernel {
		out, err := emit.Build(cl, emit.Options{})
		if err != nil && knownLimitation(err) {
			res.Limited = true
			return res, nil
		}
		if err != nil {
			dis("emit refuses valid input: "+generic(err.Error()), nil, "%v", err)
			return res, nil
		}
		tr, err = loader.NewTracer(cl, out)
		if errors.Is(err, loader.ErrPrivilege) {
			return res, ErrNoKernel
		}
		if err != nil {
			dis("the datapath does not load", nil, "%v", err)
			return res, nil
		}
		defer tr.Close()
	}
	for i := range c.Queries {
		q := &c.Queries[i]
		res.Verdicts++
		want := or.Verdict(*q)
		iq := ir.Query{Src: q.Src, Dst: q.Dst, Proto: irProto(q.Proto), Port: q.Port}
		got, err := evaluate(ev, iq)
		if err != nil {
			dis("the evaluator panics", q, "%v", err)
			continue
		}
		evKind, evBad := compare(q, want, got.Verdict == ir.Allow, deniedSide(got.Egress.Verdict == ir.Deny, got.Ingress.Verdict == ir.Deny), or)
		evKind += sideDifference(want, got)
		evDetail := fmt.Sprintf("oracle: egress %s, ingress %s; evaluator: egress %s (%s), ingress %s (%s)",
			want.Egress.Why(), want.Ingress.Why(), got.Egress.Verdict, got.Egress.Reason, got.Ingress.Verdict, got.Ingress.Reason)
		if tr == nil {
			if evBad {
				dis("the evaluator "+evKind, q, "%s", evDetail)
			}
			continue
		}
		kv, err := trace(tr, iq)
		if err != nil {
			dis("the datapath fails to run a packet", q, "%v", err)
			continue
		}
		kKind, kBad := compare(q, want, kv.Verdict == ir.Allow, deniedSide(kv.Egress == "drop", kv.Ingress == "drop"), or)
		kKind += fmt.Sprintf(" [kernel: egress program %s, ingress program %s]", kv.Egress, kv.Ingress)
		kDetail := fmt.Sprintf("kernel: egress program %s, ingress program %s", kv.Egress, kv.Ingress)
		switch {
		case evBad && kBad && kv.Egress != "drop" == (got.Egress.Verdict == ir.Allow) && kv.Ingress != "drop" == (got.Ingress.Verdict == ir.Allow):
			// One mistake, shared by the evaluator and the datapath.
			dis(evaluatorAndKernel+evKind, q, "%s; %s", evDetail, kDetail)
		case evBad:
			dis("the evaluator "+evKind, q, "%s; %s", evDetail, kDetail)
			if kBad {
				dis("the kernel "+kKind, q, "%s; %s", evDetail, kDetail)
			}
		case kBad:
			dis("the kernel "+kKind, q, "%s; %s", evDetail, kDetail)
		}
	}
	return res, nil
}

// evaluatorAndKernel starts the class of a mistake that the evaluator and
// the datapath share; it shrinks without the kernel.
const evaluatorAndKernel = "the evaluator and the kernel "

// compare says how a verdict differs from the oracle's, if it does;
// denied names the side that Sluice denied at. IPv4 verdicts must be
// equal. IPv6 is not enforced by the datapath yet: Sluice must then never
// allow what the oracle denies, and must deny at pods that any policy
// isolates.
func compare(q *oracle.Query, want oracle.Verdict, allow bool, denied string, or *oracle.Oracle) (string, bool) {
	if q.Src.Is4() {
		switch {
		case allow == want.Allow:
			return "", false
		case allow:
			side := "ingress"
			if !want.Egress.Allow {
				side = "egress"
			}
			return "allow (IPv4) what the oracle denies at " + side, true
		}
		return "deny (IPv4) at " + denied + " what the oracle allows", true
	}
	switch {
	case !allow:
		return "", false
	case !want.Allow:
		return "allow (IPv6) what the oracle denies", true
	case q.Src != q.Dst && (or.Isolated(q.Src) || or.Isolated(q.Dst)):
		return "allow (IPv6) at a pod that a policy isolates", true
	}
	return "", false
}

var (
	quoted = regexp.MustCompile(`"[^"]*"`)
	number = regexp.MustCompile(`[^ ]*[0-9][^ ]*`)
)

// generic is a message without the names and numbers of one case.
func generic(msg string) string {
	return number.ReplaceAllString(quoted.ReplaceAllString(msg, `"…"`), "#")
}

// sideDifference names the first side where the oracle and the evaluator
// differ, with both reasons: what tells one cause from another.
func sideDifference(want oracle.Verdict, got ir.Decision) string {
	for _, s := range []struct {
		name string
		o    oracle.Side
		e    ir.Side
	}{{"egress", want.Egress, got.Egress}, {"ingress", want.Ingress, got.Ingress}} {
		if s.o.Allow != (s.e.Verdict == ir.Allow) {
			return fmt.Sprintf(" [%s: oracle %q, evaluator %q]", s.name, s.o.Reason, s.e.Reason)
		}
	}
	return ""
}

func deniedSide(egress, ingress bool) string {
	switch {
	case egress && ingress:
		return "egress and ingress"
	case egress:
		return "egress"
	case ingress:
		return "ingress"
	}
	return "neither side"
}

func evaluate(ev *ir.Evaluator, q ir.Query) (d ir.Decision, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return ev.Evaluate(q), nil
}

func trace(tr *loader.Tracer, q ir.Query) (kv loader.KernelVerdict, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return tr.Trace(q)
}

// knownLimitation reports a refusal of valid input that Sluice documents
// (README, Semantics): pods that share an identity but resolve a named
// port that an egress rule uses to different numbers. The datapath knows
// a destination only by identity, so it refuses rather than guess (Cilium
// allows every number the name has anywhere, which is more than the
// manifest says). It is counted, not a disagreement.
func knownLimitation(err error) bool {
	return strings.Contains(err.Error(), "resolve port name") && strings.Contains(err.Error(), "share identity")
}
