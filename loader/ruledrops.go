package loader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/sluicenet/sluice/bpf"
	"github.com/sluicenet/sluice/emit"
)

// RuleDrop names what decided a policy drop: a deny rule (Verdict "deny",
// with its policy, field and manifest position), or the default deny of
// endpoints isolated by policies (Verdict "default_deny", Policy lists
// them, Rule and Source are empty).
type RuleDrop struct {
	Verdict   string
	Direction string
	Policy    string
	Rule      string
	Source    string
}

// RuleDrops counts a generation's policy drops by what decided them.
func (d *Datapath) RuleDrops() (map[RuleDrop]uint64, error) {
	m := d.Maps[bpf.MapRuleDrops]
	if m == nil {
		return nil, nil
	}
	out := map[RuleDrop]uint64{}
	var key uint32
	var perCPU []uint64
	it := m.Iterate()
	for it.Next(&key, &perCPU) {
		var n uint64
		for _, v := range perCPU {
			n += v
		}
		out[d.ruleDropName(key)] += n
	}
	return out, it.Err()
}

func (d *Datapath) ruleDropName(key uint32) RuleDrop {
	if key&(1<<31) != 0 {
		dir := bpf.Direction((key >> 30) & 1)
		pols := d.groupPolicies[key&(1<<30-1)]
		return RuleDrop{Verdict: "default_deny", Direction: directionName(dir), Policy: strings.Join(pols, ", ")}
	}
	if rules := d.ruleSummaries(); int(key) < len(rules) && rules[key].ID == key {
		r := rules[key]
		return RuleDrop{Verdict: "deny", Direction: r.Direction, Policy: r.Policy, Rule: r.Field, Source: r.Source}
	}
	return RuleDrop{Verdict: "deny", Policy: fmt.Sprintf("rule %d", key)}
}

// ruleSummaries parses the generation's rules.json on first use; a
// generation whose rules.json is the one an earlier generation parsed
// shares its result (see shareRules). A rules.json that does not parse
// (it passed its checksum, so a compiler bug) leaves drops named by number.
func (d *Datapath) ruleSummaries() []emit.RuleSummary {
	if !d.rulesParsed {
		d.rulesParsed = true
		if err := json.Unmarshal(d.rulesRaw, &d.rules); err != nil {
			d.rules = nil
		}
	}
	return d.rules
}

// shareRules gives d the parsed rules of from when their rules.json is
// the same.
func (d *Datapath) shareRules(from *Datapath) {
	if from != nil && from.rulesParsed && !d.rulesParsed && bytes.Equal(from.rulesRaw, d.rulesRaw) {
		d.rules, d.rulesParsed = from.rules, true
	}
}

func directionName(d bpf.Direction) string {
	if d == bpf.FromContainer {
		return "egress"
	}
	return "ingress"
}

// clearRuleDrops empties a generation's rule_drops map, for its reuse.
func (d *Datapath) clearRuleDrops() error {
	m := d.Maps[bpf.MapRuleDrops]
	if m == nil {
		return nil
	}
	var keys []uint32
	var key uint32
	var perCPU []uint64
	it := m.Iterate()
	for it.Next(&key, &perCPU) {
		keys = append(keys, key)
	}
	var errs []error
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, it.Err())...)
}

// harvestRuleDrops moves an idle generation's drop counts into the
// switch's totals, named by that generation's rules (a later compile may
// number rules differently), and empties its map.
func (s *Switch) harvestRuleDrops(d *Datapath) {
	counts, err := d.RuleDrops()
	if err != nil {
		return
	}
	if s.ruleDrops == nil {
		s.ruleDrops = map[RuleDrop]uint64{}
	}
	for k, n := range counts {
		s.ruleDrops[k] += n
	}
	d.clearRuleDrops()
}

// RuleDrops returns the node's policy drops since the switch was made, by
// what decided them, over every generation it served.
func (s *Switch) RuleDrops() (map[RuleDrop]uint64, error) {
	out := map[RuleDrop]uint64{}
	for k, n := range s.ruleDrops {
		out[k] = n
	}
	var errs []error
	for _, g := range []*Datapath{s.gen, s.idleGen} {
		if g == nil {
			continue
		}
		counts, err := g.RuleDrops()
		errs = append(errs, err)
		for k, n := range counts {
			out[k] += n
		}
	}
	return out, errors.Join(errs...)
}
