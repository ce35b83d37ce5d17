// Package bpf holds Bulwark's XDP program (C) and the Go bindings bpf2go
// generates from it. The generated *_bpfel.go and *_bpfel.o files are
// committed, so building Bulwark needs no clang; `make generate` rebuilds
// them. Other packages use the maps and loader packages, not these bindings
// directly.
package bpf

//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 $BPF_EXTRA_CFLAGS" -type dp_settings -type rule -type port_slot -type lpm_v4_key -type lpm_v6_key -type list_value -type src_key -type verdict -type class_value -type src_state -type rule_key -type rule_state -type counter -type rule_counter -type drop_event -type action -type reason -type mode -type verdict_action -type present_bits -type port_table -type misc_counter -type limits -type replay_io -type sig_rule -type sig_fields -type sig_action -type sig_sampling -type sig_dest Bulwark bulwark.c
//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror $BPF_EXTRA_CFLAGS" Floor floor.c
//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror $BPF_EXTRA_CFLAGS" -type rotate_addr Rotate rotate.c
