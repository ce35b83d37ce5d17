package main

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEFigures checks that the README's figures table is the one the
// committed bench/results.json makes: no figure in it comes from anywhere
// else.
func TestREADMEFigures(t *testing.T) {
	res, err := os.ReadFile("../../../bench/results.json")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := readmeTable(res)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readmeBlock(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("README figures table differs from bench/results.json's (run make bench, or go run ./test/bench/report "+
			"on the committed outputs):\n--- README\n%s--- from bench/results.json\n%s", got, want)
	}
	if !strings.Contains(want, "| measure | result | target met |") {
		t.Errorf("generated table has no header:\n%s", want)
	}
}

// TestUpdateREADME checks that the table is replaced between the markers
// and nothing else changes.
func TestUpdateREADME(t *testing.T) {
	path := t.TempDir() + "/README.md"
	before, after := "# x\n\ntext before\n\n", "\ntext after\n"
	if err := os.WriteFile(path, []byte(before+readmeBegin+"\nold table\n"+readmeEnd+after), 0o644); err != nil {
		t.Fatal(err)
	}
	res := []byte(`{"machine":{"date":"D","cpu":"C","cpus":"2","kernel":"K"},` +
		`"targets":[{"target":"T1","measured":"M1","met":true},{"target":"T2","measured":"M2","met":false}],` +
		`"figures":[{"measure":"F","result":"R"}]}`)
	if err := updateREADME(path, res); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := before + readmeBegin + "\nFrom the run of D on C (2 CPUs, kernel K); medians, spreads in the report.\n\n" +
		"| measure | result | target met |\n|---|---|---|\n| T1 | M1 | yes |\n| T2 | M2 | **no** |\n| F | R | |\n" + readmeEnd + after
	if string(got) != want {
		t.Errorf("README after update:\n%s\nwant:\n%s", got, want)
	}
	if err := os.WriteFile(path, []byte("no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateREADME(path, res); err == nil {
		t.Error("a README without markers was accepted")
	}
}
