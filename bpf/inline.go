package bpf

import (
	"fmt"

	"github.com/cilium/ebpf/asm"

	"github.com/sluicenet/sluice/emit"
)

// PolicyProgramFor returns the policy program of the endpoints of one
// policy number. With inline set (the cost model's choice, see
// emit.InlineEntry) the endpoint's own policy layer is compiled into the
// program as compare-and-branch code instead of a policy map lookup; the
// shared layer is still looked up.
func PolicyProgramFor(dir Direction, inline []emit.InlineEntry, f Features) asm.Instructions {
	if inline == nil {
		return PolicyProgram(dir, f)
	}
	var insns asm.Instructions
	insns = append(insns, parseIPv4(dir)...)
	insns = append(insns, ctLookup(dir)...)
	insns = append(insns, lookupEndpoint(dir)...)
	insns = append(insns, lookupClass(dir, f)...)
	insns = append(insns, InlineLayer(dir, inline)...)
	insns = append(insns, policyLayer("shared", stShared)...)
	insns = append(insns,
		asm.LoadMem(asm.R2, asm.RFP, stAllowed, asm.Word),
		asm.JNE.Imm(asm.R2, 0, lblCreate),
	)
	insns = append(insns, verdicts(dir)...)
	insns = append(insns, ctCreate(dir)...)
	insns = append(insns, drops()...)
	return append(insns, offPath()...)
}

// InlineLayer is the code that replaces a policy map lookup: it tests the
// entries in order (class-specific before ClassAny, longer prefixes first,
// as emit orders them), and the first that matches decides the layer, as
// the two LPM lookups would.
func InlineLayer(dir Direction, entries []emit.InlineEntry) asm.Instructions {
	const done = "inline_done"
	in := asm.Instructions{
		asm.LoadMem(asm.R3, asm.RFP, stClass, asm.Word),
		asm.LoadMem(asm.R4, asm.RFP, stProto, asm.Byte),
		asm.LoadMem(asm.R5, asm.RFP, stPort, asm.Half),
		asm.HostTo(asm.BE, asm.R5, asm.Half),
	}
	var mine []emit.InlineEntry
	for _, e := range entries {
		if e.Dir == uint8(dir) {
			mine = append(mine, e)
		}
	}
	label := ""
	for i, e := range mine {
		next := fmt.Sprintf("inline_%d", i+1)
		if i == len(mine)-1 {
			next = done
		}
		var block asm.Instructions
		if e.Class != emit.ClassAny {
			block = append(block, asm.JNE.Imm(asm.R3, int32(e.Class), next))
		}
		if e.Bits >= 80 {
			block = append(block, asm.JNE.Imm(asm.R4, int32(e.Proto), next))
		}
		if e.Bits > 80 {
			mask := int32(0xffff << (16 - (e.Bits - 80)) & 0xffff)
			block = append(block,
				asm.Mov.Reg(asm.R2, asm.R5),
				asm.And.Imm(asm.R2, mask),
				asm.JNE.Imm(asm.R2, int32(e.Port)&mask, next),
			)
		}
		switch e.Action {
		case emit.ActionDeny:
			block = append(block, asm.StoreImm(asm.RFP, stRuleKey, int64(e.Rule), asm.Word), asm.Ja.Label(lblDropDenied))
		case emit.ActionAllow:
			block = append(block, asm.StoreImm(asm.RFP, stAllowed, 1, asm.Word), asm.Ja.Label(done))
		default:
			block = append(block, asm.Ja.Label(done))
		}
		if label != "" {
			block[0] = block[0].WithSymbol(label)
		}
		label = next
		in = append(in, block...)
	}
	return append(in, asm.Mov.Imm(asm.R0, 0).WithSymbol(done))
}
