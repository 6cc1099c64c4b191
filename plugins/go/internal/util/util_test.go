package util

import (
	"errors"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// Expected values are what Rust's String::from_utf8_lossy returns.
func TestLossyMatchesRust(t *testing.T) {
	const r = "\uFFFD"
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\xffb", "a" + r + "b"},
		{"\xff\xfe", r + r},
		{"\xc3\x28", r + "("},
		{"\xe2\x82", r},
		{"\xe2\x82a", r + "a"},
		{"\xf0\x9f\x98", r},
		{"\xf0\x9f\x98\x80", "\U0001F600"},
		{"\xed\xa0\x80", r + r + r},
		{"\xe0\x80\x80", r + r + r},
		{"\xf4\x90\x80\x80", r + r + r + r},
		{"\xc0\xaf", r + r},
		{"x\xe2\x82\xacy\xe2", "x€y" + r},
	}
	for _, c := range cases {
		if got := Lossy([]byte(c.in)); got != c.want {
			t.Errorf("Lossy(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseUintMatchesRust(t *testing.T) {
	for in, want := range map[string]bool{"5": true, "+5": true, "": false, "+": false, "-1": false, "++5": false, "+-5": false, " 5": false, "1_0": false, "4294967296": false} {
		if _, ok := ParseUint(in, 32); ok != want {
			t.Errorf("ParseUint(%q) ok = %v, want %v", in, ok, want)
		}
	}
}

func TestErrName(t *testing.T) {
	cases := map[error]string{
		nil:                                  "Ok",
		types.ErrorStatusNotFound:            "NotFound",
		types.ErrorStatusCasMismatch:         "CasMismatch",
		types.ErrorInternalFailure:           "InternalFailure",
		errors.New("unknown status code: 3"): "SerializationFailure",
		errors.New("unknown status code: 4"): "ParseFailure",
	}
	for err, want := range cases {
		if got := ErrName(err); got != want {
			t.Errorf("ErrName(%v) = %q, want %q", err, got, want)
		}
	}
}
