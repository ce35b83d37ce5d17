package config

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// evalContext is what a config's expressions may use: the function env.
var evalContext = &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc}}

// envFunc is env("NAME") or env("NAME", "default"): the value of the agent's environment variable NAME, or the
// default when it is unset. An unset variable without a default is an error at the call. A variable set to ""
// is "", not unset.
var envFunc = function.New(&function.Spec{
	Description: "The value of an environment variable, or a default when it is unset.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.String},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		name := args[0].AsString()
		if len(args) > 2 {
			return cty.NilVal, function.NewArgErrorf(2, "env takes a name and at most one default, not %d arguments", len(args))
		}
		if name == "" {
			return cty.NilVal, function.NewArgErrorf(0, "the variable's name must not be empty")
		}
		if v, ok := os.LookupEnv(name); ok {
			return cty.StringVal(v), nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return cty.NilVal, fmt.Errorf("environment variable %s is not set and no default is given (as in env(%q, \"default\"))", name, name)
	},
})
