// Package util holds the small helpers the Go test plugins share: lossy
// UTF-8 decoding and status names that match the Rust SDK's spelling, so log
// lines and result headers are byte-for-byte those of the Rust plugins.
package util

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// Lossy decodes b as UTF-8 the way Rust's String::from_utf8_lossy does: every
// maximal invalid subsequence (as defined by the Unicode standard, "U+FFFD
// substitution of maximal subparts") becomes one U+FFFD. Go's
// strings.ToValidUTF8 would instead collapse a whole run of invalid bytes
// into a single U+FFFD.
func Lossy(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	out.Grow(len(b) + 8)
	i := 0
	for i < len(b) {
		c := b[i]
		if c < 0x80 {
			out.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || size > 1 {
			out.Write(b[i : i+size])
			i += size
			continue
		}
		out.WriteRune(utf8.RuneError)
		i += invalidPrefixLen(b[i:])
	}
	return out.String()
}

func isCont(b byte) bool { return b >= 0x80 && b <= 0xBF }

// invalidPrefixLen is the length of the maximal subpart of an ill-formed
// sequence at the start of b (at least 1).
func invalidPrefixLen(b []byte) int {
	first := b[0]
	var width int
	switch {
	case first >= 0xC2 && first <= 0xDF:
		width = 2
	case first >= 0xE0 && first <= 0xEF:
		width = 3
	case first >= 0xF0 && first <= 0xF4:
		width = 4
	default:
		return 1
	}
	if len(b) < 2 {
		return 1
	}
	second := b[1]
	switch width {
	case 2:
		return 1 // a valid pair would have decoded
	case 3:
		ok := (first == 0xE0 && second >= 0xA0 && second <= 0xBF) ||
			(first >= 0xE1 && first <= 0xEC && isCont(second)) ||
			(first == 0xED && second >= 0x80 && second <= 0x9F) ||
			(first >= 0xEE && isCont(second))
		if !ok {
			return 1
		}
		return 2 // the third byte is missing or not a continuation
	default: // 4
		ok := (first == 0xF0 && second >= 0x90 && second <= 0xBF) ||
			(first >= 0xF1 && first <= 0xF3 && isCont(second)) ||
			(first == 0xF4 && second >= 0x80 && second <= 0x8F)
		if !ok {
			return 1
		}
		if len(b) < 3 || !isCont(b[2]) {
			return 2
		}
		return 3
	}
}

// StatusName spells a raw proxy-wasm status as the Rust SDK's Status enum
// (its Debug form), e.g. 1 -> "NotFound".
func StatusName(code uint32) string {
	switch code {
	case 0:
		return "Ok"
	case 1:
		return "NotFound"
	case 2:
		return "BadArgument"
	case 3:
		return "SerializationFailure"
	case 4:
		return "ParseFailure"
	case 7:
		return "Empty"
	case 8:
		return "CasMismatch"
	case 10:
		return "InternalFailure"
	case 12:
		return "Unimplemented"
	}
	return "Status(" + strconv.FormatUint(uint64(code), 10) + ")"
}

// ErrName spells an error returned by the Go SDK as the Rust SDK's status
// name. The Go SDK has sentinel errors for NotFound, BadArgument, Empty,
// CasMismatch, InternalFailure and Unimplemented; any other status reaches
// the plugin as the text "unknown status code: N".
func ErrName(err error) string {
	switch {
	case err == nil:
		return "Ok"
	case errors.Is(err, types.ErrorStatusNotFound):
		return "NotFound"
	case errors.Is(err, types.ErrorStatusBadArgument):
		return "BadArgument"
	case errors.Is(err, types.ErrorStatusEmpty):
		return "Empty"
	case errors.Is(err, types.ErrorStatusCasMismatch):
		return "CasMismatch"
	case errors.Is(err, types.ErrorInternalFailure):
		return "InternalFailure"
	case errors.Is(err, types.ErrorUnimplemented):
		return "Unimplemented"
	}
	const prefix = "unknown status code: "
	if msg := err.Error(); strings.HasPrefix(msg, prefix) {
		if code, perr := strconv.ParseUint(msg[len(prefix):], 10, 32); perr == nil {
			return StatusName(uint32(code))
		}
	}
	return err.Error()
}

// Must panics (the module then traps) when a host call the Rust SDK would
// unwrap() failed, so both plugins fail the same way on a misbehaving host.
func Must(err error, what string) {
	if err != nil {
		panic(what + ": " + ErrName(err))
	}
}

// ParseUint parses like Rust's u64/u32 FromStr: decimal digits with an
// optional leading '+', no surrounding whitespace.
func ParseUint(s string, bits int) (uint64, bool) {
	if strings.HasPrefix(s, "+") {
		s = s[1:]
		if s == "" || s[0] == '+' || s[0] == '-' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, bits)
	return v, err == nil
}

// Lookup returns the first value of key in pairs.
func Lookup(pairs [][2]string, key string) (string, bool) {
	for _, p := range pairs {
		if p[0] == key {
			return p[1], true
		}
	}
	return "", false
}
