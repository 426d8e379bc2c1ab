package snp

import (
	"encoding/binary"
	"errors"
	"testing"
)

// TestVMSAOffsetsMatchKernel anchors the field offsets to Linux's struct
// sev_es_save_area (arch/x86/include/asm/svm.h), whose reserved fields are
// named after their offsets and checked there with
// BUILD_BUG_RESERVED_OFFSET: reserved_0xc8, 0xcc, 0xd8, 0x1c0, 0x248, 0x298,
// 0x2f0, 0x320, 0x380, 0x3f0. Each field used here is placed by counting
// from the nearest such anchor in the kernel's declaration order.
func TestVMSAOffsetsMatchKernel(t *testing.T) {
	tests := map[string]struct{ got, want int }{
		// ten struct vmcb_seg (16 bytes) from 0: es cs ss ds fs gs gdtr ldtr idtr tr
		"cs":   {vmsaCS, 1 * 16},
		"ldtr": {vmsaLDTR, 7 * 16},
		"idtr": {vmsaIDTR, 8 * 16},
		"tr":   {vmsaTR, 9 * 16},
		// reserved_0xcc[4] then efer
		"efer": {vmsaEFER, 0xcc + 4},
		// reserved_0xd8[104] then xss cr4 cr3 cr0 dr7 dr6 rflags rip
		"cr4":    {vmsaCR4, 0xd8 + 104 + 1*8},
		"cr0":    {vmsaCR0, 0xd8 + 104 + 3*8},
		"dr7":    {vmsaDR7, 0xd8 + 104 + 4*8},
		"dr6":    {vmsaDR6, 0xd8 + 104 + 5*8},
		"rflags": {vmsaRFLAGS, 0xd8 + 104 + 6*8},
		"rip":    {vmsaRIP, 0xd8 + 104 + 7*8},
		// reserved_0x248[32] then g_pat
		"g_pat": {vmsaGPAT, 0x248 + 32},
		// reserved_0x2f0[24] then rcx rdx
		"rdx": {vmsaRDX, 0x2f0 + 24 + 8},
		// reserved_0x380[16] then guest_exit_info_1 _2 int_info nrip sev_features
		"sev_features": {vmsaSEVFeatures, 0x380 + 16 + 4*8},
		// ... vintr_ctrl guest_exit_code virtual_tom tlb_id pcpu_id event_inj xcr0 reserved_0x3f0
		"xcr0": {vmsaXCR0, 0x3f0 - 8},
		// reserved_0x3f0[16] then x87_dp(8) mxcsr(4) x87_ftw(2) x87_fsw(2) x87_fcw
		"mxcsr":   {vmsaMXCSR, 0x3f0 + 16 + 8},
		"x87_fcw": {vmsaX87FCW, 0x3f0 + 16 + 8 + 4 + 2 + 2},
	}
	for name, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s at 0x%x, want 0x%x", name, tt.got, tt.want)
		}
	}
}

