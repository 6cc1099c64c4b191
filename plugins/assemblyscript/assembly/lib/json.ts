// Just enough JSON for `hello`'s configuration: validates a whole document
// (RFC 8259 grammar, as strict as serde_json: no trailing commas, no comments,
// no control characters or lone surrogates in strings, nothing after the
// value, nesting at most 128 deep) and extracts the top-level members whose
// names are listed in `known`. AssemblyScript's standard library has no JSON.

import { isValidUtf8 } from "./host";

export class StringFields {
  // Known names whose (last) value is a string, with that value.
  values: Map<string, string> = new Map();
}

// Returns null unless `input` is a JSON object whose known members all hold
// strings. Unknown members may hold anything. For a repeated name the last
// occurrence counts, as in serde_json's map.
export function parseStringFields(input: ArrayBuffer, known: Array<string>): StringFields | null {
  if (!isValidUtf8(input)) return null;
  let p = new Parser(Uint8Array.wrap(input));
  p.skipWs();
  if (p.peek() != 0x7B) return null; // '{'
  let result = new StringFields();
  // Names whose last value was not a string.
  let bad = new Set<string>();
  p.pos++;
  p.depth = 1;
  p.skipWs();
  if (p.peek() == 0x7D) {
    p.pos++;
  } else {
    while (true) {
      p.skipWs();
      let name = p.parseString();
      if (name === null) return null;
      p.skipWs();
      if (p.peek() != 0x3A) return null; // ':'
      p.pos++;
      p.skipWs();
      let key = name as string;
      if (known.includes(key)) {
        if (p.peek() == 0x22) {
          let value = p.parseString();
          if (value === null) return null;
          result.values.set(key, value as string);
          bad.delete(key);
        } else {
          if (!p.skipValue()) return null;
          if (result.values.has(key)) result.values.delete(key);
          bad.add(key);
        }
      } else if (!p.skipValue()) {
        return null;
      }
      p.skipWs();
      let c = p.peek();
      p.pos++;
      if (c == 0x7D) break; // '}'
      if (c != 0x2C) return null; // ','
    }
  }
  p.skipWs();
  if (p.pos != p.bytes.length) return null;
  if (bad.size > 0) return null;
  return result;
}

class Parser {
  bytes: Uint8Array;
  pos: i32 = 0;
  depth: i32 = 0;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  peek(): i32 {
    return this.pos < this.bytes.length ? <i32>this.bytes[this.pos] : -1;
  }

  skipWs(): void {
    while (this.pos < this.bytes.length) {
      let c = this.bytes[this.pos];
      if (c != 0x20 && c != 0x09 && c != 0x0A && c != 0x0D) break;
      this.pos++;
    }
  }

  // Validates any value at pos and moves past it.
  skipValue(): bool {
    let c = this.peek();
    if (c == 0x22) return this.parseString() !== null;
    if (c == 0x7B || c == 0x5B) return this.skipContainer(c == 0x7B);
    if (c == 0x74) return this.literal("true");
    if (c == 0x66) return this.literal("false");
    if (c == 0x6E) return this.literal("null");
    return this.skipNumber();
  }

  skipContainer(isObject: bool): bool {
    if (++this.depth > 128) return false;
    this.pos++;
    this.skipWs();
    let close = isObject ? 0x7D : 0x5D;
    if (this.peek() == close) {
      this.pos++;
      this.depth--;
      return true;
    }
    while (true) {
      this.skipWs();
      if (isObject) {
        if (this.peek() != 0x22 || this.parseString() === null) return false;
        this.skipWs();
        if (this.peek() != 0x3A) return false;
        this.pos++;
        this.skipWs();
      }
      if (!this.skipValue()) return false;
      this.skipWs();
      let c = this.peek();
      this.pos++;
      if (c == close) break;
      if (c != 0x2C) return false;
    }
    this.depth--;
    return true;
  }

  literal(word: string): bool {
    for (let i = 0; i < word.length; i++) {
      if (this.peek() != word.charCodeAt(i)) return false;
      this.pos++;
    }
    return true;
  }

  digits(): i32 {
    let n = 0;
    while (this.peek() >= 0x30 && this.peek() <= 0x39) {
      this.pos++;
      n++;
    }
    return n;
  }

  skipNumber(): bool {
    if (this.peek() == 0x2D) this.pos++; // '-'
    if (this.peek() == 0x30) {
      this.pos++;
    } else if (this.digits() == 0) {
      return false;
    }
    if (this.peek() == 0x2E) { // '.'
      this.pos++;
      if (this.digits() == 0) return false;
    }
    if (this.peek() == 0x65 || this.peek() == 0x45) { // 'e' 'E'
      this.pos++;
      if (this.peek() == 0x2B || this.peek() == 0x2D) this.pos++;
      if (this.digits() == 0) return false;
    }
    return true;
  }

  hex4(): i32 {
    if (this.pos + 4 > this.bytes.length) return -1;
    let v = 0;
    for (let i = 0; i < 4; i++) {
      let c = <i32>this.bytes[this.pos + i];
      let d: i32;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      else return -1;
      v = (v << 4) | d;
    }
    this.pos += 4;
    return v;
  }

  // Parses a string at pos (which must be '"'), returning its value, or null
  // if it is malformed.
  parseString(): string | null {
    if (this.peek() != 0x22) return null;
    this.pos++;
    let out = "";
    let runStart = this.pos;
    while (true) {
      if (this.pos >= this.bytes.length) return null;
      let c = <i32>this.bytes[this.pos];
      if (c == 0x22) {
        out += this.decodeRun(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) return null;
      if (c != 0x5C) {
        this.pos++;
        continue;
      }
      out += this.decodeRun(runStart, this.pos);
      this.pos++;
      let e = this.peek();
      this.pos++;
      if (e == 0x22) out += "\"";
      else if (e == 0x5C) out += "\\";
      else if (e == 0x2F) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6E) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) {
        let u = this.hex4();
        if (u < 0) return null;
        if (u >= 0xDC00 && u <= 0xDFFF) return null; // lone trailing surrogate
        if (u >= 0xD800 && u <= 0xDBFF) {
          // A leading surrogate must be followed by an escaped trailing one.
          if (this.peek() != 0x5C) return null;
          this.pos++;
          if (this.peek() != 0x75) return null;
          this.pos++;
          let lo = this.hex4();
          if (lo < 0xDC00 || lo > 0xDFFF) return null;
          out += String.fromCharCode(u, lo);
        } else {
          out += String.fromCharCode(u);
        }
      } else {
        return null;
      }
      runStart = this.pos;
    }
    return null;
  }

  decodeRun(start: i32, end: i32): string {
    if (end <= start) return "";
    return String.UTF8.decode(this.bytes.buffer.slice(start, end));
  }
}
