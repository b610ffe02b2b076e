/**
 * A protobuf text-format reader for the test KServe server, which reads `config.pbtxt` as Triton
 * does: the text is parsed against a message type loaded by protobufjs (Triton's
 * `model_config.proto` subset in `bridge/kserve/proto/`), so an unknown field, a wrong value type,
 * a singular field given twice or an unknown enum name is refused with the line it is on. Supports
 * what text format allows: `field: value`, `field { ... }` / `field: < ... >`, lists
 * `field: [a, b]`, repeated fields given several times, maps as repeated `{ key: .. value: .. }`
 * entries, `#` comments, `,` or `;` separators, adjacent string literals concatenated.
 */
import protobuf from "protobufjs";

interface Token {
  kind: "ident" | "string" | "punct";
  text: string;
  line: number;
}

function tokenize(text: string, where: string): Token[] {
  const out: Token[] = [];
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\n") {
      line++;
      i++;
    } else if (/\s/.test(c)) i++;
    else if (c === "#") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if ("{}[]<>:,;".includes(c)) {
      out.push({ kind: "punct", text: c, line });
      i++;
    } else if (c === '"' || c === "'") {
      let s = "";
      i++;
      for (;;) {
        if (i >= text.length || text[i] === "\n") throw new Error(`${where}: line ${line}: unterminated string`);
        const d = text[i]!;
        if (d === c) {
          i++;
          break;
        }
        if (d !== "\\") {
          s += d;
          i++;
          continue;
        }
        const e = text[i + 1];
        i += 2;
        const simple: Record<string, string> = {
          n: "\n",
          r: "\r",
          t: "\t",
          '"': '"',
          "'": "'",
          "\\": "\\",
          "?": "?",
          a: "\x07",
          b: "\b",
          f: "\f",
          v: "\v",
        };
        if (e !== undefined && simple[e] !== undefined) s += simple[e];
        else if (e !== undefined && /[0-7]/.test(e)) {
          let oct = e;
          while (oct.length < 3 && /[0-7]/.test(text[i] ?? "")) oct += text[i++];
          s += String.fromCharCode(parseInt(oct, 8));
        } else if (e === "x") {
          let hex = "";
          while (hex.length < 2 && /[0-9a-fA-F]/.test(text[i] ?? "")) hex += text[i++];
          s += String.fromCharCode(parseInt(hex, 16));
        } else throw new Error(`${where}: line ${line}: unknown escape '\\${e ?? ""}'`);
      }
      out.push({ kind: "string", text: s, line });
    } else if (/[A-Za-z0-9_.+-]/.test(c)) {
      let s = "";
      while (i < text.length && /[A-Za-z0-9_.+-]/.test(text[i]!)) s += text[i++];
      out.push({ kind: "ident", text: s, line });
    } else throw new Error(`${where}: line ${line}: unexpected character '${c}'`);
  }
  return out;
}

type Plain = Record<string, unknown>;

