package recorder

import "encoding/binary"

// pcapng block and option codes (draft-ietf-opsawg-pcapng).
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockEPB = 0x00000006

	optEnd      = 0
	optComment  = 1
	optIfName   = 2
	optTsResol  = 9
	optShbAppl  = 4
	byteMagic   = 0x1A2B3C4D
	linkTypeEth = 1
)

// pad4 rounds n up to a multiple of 4.
func pad4(n int) int { return (n + 3) &^ 3 }

// ngBlock builds pcapng blocks in a reusable buffer (little endian).
type ngBlock struct{ b []byte }

func (k *ngBlock) begin(typ uint32) {
	k.b = k.b[:0]
	k.u32(typ)
	k.u32(0) // total length, patched by end
}

func (k *ngBlock) u16(v uint16) { k.b = binary.LittleEndian.AppendUint16(k.b, v) }
func (k *ngBlock) u32(v uint32) { k.b = binary.LittleEndian.AppendUint32(k.b, v) }

func (k *ngBlock) bytes(p []byte) {
	k.b = append(k.b, p...)
	for len(k.b)%4 != 0 {
		k.b = append(k.b, 0)
	}
}

func (k *ngBlock) option(code uint16, value []byte) {
	if len(value) > 0xffff {
		value = value[:0xffff]
	}
	k.u16(code)
	k.u16(uint16(len(value)))
	k.bytes(value)
}

// end closes the options and the block and returns it.
func (k *ngBlock) end() []byte {
	k.u16(optEnd)
	k.u16(0)
	total := uint32(len(k.b) + 4)
	k.u32(total)
	binary.LittleEndian.PutUint32(k.b[4:8], total)
	return k.b
}

func (k *ngBlock) sectionHeader() []byte {
	k.begin(blockSHB)
	k.u32(byteMagic)
	k.u16(1) // major
	k.u16(0) // minor
	k.u32(0xffffffff)
	k.u32(0xffffffff) // section length unknown
	k.option(optShbAppl, []byte("bulwark"))
	return k.end()
}

func (k *ngBlock) interfaceDescription(name string) []byte {
	k.begin(blockIDB)
	k.u16(linkTypeEth)
	k.u16(0)
	k.u32(uint32(SnapLen))
	if name != "" {
		k.option(optIfName, []byte(name))
	}
	k.option(optTsResol, []byte{9}) // nanoseconds
	return k.end()
}

func (k *ngBlock) enhancedPacket(ifaceID uint32, e Event) []byte {
	k.begin(blockEPB)
	k.u32(ifaceID)
	var ts uint64
	if ns := e.Time.UnixNano(); ns > 0 {
		ts = uint64(ns)
	}
	k.u32(uint32(ts >> 32))
	k.u32(uint32(ts))
	data := e.Data
	if len(data) > SnapLen {
		data = data[:SnapLen]
	}
	k.u32(uint32(len(data)))
	k.u32(uint32(max(e.PktLen, len(data))))
	k.bytes(data)
	k.option(optComment, []byte(e.Comment()))
	return k.end()
}
