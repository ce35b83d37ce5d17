package main

import "errors"

// topCmd is bulwark top. (Being written.)
type topCmd struct{}

func (c *topCmd) Run(g *cli) error { return errors.New("bulwark top: not yet available") }