class Parser {
  private at = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly where: string,
  ) {}

  private peek(): Token | undefined {
    return this.tokens[this.at];
  }

  private fail(msg: string, t = this.peek()): never {
    throw new Error(`${this.where}: line ${t?.line ?? "end"}: ${msg}`);
  }

  private take(text?: string): Token {
    const t = this.tokens[this.at];
    if (!t) this.fail(text ? `expected '${text}' at the end of the text` : "unexpected end of the text");
    if (text !== undefined && t.text !== text) this.fail(`expected '${text}', got '${t.text}'`, t);
    this.at++;
    return t;
  }

  private accept(text: string): boolean {
    const t = this.peek();
    if (t?.kind === "punct" && t.text === text) {
      this.at++;
      return true;
    }
    return false;
  }

  /** A message body up to `end` (or the end of the text). */
  message(type: protobuf.Type, end: string | undefined): Plain {
    const out: Plain = {};
    for (;;) {
      const t = this.peek();
      if (!t) {
        if (end !== undefined) this.fail(`expected '${end}' to close ${type.name}`);
        return out;
      }
      if (end !== undefined && t.kind === "punct" && t.text === end) {
        this.at++;
        return out;
      }
      if (t.kind !== "ident") this.fail(`expected a field name of ${type.fullName.slice(1)}, got '${t.text}'`, t);
      this.at++;
      const field = type.fields[t.text];
      if (!field) this.fail(`unknown field '${t.text}' in ${type.fullName.slice(1)}`, t);
      field.resolve();
      const isMessage = field.resolvedType instanceof protobuf.Type || field.map;
      const colon = this.accept(":");
      if (!isMessage && !colon) this.fail(`expected ':' after '${t.text}'`);
      const values: unknown[] = [];
      if (this.accept("[")) {
        if (!field.repeated && !field.map) this.fail(`field '${t.text}' is not repeated: no list allowed`, t);
        if (!this.accept("]"))
          for (;;) {
            values.push(this.value(field, t.text));
            if (this.accept("]")) break;
            this.take(",");
          }
      } else values.push(this.value(field, t.text));
      if (field.map) {
        const m = (out[field.name] ??= {}) as Plain;
        for (const e of values as Plain[]) {
          if (e["key"] === undefined) this.fail(`a '${t.text}' entry has no key`, t);
          m[String(e["key"])] = e["value"] ?? {};
        }
      } else if (field.repeated) ((out[field.name] ??= []) as unknown[]).push(...values);
      else {
        if (out[field.name] !== undefined) this.fail(`field '${t.text}' is given twice`, t);
        if (field.partOf && field.partOf.oneof.some((o) => o !== field.name && out[o] !== undefined))
          this.fail(`field '${t.text}' and another field of oneof '${field.partOf.name}' are both given`, t);
        out[field.name] = values[0];
      }
      this.accept(",") || this.accept(";");
    }
  }

  private value(field: protobuf.Field, name: string): unknown {
    if (field.map) {
      const open = this.take();
      if (open.text !== "{" && open.text !== "<") this.fail(`expected '{' to open a '${name}' entry`, open);
      const entry: Plain = {};
      const close = open.text === "{" ? "}" : ">";
      const valueType = field.resolvedType;
      while (!this.accept(close)) {
        const k = this.take();
        if (k.text !== "key" && k.text !== "value")
          this.fail(`a map entry has fields 'key' and 'value', not '${k.text}'`, k);
        const colon = this.accept(":");
        if (k.text === "key") {
          if (!colon) this.fail("expected ':' after 'key'");
          entry["key"] = this.scalar((field as unknown as protobuf.MapField).keyType ?? "string", undefined, "key");
        } else if (valueType instanceof protobuf.Type) entry["value"] = this.nested(valueType);
        else {
          if (!colon) this.fail("expected ':' after 'value'");
          entry["value"] = this.scalar(field.type, valueType instanceof protobuf.Enum ? valueType : undefined, "value");
        }
        this.accept(",") || this.accept(";");
      }
      return entry;
    }
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) return this.nested(rt);
    return this.scalar(field.type, rt instanceof protobuf.Enum ? rt : undefined, name);
  }

  private nested(type: protobuf.Type): Plain {
    const open = this.take();
    if (open.text !== "{" && open.text !== "<") this.fail(`expected '{' to open ${type.name}`, open);
    return this.message(type, open.text === "{" ? "}" : ">");
  }

  private scalar(type: string, en: protobuf.Enum | undefined, name: string): unknown {
    const t = this.take();
    const bad = (): never => this.fail(`'${t.text}' is not a valid ${en ? `${en.name} value` : type} for '${name}'`, t);
    if (en) {
      if (t.kind !== "ident") bad();
      if (en.values[t.text] !== undefined) return t.text;
      if (/^-?\d+$/.test(t.text) && Object.values(en.values).includes(Number(t.text))) return Number(t.text);
      return bad();
    }
    if (type === "string" || type === "bytes") {
      if (t.kind !== "string") bad();
      let s = t.text;
      while (this.peek()?.kind === "string") s += this.take().text;
      return s;
    }
    if (t.kind !== "ident") bad();
    if (type === "bool") {
      if (["true", "t", "True", "1"].includes(t.text)) return true;
      if (["false", "f", "False", "0"].includes(t.text)) return false;
      return bad();
    }
    if (type === "float" || type === "double") {
      const v = /^-?inf(inity)?$/i.test(t.text)
        ? t.text.startsWith("-")
          ? -Infinity
          : Infinity
        : /^nan$/i.test(t.text)
          ? NaN
          : Number(t.text.replace(/[fF]$/, ""));
      if (Number.isNaN(v) && !/^nan$/i.test(t.text)) bad();
      return v;
    }
    // integers: decimal, hex or octal; unsigned types refuse a sign
    const m = /^(-)?(0x[0-9a-fA-F]+|0[0-7]*|[1-9]\d*)$/.exec(t.text);
    if (!m) return bad();
    const digits = m[2]!;
    const mag = digits.startsWith("0x")
      ? parseInt(digits, 16)
      : digits.length > 1 && digits.startsWith("0")
        ? parseInt(digits, 8)
        : Number(digits);
    const v = m[1] ? -mag : mag;
    if (!Number.isSafeInteger(v)) bad();
    if (type.startsWith("uint") || type.startsWith("fixed")) {
      if (v < 0) bad();
    }
    if ((type === "int32" || type === "sint32" || type === "sfixed32") && (v < -(2 ** 31) || v >= 2 ** 31)) bad();
    if ((type === "uint32" || type === "fixed32") && v >= 2 ** 32) bad();
    return v;
  }
}

/**
 * Parses protobuf text format into a message of `type`, returned as a plain object with the
 * proto's field names (load the type with `keepCase`), enums by name, 64-bit integers as numbers
 * and every field present (defaults filled in). Throws naming `where` and the line of the first problem.
 */
export function parseTextProto(text: string, type: protobuf.Type, where: string): Plain {
  const obj = new Parser(tokenize(text, where), where).message(type, undefined);
  return type.toObject(type.fromObject(obj), {
    enums: String,
    longs: Number,
    defaults: true,
    arrays: true,
    objects: true,
  });
}