func TestVMSAFields(t *testing.T) {
	le := binary.LittleEndian
	sig, err := VCPUSignature("EPYC-Milan")
	if err != nil {
		t.Fatal(err)
	}
	const apEIP = 0x0080b004
	tests := map[string]struct {
		eip      uint32
		vmm      VMM
		csBase   uint64
		rip      uint64
		csAttr   uint16
		ssAttr   uint16
		trAttr   uint16
		rdx      uint64
		mxcsr    uint32
		fcw      uint16
		features uint64
	}{
		"QEMU BSP": {eip: bspEIP, vmm: VMMQEMU, csBase: 0xffff0000, rip: 0xfff0, csAttr: 0x9b, ssAttr: 0x93, trAttr: 0x8b, rdx: uint64(sig), mxcsr: 0x1f80, fcw: 0x37f, features: 0x21},
		"QEMU AP":  {eip: apEIP, vmm: VMMQEMU, csBase: 0x00800000, rip: 0xb004, csAttr: 0x9b, ssAttr: 0x93, trAttr: 0x8b, rdx: uint64(sig), mxcsr: 0x1f80, fcw: 0x37f, features: 0x1},
		"EC2 BSP":  {eip: bspEIP, vmm: VMMEC2, csBase: 0xffff0000, rip: 0xfff0, csAttr: 0x9a, ssAttr: 0x92, trAttr: 0x83, features: 0x1},
		"EC2 AP":   {eip: apEIP, vmm: VMMEC2, csBase: 0x00800000, rip: 0xb004, csAttr: 0x9b, ssAttr: 0x92, trAttr: 0x83, features: 0x1},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := vmsaPage(tt.eip, tt.features, sig, tt.vmm)
			checks := []struct {
				field     string
				got, want uint64
			}{
				{"cs.selector", uint64(le.Uint16(p[0x10:])), 0xf000},
				{"cs.attrib", uint64(le.Uint16(p[0x12:])), uint64(tt.csAttr)},
				{"cs.limit", uint64(le.Uint32(p[0x14:])), 0xffff},
				{"cs.base", le.Uint64(p[0x18:]), tt.csBase},
				{"ss.attrib", uint64(le.Uint16(p[0x22:])), uint64(tt.ssAttr)},
				{"ldtr.attrib", uint64(le.Uint16(p[0x72:])), 0x82},
				{"idtr.attrib", uint64(le.Uint16(p[0x82:])), 0},
				{"tr.attrib", uint64(le.Uint16(p[0x92:])), uint64(tt.trAttr)},
				{"efer", le.Uint64(p[0xd0:]), 0x1000},
				{"cr4", le.Uint64(p[0x148:]), 0x40},
				{"cr0", le.Uint64(p[0x158:]), 0x10},
				{"dr7", le.Uint64(p[0x160:]), 0x400},
				{"dr6", le.Uint64(p[0x168:]), 0xffff0ff0},
				{"rflags", le.Uint64(p[0x170:]), 0x2},
				{"rip", le.Uint64(p[0x178:]), tt.rip},
				{"g_pat", le.Uint64(p[0x268:]), 0x0007040600070406},
				{"rdx", le.Uint64(p[0x310:]), tt.rdx},
				{"sev_features", le.Uint64(p[0x3b0:]), tt.features},
				{"xcr0", le.Uint64(p[0x3e8:]), 1},
				{"mxcsr", uint64(le.Uint32(p[0x408:])), uint64(tt.mxcsr)},
				{"x87_fcw", uint64(le.Uint16(p[0x410:])), uint64(tt.fcw)},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = 0x%x, want 0x%x", c.field, c.got, c.want)
				}
			}
			// Nothing but the segments (0..0xa0) and the fields above is
			// set: the rest of the page is zero.
			set := map[int]int{0xd0: 8, 0x148: 8, 0x158: 8, 0x160: 8, 0x168: 8, 0x170: 8, 0x178: 8, 0x268: 8, 0x310: 8, 0x3b0: 8, 0x3e8: 8, 0x408: 4, 0x410: 2}
			for i := 0xa0; i < PageSize; i++ {
				if n, ok := set[i]; ok {
					i += n - 1
					continue
				}
				if p[i] != 0 {
					t.Errorf("byte 0x%x = 0x%x, want 0", i, p[i])
				}
			}
		})
	}
}

func TestVCPUSignature(t *testing.T) {
	tests := map[string]struct {
		want    uint32
		wantErr error
	}{
		// family 23 (0x17 = 0xf + 0x8), model 1, stepping 2
		"EPYC-v4": {want: 0x00800f12},
		"EPYC":    {want: 0x00800f12},
		// family 23, model 49 (0x31), stepping 0
		"EPYC-Rome": {want: 0x00830f10},
		// family 25 (0xf + 0xa), model 1, stepping 1
		"EPYC-Milan":    {want: 0x00a00f11},
		"EPYC-Milan-v2": {want: 0x00a00f11},
		// family 25, model 17 (0x11), stepping 0
		"EPYC-Genoa": {want: 0x00a10f10},
		// family 26 (0xf + 0xb), model 0, stepping 0
		"EPYC-Turin": {want: 0x00b00f00},
		"":           {wantErr: ErrUnknownVCPUType},
		"epyc-v4":    {wantErr: ErrUnknownVCPUType},
		"host":       {wantErr: ErrUnknownVCPUType},
		"Skylake":    {wantErr: ErrUnknownVCPUType},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := VCPUSignature(name)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("sig = 0x%x, want 0x%x", got, tt.want)
			}
		})
	}
}

func TestParseVMM(t *testing.T) {
	tests := map[string]struct {
		want    VMM
		wantErr error
	}{
		"":      {want: VMMQEMU},
		"QEMU":  {want: VMMQEMU},
		"qemu":  {want: VMMQEMU},
		"EC2":   {want: VMMEC2},
		"ec2":   {want: VMMEC2},
		"gce":   {wantErr: ErrUnknownVMM},
		"krun":  {wantErr: ErrUnknownVMM},
		"qemu ": {wantErr: ErrUnknownVMM},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseVMM(name)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("ParseVMM(%q) = %v, %v; want %v, %v", name, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
