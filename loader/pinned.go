package loader

import (
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/bulwark-filter/bulwark/bpf"
)

// PinnedProgramID is the id of the program in the link pinned in pinDir,
// and whether such a link is there.
func PinnedProgramID(pinDir string) (uint32, bool) {
	l, err := link.LoadPinnedLink(filepath.Join(pinDir, linkPin), nil)
	if err != nil {
		return 0, false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, false
	}
	return uint32(info.Program), true
}

// SizedSpec is the datapath object with every sized map at s's size.
func SizedSpec(s Sizes) (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadBulwark()
	if err != nil {
		return nil, fmt.Errorf("read embedded datapath object: %w", err)
	}
	for name, n := range s.byMap() {
		ms, ok := spec.Maps[name]
		if !ok {
			return nil, fmt.Errorf("datapath object has no map %s", name)
		}
		ms.MaxEntries = n
	}
	return spec, nil
}
